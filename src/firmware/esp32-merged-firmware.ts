import { ESP_IMAGE_V1_MAGIC } from "./esp-image.ts";
import { esp32ChipById } from "./esp32-chips.ts";
import { hex } from "./format.ts";

/** Where ESP-IDF's partition table sits in flash, and its entries' magic (0x50AA, little-endian). */
export const PARTITION_TABLE_OFFSET = 0x8000;
/** Where the (first) app goes in every MicroPython ESP32 layout. */
export const FIRST_APP_OFFSET = 0x10000;

/** A merged `firmware.bin`: bootloader, partition table and app in one file for the first flash. */
export interface MergedFirmware {
  /** 0x1000 on the ESP32 and S2, 0x0 on the S3, C3 and later. */
  bootloaderOffset: number;
  /** The chip the app at 0x10000 names, in words (null when its header is cut short). */
  appChip: string | null;
}

/**
 * Recognises what `esptool merge_bin`, MicroPython's `firmware.bin` (which
 * starts at the bootloader's offset) or a flash dump holds: an image at
 * 0x1000 (or 0x0), a partition table at 0x8000 and an image at 0x10000. Such a file written to an OTA slot passes
 * `set_boot()` but does not boot.
 */
export function findMergedFirmware(bytes: Uint8Array): MergedFirmware | null {
  // A flash dump, or merge_bin from 0x0 (the S3, C3 ... whose bootloader is at 0x0): the file starts at flash 0x0.
  const fromZero = layoutAt(bytes, 0);
  if (fromZero !== null) return fromZero;
  // MicroPython's makeimg.py starts the file at the bootloader's offset: on the ESP32 and S2 flash
  // 0x1000 is file offset 0, so the table lies at 0x7000 and the app at 0xf000.
  if (bytes[0] !== ESP_IMAGE_V1_MAGIC) return null;
  const fromBootloader = layoutAt(bytes, 0x1000);
  return fromBootloader?.bootloaderOffset === 0x1000 ? fromBootloader : null;
}

/** The merged layout when file offset 0 is flash address `start`, or null. */
function layoutAt(bytes: Uint8Array, start: number): MergedFirmware | null {
  const table = PARTITION_TABLE_OFFSET - start;
  const app = FIRST_APP_OFFSET - start;
  if (bytes.length <= app) return null;
  if (bytes[table] !== 0xaa || bytes[table + 1] !== 0x50) return null;
  if (bytes[app] !== ESP_IMAGE_V1_MAGIC) return null;
  let bootloaderOffset: number;
  if (start === 0 && bytes[0] === ESP_IMAGE_V1_MAGIC) bootloaderOffset = 0;
  else if (bytes[0x1000 - start] === ESP_IMAGE_V1_MAGIC) bootloaderOffset = 0x1000;
  else return null;
  const chipAt = app + 12;
  const appChip =
    chipAt + 2 <= bytes.length
      ? esp32ChipById((bytes[chipAt] as number) | ((bytes[chipAt + 1] as number) << 8)).label
      : null;
  return { bootloaderOffset, appChip };
}

export function mergedFirmwareMessage(merged: MergedFirmware, source: string): string {
  return `${source} is a merged firmware.bin${merged.appChip ? ` for ${merged.appChip}` : ""} (bootloader at ${hex(merged.bootloaderOffset)}, partition table at ${hex(PARTITION_TABLE_OFFSET)}, app at ${hex(FIRST_APP_OFFSET)}), made for the first flash over serial. An OTA slot takes only the app: written there, this file passes set_boot() but never boots. Use micropython.bin from the same build (published on micropython.org as the .app-bin file).`;
}
