import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { FileError } from "../errors.ts";
import { DEFAULT_FLASH_SIZE } from "../firmware/flash-layout.ts";
import { DEFAULT_MAIN_APP_OFFSET } from "../protocol/config-h.ts";

/**
 * Flash as the simulated device reads it (`esp.flash_read`). The emulator's
 * flash fits this shape, so a device can read what the emulator wrote.
 */
export interface FlashSource {
  readonly size: number;
  read(offset: number, length: number): Uint8Array;
}

/** A flash file that cannot be read. */
export class FlashReadError extends FileError {}

/** Erased flash (0xFF) of `size` bytes with `image` written at `offset`. */
export function buildFlash(image: Uint8Array, options: { size?: number; offset?: number } = {}): Uint8Array {
  const size = options.size ?? DEFAULT_FLASH_SIZE;
  const offset = options.offset ?? DEFAULT_MAIN_APP_OFFSET;
  if (offset + image.length > size) {
    throw new RangeError(
      `an image of ${image.length} bytes at 0x${offset.toString(16)} does not fit a ${size}-byte flash`,
    );
  }
  const flash = new Uint8Array(size).fill(0xff);
  flash.set(image, offset);
  return flash;
}

/** The live flash behind a Uint8Array (read in place), a file (read at each call) or a {@link FlashSource}. */
export function flashSource(flash: Uint8Array | string | FlashSource): FlashSource {
  if (flash instanceof Uint8Array) {
    return { size: flash.length, read: (offset, length) => flash.slice(offset, offset + length) };
  }
  if (typeof flash !== "string") return flash;
  const path = flash;
  const withFile = <T>(fn: (fd: number) => T): T => {
    let fd: number | undefined;
    try {
      fd = openSync(path, "r");
      return fn(fd);
    } catch (error) {
      throw new FlashReadError(
        `Cannot read the device's flash file ${path} (${(error as Error).message}); check the path.`,
        { cause: error },
      );
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
  };
  return {
    get size() {
      return withFile((fd) => fstatSync(fd).size);
    },
    read: (offset, length) =>
      withFile((fd) => {
        const out = new Uint8Array(length);
        const n = readSync(fd, out, 0, length, offset);
        return out.subarray(0, n);
      }),
  };
}
