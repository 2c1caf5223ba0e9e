import { accessSync, constants, existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { SQLITE_FILE_NAME } from "../server/storage/sqlite-storage.ts";
import { StorageError } from "../server/storage/storage.ts";

export interface DataPaths {
  dataDir: string;
  /** Where firmware images live (default: `<data>/firmware`). */
  firmwareDir?: string;
  /** The SQLite database lives in the data directory (no --db). */
  sqlite: boolean;
}

function cannotWrite(what: string, path: string, error: NodeJS.ErrnoException): StorageError {
  const fix =
    what === "firmware directory"
      ? "or pass --firmware-dir DIR with a writable directory"
      : "or pass --data DIR with a writable directory";
  if (error.code === "EROFS") {
    return new StorageError(
      `The ${what} ${path} is on a read-only file system, so mpota cannot write there. Remount it read-write, ${fix}.`,
      { cause: error },
    );
  }
  const user = typeof process.getuid === "function" ? ` (uid ${process.getuid()})` : "";
  return new StorageError(
    `The ${what} ${path} is not writable by this user${user}: ${error.code ?? error.message}. Give this user write access (chown or chmod), run mpota as the user that owns it, ${fix}.`,
    { cause: error },
  );
}

/** The path itself when it exists, else the closest ancestor that does (where it would be created). */
function existingAncestor(path: string): string {
  let p = path;
  while (!existsSync(p) && dirname(p) !== p) p = dirname(p);
  return p;
}

function checkWritable(what: string, path: string): void {
  const existing = existingAncestor(path);
  try {
    accessSync(existing, constants.W_OK);
  } catch (error) {
    const shown = existing === path ? path : `${path} (to be created in ${existing})`;
    throw cannotWrite(what, shown, error as NodeJS.ErrnoException);
  }
}

/**
 * Checks before the server's storage is opened that the data directory, the
 * SQLite file (and its WAL companions) and the firmware directory can be
 * written. SQLite reports a read-only or foreign-owned file only as "unable
 * to open database file", which reads like damage; this names the cause and
 * the path instead.
 */
export function assertDataWritable(paths: DataPaths): void {
  const dir = resolve(paths.dataDir);
  checkWritable("data directory", dir);
  if (paths.sqlite) {
    for (const suffix of ["", "-wal", "-shm"]) {
      const file = join(dir, `${SQLITE_FILE_NAME}${suffix}`);
      if (existsSync(file)) checkWritable("database file", file);
    }
  }
  // With PostgreSQL and no --firmware-dir the images live in the database.
  if (paths.sqlite || paths.firmwareDir !== undefined)
    checkWritable("firmware directory", resolve(paths.firmwareDir ?? join(dir, "firmware")));
}
