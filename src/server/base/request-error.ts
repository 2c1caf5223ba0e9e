import { MpotaError } from "../../errors.ts";
import { EXIT_CODES } from "../../exit-codes.ts";

/**
 * A request to the server (bridge topic or a feature's method) cannot be
 * done as asked: unknown device or firmware, bad input, a conflicting job.
 * The message says what happened and what to do; the bridge sends it as the
 * `error` of the reply envelope and the CLI prints it.
 */
export class RequestError extends MpotaError {
  override readonly exitCode: number = EXIT_CODES.requestRefused.code;
  /**
   * The request names something that does not exist (a device, job or
   * rollout): the HTTP API answers 404 from this, so a route need not read
   * storage a second time to find out.
   */
  readonly notFound: boolean;

  constructor(message: string, options: { notFound?: boolean; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.notFound = options.notFound ?? false;
  }
}
