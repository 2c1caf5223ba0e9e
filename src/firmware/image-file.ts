import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { FileError } from "../errors.ts";
import { EXIT_CODES } from "../exit-codes.ts";
import { FLASH_SIZES } from "./flash-layout.ts";
import { sizeText } from "./format.ts";

/**
 * The largest file mpota reads as firmware, a flash dump or a .ota: the
 * biggest flash of any ESP8266 board (16 MiB). A larger file cannot be an
 * image for any device, so it is refused from its size, before it is read.
 */
export const MAX_INPUT_FILE_SIZE = Math.max(...FLASH_SIZES);

/** A file is larger than any device's flash, so it cannot be firmware. */
export class FileTooLargeError extends FileError {
  override readonly exitCode: number = EXIT_CODES.fileTooLarge.code;
}

/** Throws FileTooLargeError when a file of `size` bytes cannot be an image. */
export function checkInputFileSize(size: number, path: string): void {
  if (size > MAX_INPUT_FILE_SIZE) {
    throw new FileTooLargeError(
      `${path} is ${sizeText(size)}, larger than the largest flash of any ESP8266 board (${MAX_INPUT_FILE_SIZE / 1024 / 1024} MiB), so it cannot be a firmware image, flash dump or .ota file. Is it the right file?`,
    );
  }
}

function readError(path: string, what: string, error: unknown): FileError {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === "ENOENT") return new FileError(`${what} ${path} does not exist. Check the path.`);
  if (code === "EISDIR") return new FileError(`${what} ${path} is a directory, not a file.`);
  if (code === "EACCES") return new FileError(`${what} ${path} cannot be read (permission denied).`);
  return new FileError(`${what} ${path} cannot be read: ${(error as Error).message}`, { cause: error });
}

/** A pipe or device has no size up front: read it in chunks and stop once it is too large. */
function readStream(fd: number, path: string): Buffer {
  const chunks: Buffer[] = [];
  let total = 0;
  for (;;) {
    const chunk = Buffer.allocUnsafe(64 * 1024);
    const n = readSync(fd, chunk, 0, chunk.length, null);
    if (n === 0) return Buffer.concat(chunks, total);
    chunks.push(chunk.subarray(0, n));
    total += n;
    if (total > MAX_INPUT_FILE_SIZE) {
      throw new FileTooLargeError(
        `${path} gave more than ${MAX_INPUT_FILE_SIZE / 1024 / 1024} MiB, the largest flash of any ESP8266 board, so it cannot be a firmware image, flash dump or .ota file. Is it the right file?`,
      );
    }
  }
}

/**
 * Reads a file that should hold firmware (or a flash dump, a .ota): its size
 * is checked on the open descriptor (fstat) first, so a huge file or a
 * device node is refused without reading it, and the bytes are read into
 * one buffer of exactly that size.
 */
export function readImageFileSync(path: string, what = "Firmware file"): Buffer {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (error) {
    throw readError(path, what, error);
  }
  try {
    const stats = fstatSync(fd);
    if (stats.isDirectory()) throw new FileError(`${what} ${path} is a directory, not a file.`);
    if (!stats.isFile()) return readStream(fd, path);
    checkInputFileSize(stats.size, path);
    const bytes = Buffer.allocUnsafe(stats.size);
    let filled = 0;
    while (filled < bytes.length) {
      const n = readSync(fd, bytes, filled, bytes.length - filled, filled);
      if (n === 0) break; // the file shrank while being read
      filled += n;
    }
    return filled === bytes.length ? bytes : bytes.subarray(0, filled);
  } catch (error) {
    if (error instanceof FileError) throw error;
    throw readError(path, what, error);
  } finally {
    closeSync(fd);
  }
}
