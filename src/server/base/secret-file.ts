import { randomBytes } from "node:crypto";
import {
  chmodSync,
  closeSync,
  fsyncSync,
  linkSync,
  mkdirSync,
  openSync,
  renameSync,
  rmSync,
  statSync,
  writeSync,
} from "node:fs";
import { dirname } from "node:path";

// The server's secret files (the admin token, the command key, its broker
// secret): mode 0600, written whole to a temporary file in the same directory
// and then put in place, so no reader ever sees half a secret.

/** Writes `text` to a new temporary file (mode 0600, synced) beside `path`; returns its name. */
function writeTemp(path: string, text: string): string {
  mkdirSync(dirname(path), { recursive: true });
  const temp = `${path}.${randomBytes(4).toString("hex")}.tmp`;
  const fd = openSync(temp, "wx", 0o600);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    // The umask may have taken bits from 0600 at open; never more than 0600 in the end.
    chmodSync(temp, 0o600);
  } catch (error) {
    rmSync(temp, { force: true });
    throw error;
  }
  return temp;
}

/** Makes new or renamed directory entries durable (a no-op where directories cannot be opened). */
export function syncDirectory(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, "r");
    fsyncSync(fd);
  } catch {
    // Not supported here (e.g. Windows): the entry is written with the directory's next flush.
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** Puts `text` in `path` (mode 0600), replacing whatever is there in one rename. */
export function replaceSecretFile(path: string, text: string): void {
  const temp = writeTemp(path, text);
  try {
    renameSync(temp, path);
  } catch (error) {
    rmSync(temp, { force: true });
    throw error;
  }
  syncDirectory(dirname(path));
}

/**
 * Creates `path` holding `text` (mode 0600) without ever replacing an
 * existing file: link() fails if the name exists, so two servers starting at
 * once on one data directory cannot each keep a secret of their own (rename()
 * would let the second silently replace what the first already uses). Where
 * the filesystem has no hard links, rename() is the fallback. Returns false
 * when the file exists (another process created it first).
 */
export function createSecretFile(path: string, text: string): boolean {
  const temp = writeTemp(path, text);
  try {
    try {
      linkSync(temp, path);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "EEXIST") return false;
      if (code !== "EPERM" && code !== "ENOTSUP" && code !== "ENOSYS" && code !== "EOPNOTSUPP") throw error;
      if (!missing(path)) return false;
      renameSync(temp, path);
    }
  } finally {
    rmSync(temp, { force: true });
  }
  syncDirectory(dirname(path));
  return true;
}

function missing(path: string): boolean {
  try {
    statSync(path);
    return false;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "ENOENT";
  }
}

/**
 * The secret in `path` as `read` makes it, or, when there is no such file, a
 * new one from `create` written with {@link createSecretFile}. When another
 * process creates the file first, its secret is read and used instead.
 */
export function readOrCreateSecretFile<T>(
  path: string,
  read: (path: string) => T,
  create: () => { text: string; value: T },
): { value: T; created: boolean } {
  if (!missing(path)) return { value: read(path), created: false };
  const fresh = create();
  if (!createSecretFile(path, fresh.text)) return { value: read(path), created: false };
  return { value: fresh.value, created: true };
}
