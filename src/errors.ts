import { EXIT_CODES } from "./exit-codes.ts";

/**
 * Root of every error mpota raises on purpose. The message always says what
 * happened and what to do; the CLI prints it and exits with `exitCode`.
 * Subclasses live next to the code that throws them.
 */
export class MpotaError extends Error {
  /** Process exit code the CLI uses for this class of failure. */
  readonly exitCode: number = EXIT_CODES.failure.code;

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The user asked for something that cannot be done as asked (bad option value, bad combination). */
export class UsageError extends MpotaError {
  override readonly exitCode: number = EXIT_CODES.usage.code;
}

/** A file the user named is missing, unreadable, or would be overwritten. */
export class FileError extends MpotaError {
  override readonly exitCode: number = EXIT_CODES.file.code;
}
