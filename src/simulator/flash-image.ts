/** Putting a firmware image into a simulated device's flash before its first power-on. */
import type { Flash } from "../emulator/flash.ts";
import { SECTOR_SIZE as FLASH_SECTOR_SIZE } from "../protocol/datagram.ts";
import { SimulatorError } from "./simulator-error.ts";

/** Writes `image` at `offset` as esptool would: erase the sectors, then program. */
export function writeImage(flash: Flash, offset: number, image: Uint8Array): void {
  if (offset % FLASH_SECTOR_SIZE !== 0 || offset + image.length > flash.size) {
    throw new SimulatorError(
      `A ${image.length}-byte firmware does not fit at 0x${offset.toString(16)} in a ${flash.size}-byte flash; use a smaller image or a larger flash.`,
    );
  }
  const first = offset / FLASH_SECTOR_SIZE;
  const last = Math.ceil((offset + image.length) / FLASH_SECTOR_SIZE);
  for (let s = first; s < last; s++) flash.eraseSector(s);
  flash.write(offset, image);
}
