import { posix } from "node:path";
import { AgentHostError } from "./agent-host-error.ts";
import { FsErrno, FsFailure } from "./fs-errno.ts";
import { type FsStep, PowerCut } from "./fs-step.ts";

// The filesystem's public surface, defined beside it: importers keep one place to import from.

/**
 * The filesystem of a simulated ESP8266 (mounted at `/`), kept on the main
 * thread so it survives resets, deep sleeps and power cuts of the
 * interpreter. It models what is durable when, as MicroPython's VfsLfs2 and
 * VfsFat do on flash (v1.27 `extmod/vfs_lfsx*.c`, `extmod/vfs_fat*.c`):
 *
 * - LittleFS: every operation is atomic. A new file exists (empty) from
 *   `open()`; written data, and the truncation of `open(path, "w")` on an
 *   existing file, become durable at `flush()`/`close()` (copy-on-write: a
 *   cut before that leaves the old contents). `rename` replaces an existing
 *   destination atomically.
 * - FAT: `open(path, "w")` truncates an existing file at once (FatFs writes
 *   the emptied directory entry while freeing the cluster chain); data
 *   becomes durable at `flush()`/`close()`. `rename` onto an existing file
 *   is two steps, as `fat_vfs_rename` does: unlink the destination, then
 *   rename, so a cut between them leaves neither name holding the new data
 *   at the destination.
 *
 * Errors are the OSError numbers the port raises (MicroPython's own errno
 * numbering, as on the chip: ENOENT 2, EEXIST 17, ...), mapped the way
 * `fresult_to_errno_table` (FAT) and LittleFS's negative codes do.
 *
 * Every durable step goes through {@link DeviceFilesystem.beforeStep}, so a
 * test can cut the power before any of them. A torn sector (a cut in the
 * middle of erasing or programming one) is not modelled.
 */

export type FilesystemKind = "littlefs" | "fat";

type Entry = { dir: true } | { dir: false; data: Buffer };

interface Handle {
  path: string;
  readable: boolean;
  writable: boolean;
  append: boolean;
  /** The file as this handle sees it; durable only after commit. */
  data: Buffer;
  pos: number;
  dirty: boolean;
}

/** stat() mode bits as the ports report them. */
const S_IFDIR = 0x4000;
const S_IFREG = 0x8000;
const BLOCK = 4096;

export interface FsStat {
  mode: number;
  size: number;
}

export interface FilesystemOptions {
  kind?: FilesystemKind;
  /** Bytes the filesystem holds, for statvfs (default 396 KiB: an ESP8266 1 MiB build). */
  capacity?: number;
}

export class DeviceFilesystem {
  readonly kind: FilesystemKind;
  readonly capacity: number;
  /** Every durable step taken, in order (tests read it to find where to cut). */
  readonly steps: FsStep[] = [];
  /** Asked before every durable step; returning true cuts the power there (the step does not happen). */
  beforeStep: ((step: FsStep, index: number) => boolean) | undefined;

  private readonly entries = new Map<string, Entry>();
  private readonly handles = new Map<number, Handle>();
  private nextFd = 3;

  constructor(options: FilesystemOptions = {}) {
    this.kind = options.kind ?? "littlefs";
    this.capacity = options.capacity ?? 396 * 1024;
  }

  // --- the host's view (mpremote cp, a test reading what the device wrote) ---

  /** The committed contents of a file, or undefined. */
  readFile(path: string): Buffer | undefined {
    const e = this.entries.get(normalize(path));
    return e && !e.dir ? Buffer.from(e.data) : undefined;
  }

  /** Writes a file at once, creating its directories (as copying files to the board does). */
  writeFile(path: string, data: string | Uint8Array): void {
    const p = normalize(path);
    for (let d = posix.dirname(p); d !== "/"; d = posix.dirname(d)) {
      if (!this.entries.has(d)) this.entries.set(d, { dir: true });
    }
    this.entries.set(p, { dir: false, data: Buffer.from(data) });
  }

  /** Removes a file or a directory tree at once. */
  deleteFile(path: string): void {
    const p = normalize(path);
    for (const key of [...this.entries.keys()]) {
      if (key === p || key.startsWith(`${p}/`)) this.entries.delete(key);
    }
  }

  /** Paths of all files (not directories), sorted. */
  files(): string[] {
    return [...this.entries]
      .filter(([, e]) => !e.dir)
      .map(([p]) => p)
      .sort();
  }

  /** A copy of what is on flash (no open files, no step log): the same board, for another test run. */
  clone(): DeviceFilesystem {
    const copy = new DeviceFilesystem({ kind: this.kind, capacity: this.capacity });
    for (const [path, e] of this.entries)
      copy.entries.set(path, e.dir ? e : { dir: false, data: Buffer.from(e.data) });
    return copy;
  }

  /**
   * Puts back what was on flash when `copy` was taken with clone(): the same
   * board rewound, so a test reuses one device (and its worker) for many
   * states. Open files are dropped; the step log goes on.
   */
  restore(copy: DeviceFilesystem): void {
    if (copy.kind !== this.kind || copy.capacity !== this.capacity) {
      throw new AgentHostError(
        `Cannot restore a ${copy.kind} filesystem of ${copy.capacity} bytes onto a ${this.kind} one of ${this.capacity}: restore a clone of this board's own filesystem.`,
      );
    }
    this.handles.clear();
    this.entries.clear();
    for (const [path, e] of copy.entries)
      this.entries.set(path, e.dir ? e : { dir: false, data: Buffer.from(e.data) });
  }

  /** A power cut, reset or deep sleep: open files vanish with what was not flushed. */
  dropOpenFiles(): void {
    this.handles.clear();
  }

  // --- the device's view (the VFS methods, through the worker) ---

  open(cwd: string, path: string, mode: string): number {
    const p = resolvePath(cwd, path);
    let kind = "";
    let plus = false;
    for (const c of mode) {
      if ("rwxa".includes(c)) {
        if (kind) throw new FsFailure(FsErrno.EINVAL); // ValueError on the chip; never used by the agent
        kind = c;
      } else if (c === "+") plus = true;
    }
    kind ||= "r";
    const existing = this.entries.get(p);
    if (existing?.dir) {
      // FatFs: FR_NO_FILE when reading a directory, FR_DENIED when writing it; LittleFS: LFS_ERR_ISDIR.
      if (kind === "x") throw new FsFailure(FsErrno.EEXIST);
      if (this.kind === "littlefs") throw new FsFailure(FsErrno.EISDIR);
      throw new FsFailure(kind === "r" ? FsErrno.ENOENT : FsErrno.EACCES);
    }
    this.parentDir(p);
    if (kind === "r" && !existing) throw new FsFailure(FsErrno.ENOENT);
    if (kind === "x" && existing) throw new FsFailure(FsErrno.EEXIST);
    let data = existing ? Buffer.from(existing.data) : Buffer.alloc(0);
    let dirty = false;
    if (!existing && kind !== "r") {
      this.step({ op: "create", path: p });
      this.entries.set(p, { dir: false, data: Buffer.alloc(0) });
    } else if (existing && kind === "w") {
      data = Buffer.alloc(0);
      if (this.kind === "fat") {
        this.step({ op: "truncate", path: p });
        this.entries.set(p, { dir: false, data: Buffer.alloc(0) });
      } else {
        dirty = true; // LittleFS commits the truncation with the data
      }
    }
    const fd = this.nextFd++;
    this.handles.set(fd, {
      path: p,
      readable: kind === "r" || plus,
      writable: kind !== "r" || plus,
      append: kind === "a",
      data,
      pos: kind === "a" ? data.length : 0,
      dirty,
    });
    return fd;
  }

  read(fd: number, n: number): Buffer {
    const h = this.handle(fd);
    if (!h.readable) throw new FsFailure(FsErrno.EBADF);
    const end = n < 0 ? h.data.length : Math.min(h.data.length, h.pos + n);
    const out = h.data.subarray(Math.min(h.pos, end), end);
    h.pos = Math.max(h.pos, end);
    return Buffer.from(out);
  }

  /** Up to and including the next "\n" (or to the end), at most `limit` bytes when it is not negative (the port's readline(size)). */
  readline(fd: number, limit = -1): Buffer {
    const h = this.handle(fd);
    if (!h.readable) throw new FsFailure(FsErrno.EBADF);
    const nl = h.data.indexOf(0x0a, h.pos);
    const line = nl < 0 ? -1 : nl + 1 - h.pos;
    return this.read(fd, limit < 0 ? line : line < 0 ? limit : Math.min(line, limit));
  }

  write(fd: number, data: Uint8Array): number {
    const h = this.handle(fd);
    if (!h.writable) throw new FsFailure(FsErrno.EBADF);
    if (h.append) h.pos = h.data.length;
    const end = h.pos + data.length;
    if (end > h.data.length) {
      const grown = Buffer.alloc(end);
      h.data.copy(grown);
      h.data = grown;
    }
    h.data.set(data, h.pos);
    h.pos = end;
    h.dirty = true;
    return data.length;
  }

  seek(fd: number, offset: number, whence: number): number {
    const h = this.handle(fd);
    const base = whence === 1 ? h.pos : whence === 2 ? h.data.length : 0;
    const pos = base + offset;
    if (pos < 0) throw new FsFailure(FsErrno.EINVAL);
    h.pos = pos;
    return pos;
  }

  flush(fd: number): void {
    const h = this.handle(fd);
    if (!h.dirty) return;
    this.step({ op: "commit", path: h.path, size: h.data.length });
    // A file removed or renamed meanwhile is not brought back (both ports write to the open object).
    const e = this.entries.get(h.path);
    if (e && !e.dir) this.entries.set(h.path, { dir: false, data: Buffer.from(h.data) });
    h.dirty = false;
  }

  close(fd: number): void {
    if (!this.handles.has(fd)) return; // closing twice is allowed
    this.flush(fd);
    this.handles.delete(fd);
  }

  stat(cwd: string, path: string): FsStat {
    const p = resolvePath(cwd, path);
    if (p === "/") return { mode: S_IFDIR, size: 0 };
    const e = this.entries.get(p);
    if (!e) throw new FsFailure(FsErrno.ENOENT);
    return e.dir ? { mode: S_IFDIR, size: 0 } : { mode: S_IFREG, size: e.data.length };
  }

  /** Directory entries: [name, type (S_IFDIR or S_IFREG), size]. */
  listdir(cwd: string, path: string): Array<[string, number, number]> {
    const p = resolvePath(cwd, path);
    if (p !== "/") {
      const e = this.entries.get(p);
      if (!e) throw new FsFailure(FsErrno.ENOENT);
      if (!e.dir) throw new FsFailure(fatOr(this, FsErrno.ENOENT, FsErrno.ENOTDIR));
    }
    const out: Array<[string, number, number]> = [];
    for (const [key, e] of this.entries) {
      if (key !== p && posix.dirname(key) === p) {
        out.push([posix.basename(key), e.dir ? S_IFDIR : S_IFREG, e.dir ? 0 : e.data.length]);
      }
    }
    return out.sort((a, b) => (a[0] < b[0] ? -1 : 1));
  }

  remove(cwd: string, path: string): void {
    const p = resolvePath(cwd, path);
    const e = this.entries.get(p);
    if (!e) throw new FsFailure(FsErrno.ENOENT);
    if (e.dir) {
      // vfs_fat checks the attribute; LittleFS's lfs_remove takes an empty directory too.
      if (this.kind === "fat") throw new FsFailure(FsErrno.EISDIR);
      if (this.hasChildren(p)) throw new FsFailure(FsErrno.ENOTEMPTY);
    }
    this.step({ op: "remove", path: p });
    this.entries.delete(p);
  }

  rmdir(cwd: string, path: string): void {
    const p = resolvePath(cwd, path);
    const e = this.entries.get(p);
    if (!e) throw new FsFailure(FsErrno.ENOENT);
    if (!e.dir) {
      if (this.kind === "fat") throw new FsFailure(FsErrno.ENOTDIR);
    } else if (this.hasChildren(p)) {
      throw new FsFailure(fatOr(this, FsErrno.EACCES, FsErrno.ENOTEMPTY));
    }
    this.step({ op: "rmdir", path: p });
    this.entries.delete(p);
  }

  mkdir(cwd: string, path: string): void {
    const p = resolvePath(cwd, path);
    if (p === "/" || this.entries.has(p)) throw new FsFailure(FsErrno.EEXIST);
    this.parentDir(p);
    this.step({ op: "mkdir", path: p });
    this.entries.set(p, { dir: true });
  }

  rename(cwd: string, from: string, to: string): void {
    const a = resolvePath(cwd, from);
    const b = resolvePath(cwd, to);
    const src = this.entries.get(a);
    if (!src) throw new FsFailure(FsErrno.ENOENT);
    this.parentDir(b);
    if (a === b) return;
    const dest = this.entries.get(b);
    if (dest) {
      if (this.kind === "fat") {
        // f_rename gives FR_EXIST; fat_vfs_rename removes the destination (a file only), then renames.
        if (dest.dir) throw new FsFailure(FsErrno.EISDIR);
        this.step({ op: "remove", path: b });
        this.entries.delete(b);
      } else {
        if (dest.dir && !src.dir) throw new FsFailure(FsErrno.EISDIR);
        if (!dest.dir && src.dir) throw new FsFailure(FsErrno.ENOTDIR);
        if (dest.dir && this.hasChildren(b)) throw new FsFailure(FsErrno.ENOTEMPTY);
      }
    }
    this.step({ op: "rename", path: a, to: b });
    for (const key of [...this.entries.keys()].sort()) {
      if (key === a || key.startsWith(`${a}/`)) {
        const entry = this.entries.get(key) as Entry;
        this.entries.delete(key);
        this.entries.set(b + key.slice(a.length), entry);
      }
    }
  }

  /** statvfs: (bsize, frsize, blocks, bfree, bavail, files, ffree, favail, flag, namemax). */
  statvfs(): number[] {
    const blocks = Math.floor(this.capacity / BLOCK);
    let used = 0;
    for (const e of this.entries.values()) used += e.dir ? 1 : Math.max(1, Math.ceil(e.data.length / BLOCK));
    const free = Math.max(0, blocks - used);
    return [BLOCK, BLOCK, blocks, free, free, 0, 0, 0, 0, 255];
  }

  /** Resolves a path against a directory, checking that the directory exists. */
  chdir(cwd: string, path: string): string {
    const p = resolvePath(cwd, path);
    if (p !== "/") {
      const e = this.entries.get(p);
      if (!e) throw new FsFailure(FsErrno.ENOENT);
      if (!e.dir) throw new FsFailure(fatOr(this, FsErrno.ENOENT, FsErrno.ENOTDIR));
    }
    return p;
  }

  private step(step: FsStep): void {
    const index = this.steps.length;
    if (this.beforeStep?.(step, index)) throw new PowerCut(step);
    this.steps.push(step);
  }

  private handle(fd: number): Handle {
    const h = this.handles.get(fd);
    if (!h) throw new FsFailure(FsErrno.EBADF);
    return h;
  }

  private parentDir(path: string): void {
    const parent = posix.dirname(path);
    if (parent === "/") return;
    const e = this.entries.get(parent);
    if (!e) throw new FsFailure(FsErrno.ENOENT);
    if (!e.dir) throw new FsFailure(fatOr(this, FsErrno.ENOENT, FsErrno.ENOTDIR));
  }

  private hasChildren(path: string): boolean {
    for (const key of this.entries.keys()) if (key.startsWith(`${path}/`)) return true;
    return false;
  }
}

function fatOr(fs: DeviceFilesystem, fat: number, littlefs: number): number {
  return fs.kind === "fat" ? fat : littlefs;
}

function normalize(path: string): string {
  const p = posix.normalize(`/${path}`);
  return p.length > 1 && p.endsWith("/") ? p.slice(0, -1) : p;
}

function resolvePath(cwd: string, path: string): string {
  if (path === "") throw new FsFailure(FsErrno.ENOENT);
  return normalize(path.startsWith("/") ? path : `${cwd}/${path}`);
}
