import { MpotaError } from "../errors.ts";
import { EXIT_CODES } from "../exit-codes.ts";

/**
 * An app folder or release is refused: a path, a size, a name or version, a
 * `.mpy` header, or a stored release that is damaged or differs. The
 * message names the file and the rule, and says what to change.
 */
export class AppReleaseError extends MpotaError {
  override readonly exitCode: number = EXIT_CODES.appRelease.code;
}

/** The key that signs app releases cannot be used (unreadable, not RSA, wrong exponent or size). */
export class AppKeyError extends MpotaError {
  override readonly exitCode: number = EXIT_CODES.appKey.code;
}
