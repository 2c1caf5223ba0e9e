import { StorageError } from "./storage.ts";

/**
 * A write failed because the disk (or the user's quota) is full. Nothing of
 * the write was kept; the same write succeeds once space is freed, with no
 * restart. The message names the path and what to do.
 */
export class DiskFullError extends StorageError {}

const FULL_CODES = new Set(["ENOSPC", "EDQUOT", "SQLITE_FULL", "53100"]);
// SQLite's text for SQLITE_FULL (node:sqlite gives no code of its own), PostgreSQL's for a full tablespace.
const FULL_TEXT = /database or disk is full|could not extend file|No space left on device/i;

/** True when `error` (or an error in its `cause` chain) says the disk is full, from fs, SQLite or PostgreSQL. */
export function isDiskFull(error: unknown): boolean {
  for (let e = error, depth = 0; e && depth < 5; depth++) {
    if (e instanceof DiskFullError) return true;
    const { code, errcode, message } = e as { code?: unknown; errcode?: unknown; message?: unknown };
    if (typeof code === "string" && FULL_CODES.has(code)) return true;
    if (errcode === 13) return true; // node:sqlite's SQLITE_FULL
    if (typeof message === "string" && FULL_TEXT.test(message)) return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}

/** The DiskFullError for a failed write of `what` at `path`. */
export function diskFullError(error: unknown, what: string, path: string): DiskFullError {
  return new DiskFullError(
    `No space left to write ${what} (${path}): the disk is full. Nothing was kept. Free space on that disk (or move the data directory to a larger one), then try again; the server carries on by itself.`,
    { cause: error },
  );
}
