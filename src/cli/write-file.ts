import { randomBytes } from "node:crypto";
import { existsSync, statSync, unlinkSync } from "node:fs";
import { type FileHandle, link, open, rename, unlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { FileError } from "../errors.ts";

export interface OutputOptions {
  /** Replace an existing file. Without it an existing target is an error. */
  force?: boolean;
  /** File mode for a new file (before the umask); 0o600 for private keys. */
  mode?: number;
  /** How the message names the file: "Output file", "Private key", ... */
  what?: string;
  /** Added to the "already exists" message after "Pass --force to replace it". */
  overwriteHint?: string;
  /** The other way out, ending that message; default "choose another name with -o". */
  alternative?: string;
}

function describe(options: OutputOptions): string {
  return options.what ?? "Output file";
}

function existsError(target: string, options: OutputOptions): FileError {
  return new FileError(
    `${describe(options)} ${target} already exists, and mpota does not overwrite files unless told to. Pass --force to replace it${options.overwriteHint ? ` ${options.overwriteHint}` : ""}, or ${options.alternative ?? "choose another name with -o"}.`,
  );
}

/** Refuses early, before any work is done, when `target` exists and --force was not given. */
export function checkOutputFree(target: string, options: OutputOptions = {}): void {
  let isDirectory = false;
  try {
    isDirectory = statSync(target).isDirectory();
  } catch {
    return;
  }
  if (isDirectory) throw new FileError(`${describe(options)} ${target} is a directory; give a file name.`);
  if (options.force !== true) throw existsError(target, options);
}

// Temp files still open or not yet renamed, removed if the process exits or is interrupted.
const liveTempFiles = new Set<string>();
const signals: NodeJS.Signals[] = ["SIGINT", "SIGTERM", "SIGHUP"];

function removeLiveTempFiles(): void {
  for (const path of liveTempFiles) {
    try {
      unlinkSync(path);
    } catch {
      // Already gone.
    }
  }
  liveTempFiles.clear();
}

function onSignal(signal: NodeJS.Signals): void {
  removeLiveTempFiles();
  uninstallCleanup();
  // Nobody else handles this signal: die from it as the process would have without us.
  if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
}

function installCleanup(): void {
  process.on("exit", removeLiveTempFiles);
  for (const signal of signals) process.on(signal, onSignal);
}

function uninstallCleanup(): void {
  process.off("exit", removeLiveTempFiles);
  for (const signal of signals) process.off(signal, onSignal);
}

function track(path: string): void {
  if (liveTempFiles.size === 0) installCleanup();
  liveTempFiles.add(path);
}

function untrack(path: string): void {
  if (!liveTempFiles.delete(path)) return;
  if (liveTempFiles.size === 0) uninstallCleanup();
}

function openFailure(target: string, options: OutputOptions, error: unknown): FileError {
  const code = (error as NodeJS.ErrnoException).code;
  const dir = dirname(target);
  if (code === "ENOENT") {
    return new FileError(
      `Cannot write ${target}: the folder ${dir} does not exist. Create it first or choose another path.`,
    );
  }
  if (code === "ENOTDIR") return new FileError(`Cannot write ${target}: ${dir} is not a folder.`);
  if (code === "EACCES" || code === "EPERM" || code === "EROFS") {
    return new FileError(
      `Cannot write ${describe(options).toLowerCase()} ${target}: no permission to create files in ${dir}.`,
    );
  }
  return new FileError(`Cannot write ${target}: ${(error as Error).message}`, { cause: error });
}

const BUFFER_LIMIT = 64 * 1024;

/**
 * A file that appears complete or not at all: bytes go to a temp file in the
 * target's folder, which `commit()` renames into place. `abort()` (or any
 * failure, or the process being interrupted) removes the temp file.
 */
export class AtomicFile {
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;
  private state: "open" | "committed" | "aborted" = "open";
  /** Bytes written so far. */
  size = 0;

  private constructor(
    readonly target: string,
    readonly tempPath: string,
    private readonly handle: FileHandle,
    private readonly options: OutputOptions,
  ) {}

  static async open(target: string, options: OutputOptions = {}): Promise<AtomicFile> {
    checkOutputFree(target, options);
    const tempPath = join(dirname(target), `.${basename(target)}.${randomBytes(6).toString("hex")}.tmp`);
    let handle: FileHandle;
    try {
      handle = await open(tempPath, "wx", options.mode ?? 0o666);
    } catch (error) {
      throw openFailure(target, options, error);
    }
    track(tempPath);
    return new AtomicFile(target, tempPath, handle, options);
  }

  async write(data: Uint8Array): Promise<void> {
    if (this.state !== "open") throw new Error(`AtomicFile.write after ${this.state}`);
    this.pending.push(data);
    this.pendingBytes += data.length;
    this.size += data.length;
    if (this.pendingBytes >= BUFFER_LIMIT) await this.flush();
  }

  private async flush(): Promise<void> {
    if (this.pendingBytes === 0) return;
    const chunk = Buffer.concat(this.pending);
    this.pending = [];
    this.pendingBytes = 0;
    try {
      await this.handle.write(chunk);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      throw new FileError(
        code === "ENOSPC"
          ? `Cannot write ${this.target}: the disk is full. Free some space and run the command again.`
          : `Cannot write ${this.target}: ${(error as Error).message}`,
        { cause: error },
      );
    }
  }

  /**
   * Moves the finished file into place. Without --force this fails, leaving
   * nothing behind, if the target appeared in the meantime. Returns true when
   * the target did not exist before.
   */
  async commit(): Promise<boolean> {
    if (this.state !== "open") throw new Error(`AtomicFile.commit after ${this.state}`);
    try {
      await this.flush();
      await this.handle.sync();
      await this.handle.close();
      const created = await this.moveIntoPlace();
      this.state = "committed";
      untrack(this.tempPath);
      return created;
    } catch (error) {
      await this.abort();
      throw error;
    }
  }

  private async moveIntoPlace(): Promise<boolean> {
    if (this.options.force === true) {
      const existed = existsSync(this.target);
      try {
        await rename(this.tempPath, this.target);
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === "EISDIR") {
          throw new FileError(`${describe(this.options)} ${this.target} is a directory; give a file name.`);
        }
        throw openFailure(this.target, this.options, error);
      }
      return !existed;
    }
    // link() never replaces an existing file, so a target created meanwhile is not clobbered.
    try {
      await link(this.tempPath, this.target);
      await unlink(this.tempPath);
      return true;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "EEXIST") throw existsError(this.target, this.options);
      if (code !== "EPERM" && code !== "ENOTSUP" && code !== "EOPNOTSUPP" && code !== "ENOSYS") {
        throw openFailure(this.target, this.options, error);
      }
    }
    // File systems without hard links (FAT, some network shares): check, then rename.
    if (existsSync(this.target)) throw existsError(this.target, this.options);
    try {
      await rename(this.tempPath, this.target);
    } catch (error) {
      throw openFailure(this.target, this.options, error);
    }
    return true;
  }

  /** Removes the temp file; the target is left as it was. Safe to call more than once. */
  async abort(): Promise<void> {
    if (this.state !== "open") return;
    this.state = "aborted";
    await this.handle.close().catch(() => undefined);
    await unlink(this.tempPath).catch(() => undefined);
    untrack(this.tempPath);
  }
}

/** Runs `fill` on a new AtomicFile and commits it; on any error the temp file is removed and the error rethrown. */
export async function withAtomicFile<T>(
  target: string,
  options: OutputOptions,
  fill: (file: AtomicFile) => Promise<T>,
): Promise<T> {
  const file = await AtomicFile.open(target, options);
  try {
    const result = await fill(file);
    await file.commit();
    return result;
  } catch (error) {
    await file.abort();
    throw error;
  }
}

/** Writes `data` to `target` atomically. */
export async function writeFileAtomic(
  target: string,
  data: Uint8Array | string,
  options: OutputOptions = {},
) {
  await withAtomicFile(target, options, (file) =>
    file.write(typeof data === "string" ? Buffer.from(data, "utf8") : data),
  );
}

/**
 * Writes several files together: all temp files are written first, then
 * renamed one after the other. If one fails, the files this call created are
 * removed again (files replaced with --force cannot be brought back).
 */
export async function writeFilesAtomic(
  files: Array<{ target: string; data: Uint8Array | string; options?: OutputOptions }>,
): Promise<void> {
  for (const f of files) checkOutputFree(f.target, f.options);
  const opened: AtomicFile[] = [];
  const created: string[] = [];
  try {
    for (const f of files) {
      const file = await AtomicFile.open(f.target, f.options);
      opened.push(file);
      await file.write(typeof f.data === "string" ? Buffer.from(f.data, "utf8") : f.data);
    }
    for (const file of opened) {
      if (await file.commit()) created.push(file.target);
    }
  } catch (error) {
    for (const file of opened) await file.abort();
    for (const path of created) await unlink(path).catch(() => undefined);
    throw error;
  }
}
