import { MpotaError } from "../errors.ts";
import { EXIT_CODES } from "../exit-codes.ts";

/**
 * A request to the server (bridge topic or a feature's method) cannot be
 * done as asked: unknown device or firmware, bad input, a conflicting job.
 * The message says what happened and what to do; the bridge sends it as the
 * `error` of the reply envelope and the CLI prints it.
 */
export class RequestError extends MpotaError {
  override readonly exitCode: number = EXIT_CODES.requestRefused.code;
}
