import { closeSync, fstatSync, fsyncSync, openSync, readSync, writeSync } from "node:fs";
import { FileError } from "../errors.ts";
import {
  checkFlashSize,
  DEFAULT_FLASH_SIZE,
  FLASH_SIZES,
  formatFlashSize,
} from "../firmware/flash-layout.ts";

/** Erase unit of the ESP8266's SPI NOR flash (one definition, with the protocol). */
import { SECTOR_SIZE as FLASH_SECTOR_SIZE } from "../protocol/datagram.ts";

/** A flash file cannot be used as the emulated flash. */
export class FlashFileError extends FileError {}

/**
 * The emulated SPI NOR flash. Erased bytes read 0xFF; a write can only clear
 * bits (the stored byte becomes old AND new), so writing over data that was
 * not erased first mixes the two, as on the chip.
 */
export interface Flash {
  readonly size: number;
  /** A copy of `length` bytes at `offset`. */
  read(offset: number, length: number): Uint8Array;
  /** Sets the 4 KiB sector `index` (address index * 4096) to 0xFF. */
  eraseSector(index: number): void;
  /** Programs `data` at `offset` with NOR semantics. */
  write(offset: number, data: Uint8Array): void;
  /** Releases the backing store (a no-op in memory). Further use throws. */
  close(): void;
}

function checkRange(size: number, offset: number, length: number, what: string): void {
  if (
    !Number.isInteger(offset) ||
    !Number.isInteger(length) ||
    offset < 0 ||
    length < 0 ||
    offset + length > size
  ) {
    throw new RangeError(
      `flash ${what} of ${length} bytes at 0x${offset.toString(16)} is outside the ${formatFlashSize(size)} flash`,
    );
  }
}

/** Flash held in memory: gone when the process ends. */
export class MemoryFlash implements Flash {
  protected readonly bytes: Uint8Array;
  protected closed = false;

  constructor(readonly size: number = DEFAULT_FLASH_SIZE) {
    checkFlashSize(size);
    this.bytes = new Uint8Array(size).fill(0xff);
  }

  read(offset: number, length: number): Uint8Array {
    this.checkOpen();
    checkRange(this.size, offset, length, "read");
    return this.bytes.slice(offset, offset + length);
  }

  eraseSector(index: number): void {
    this.checkOpen();
    checkRange(this.size, index * FLASH_SECTOR_SIZE, FLASH_SECTOR_SIZE, "erase");
    this.bytes.fill(0xff, index * FLASH_SECTOR_SIZE, (index + 1) * FLASH_SECTOR_SIZE);
    this.persist(index * FLASH_SECTOR_SIZE, FLASH_SECTOR_SIZE);
  }

  write(offset: number, data: Uint8Array): void {
    this.checkOpen();
    checkRange(this.size, offset, data.length, "write");
    for (let i = 0; i < data.length; i++) {
      this.bytes[offset + i] = (this.bytes[offset + i] as number) & (data[i] as number);
    }
    this.persist(offset, data.length);
  }

  close(): void {
    this.closed = true;
  }

  /** Hook for backings that keep a copy elsewhere. */
  protected persist(_offset: number, _length: number): void {}

  protected checkOpen(): void {
    if (this.closed) throw new Error("the emulated flash is closed");
  }
}

/**
 * Flash kept in a file of exactly the flash size, so its contents survive
 * restarts of the emulator. A missing file is created 0xFF-filled. Every
 * erase and write goes to the file at once (synchronous writes); reads come
 * from a copy in memory.
 */
export class FileFlash extends MemoryFlash {
  private fd: number | undefined;

  constructor(
    readonly path: string,
    size: number = DEFAULT_FLASH_SIZE,
  ) {
    super(size);
    this.fd = FileFlash.open(path, size, this.bytes);
  }

  private static open(path: string, size: number, bytes: Uint8Array): number {
    let fd: number;
    let created = false;
    try {
      fd = openSync(path, "r+");
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== "ENOENT") throw FileFlash.describe(path, error);
      try {
        fd = openSync(path, "wx+", 0o644);
        created = true;
      } catch (createError) {
        throw FileFlash.describe(path, createError);
      }
    }
    try {
      if (created) {
        writeSync(fd, bytes, 0, size, 0);
        fsyncSync(fd);
        return fd;
      }
      const stat = fstatSync(fd);
      if (!stat.isFile()) {
        throw new FlashFileError(`Flash file ${path} is not a regular file. Pass --flash a file path.`);
      }
      if (stat.size !== size) {
        throw new FlashFileError(
          `Flash file ${path} is ${stat.size} bytes, but the emulated flash is ${formatFlashSize(size)} (${size} bytes). ` +
            `Pass the --flash-size the file was made with${FLASH_SIZES.includes(stat.size) ? ` (${formatFlashSize(stat.size)})` : ""}, or name a new file to start with an erased flash.`,
        );
      }
      let done = 0;
      while (done < size) {
        const n = readSync(fd, bytes, done, size - done, done);
        if (n === 0) break;
        done += n;
      }
      return fd;
    } catch (error) {
      closeSync(fd);
      throw error instanceof FlashFileError ? error : FileFlash.describe(path, error);
    }
  }

  private static describe(path: string, error: unknown): FlashFileError {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "EISDIR")
      return new FlashFileError(`Flash file ${path} is a directory. Pass --flash a file path.`);
    if (code === "EACCES" || code === "EPERM") {
      return new FlashFileError(
        `Flash file ${path} cannot be opened for reading and writing (permission denied).`,
      );
    }
    if (code === "ENOENT") {
      return new FlashFileError(`Flash file ${path} cannot be created: its directory does not exist.`);
    }
    return new FlashFileError(`Flash file ${path} cannot be used: ${(error as Error).message}`, {
      cause: error,
    });
  }

  protected override persist(offset: number, length: number): void {
    if (this.fd === undefined) return;
    let done = 0;
    while (done < length) done += writeSync(this.fd, this.bytes, offset + done, length - done, offset + done);
  }

  override close(): void {
    if (this.fd !== undefined) {
      fsyncSync(this.fd);
      closeSync(this.fd);
      this.fd = undefined;
    }
    super.close();
  }
}

/** Opens file-backed flash when a path is given, memory flash otherwise. */
export function openFlash(options: { path?: string | undefined; size?: number | undefined } = {}): Flash {
  const size = checkFlashSize(options.size ?? DEFAULT_FLASH_SIZE);
  return options.path === undefined ? new MemoryFlash(size) : new FileFlash(options.path, size);
}
