import { createHash } from "node:crypto";
import { lstatSync, readdirSync, readFileSync, type Stats } from "node:fs";
import { join, resolve } from "node:path";
import { FileError } from "../errors.ts";
import { AppReleaseError } from "./app-errors.ts";
import { MAX_APP_BYTES, MAX_APP_FILE_BYTES, MAX_APP_FILES } from "./app-manifest.ts";
import { appPathProblem } from "./app-path.ts";
import { type MpyHeader, readMpyHeader } from "./mpy-header.ts";

export interface AppFolderFile {
  path: string;
  bytes: Buffer;
  sha256: string;
}

export interface AppFolder {
  files: AppFolderFile[];
  /** The `.mpy` files' headers. */
  mpy: Array<{ path: string; header: MpyHeader }>;
  /** Left out on purpose: hidden entries (.git, .DS_Store) and CPython's __pycache__. */
  skipped: string[];
}

/** Folders that are never part of what a board runs. */
const SKIPPED_FOLDERS = ["__pycache__"];

function unreadable(what: string, error: unknown): FileError {
  const code = (error as NodeJS.ErrnoException).code;
  const why =
    code === "ENOENT"
      ? "it does not exist"
      : code === "EACCES" || code === "EPERM"
        ? "permission denied"
        : (error as Error).message;
  return new FileError(`${what} cannot be read (${why}).`, { cause: error });
}

function lstatOrExplain(full: string, what: string): Stats {
  try {
    return lstatSync(full);
  } catch (error) {
    throw unreadable(what, error);
  }
}

/**
 * Reads an app folder: every regular file below it, by the path rules.
 * Sizes and counts are checked before a byte is read, so a wrong folder
 * (a home directory, a disk image) is refused quickly.
 */
export function readAppFolder(dir: string): AppFolder {
  const root = resolve(dir);
  if (!lstatOrExplain(root, `The app folder ${dir}`).isDirectory()) {
    throw new AppReleaseError(`${dir} is not a folder: give the folder that holds the app's files.`);
  }
  const found: Array<{ path: string; full: string; size: number }> = [];
  const skipped: string[] = [];
  let total = 0;
  const walk = (folder: string, prefix: string): void => {
    let names: string[];
    try {
      names = readdirSync(folder).sort();
    } catch (error) {
      throw unreadable(prefix ? `${prefix} in the app folder` : `The app folder ${dir}`, error);
    }
    for (const name of names) {
      const path = prefix + name;
      const full = join(folder, name);
      const stat = lstatOrExplain(full, `${path} in the app folder`);
      if (name.startsWith(".") || (stat.isDirectory() && SKIPPED_FOLDERS.includes(name))) {
        skipped.push(stat.isDirectory() ? `${path}/` : path);
        continue;
      }
      if (stat.isSymbolicLink()) {
        throw new AppReleaseError(`${path} is a symbolic link; copy the file itself into the app folder.`);
      }
      if (stat.isDirectory()) {
        walk(full, `${path}/`);
        continue;
      }
      if (!stat.isFile())
        throw new AppReleaseError(`${path} is not a regular file (a device, pipe or socket).`);
      const problem = appPathProblem(path);
      if (problem) throw new AppReleaseError(`The app file ${path} is refused: ${problem}.`);
      if (stat.size > MAX_APP_FILE_BYTES) {
        throw new AppReleaseError(
          `${path} is ${stat.size} bytes; an app file holds at most ${MAX_APP_FILE_BYTES} bytes (1 MiB). Is it part of the app?`,
        );
      }
      total += stat.size;
      found.push({ path, full, size: stat.size });
      if (found.length > MAX_APP_FILES) {
        throw new AppReleaseError(
          `${dir} holds more than ${MAX_APP_FILES} files, the most a release holds. Is it the app's folder?`,
        );
      }
      if (total > MAX_APP_BYTES) {
        throw new AppReleaseError(
          `The files in ${dir} hold more than ${MAX_APP_BYTES} bytes (4 MiB), the most a release holds. Is it the app's folder?`,
        );
      }
    }
  };
  walk(root, "");
  if (found.length === 0) {
    throw new AppReleaseError(
      `${dir} holds no app files${skipped.length > 0 ? ` (only ${skipped.join(", ")}, which are left out)` : ""}.`,
    );
  }
  const files = found.map(({ path, full, size }) => {
    let bytes: Buffer;
    try {
      bytes = readFileSync(full);
    } catch (error) {
      throw unreadable(`${path} in the app folder`, error);
    }
    if (bytes.length !== size) throw new AppReleaseError(`${path} changed while it was read; try again.`);
    return { path, bytes, sha256: createHash("sha256").update(bytes).digest("hex") };
  });
  const mpy = files
    .filter((f) => f.path.toLowerCase().endsWith(".mpy"))
    .map((f) => ({ path: f.path, header: readMpyHeader(f.path, f.bytes) }));
  return { files, mpy, skipped };
}
