import { FileError } from "../errors.ts";
import { checkInputFileSize } from "../firmware/image-file.ts";
import { MAX_IMAGE_SIZE } from "../protocol/datagram.ts";

/** The firmware is empty or larger than boot8266 will boot (exit code of FileError, as push uses). */
export class ImageSizeError extends FileError {}

/** The MD5 that follows the size-word's count of bytes in a MicroPython image. */
const MD5_TRAILER_LENGTH = 16;
/** The largest image file boot8266 boots: a size word of 800000 plus the MD5 trailer. */
export const MAX_IMAGE_FILE_SIZE = MAX_IMAGE_SIZE + MD5_TRAILER_LENGTH;

/** `streaming`: the size is what was read so far from a pipe, not the whole. */
export function checkImageSize(size: number, path: string, streaming = false): void {
  if (!streaming) checkInputFileSize(size, path);
  if (size === 0) {
    throw new ImageSizeError(
      `${path} is empty, so there is nothing to sign or send. Give the MicroPython OTA build (firmware-ota.bin) instead.`,
    );
  }
  if (size > MAX_IMAGE_FILE_SIZE) {
    throw new ImageSizeError(
      `${path} is ${streaming ? "more than " : ""}${streaming ? MAX_IMAGE_FILE_SIZE : size} bytes, but boot8266 refuses to boot an app whose size word exceeds ${MAX_IMAGE_SIZE} bytes (${MAX_IMAGE_FILE_SIZE} with its MD5 trailer): the device would stay in OTA mode after the update. Build a smaller firmware (fewer frozen modules).`,
    );
  }
}
