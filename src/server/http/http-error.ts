import { MpotaError } from "../../errors.ts";
import { EXIT_CODES } from "../../exit-codes.ts";

/**
 * An HTTP request cannot be answered as asked: the status says how
 * (400 bad input, 401 no or wrong credentials, 403 refused, 404 unknown,
 * 413 too large, 415 wrong content type, 429 too many tries). The message
 * says what happened and what to do; it becomes the JSON error body.
 */
export class HttpError extends MpotaError {
  override readonly exitCode: number = EXIT_CODES.httpRequest.code;

  constructor(
    readonly status: number,
    message: string,
    readonly extra: Record<string, unknown> = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}
