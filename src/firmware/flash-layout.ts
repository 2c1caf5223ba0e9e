import { UsageError } from "../errors.ts";
import { FLASH_SIZE_CODES } from "./esp-image.ts";
import { hex } from "./format.ts";

/** A flash size or offset the user gave cannot describe an ESP8266 flash. */
export class FlashSizeError extends UsageError {}

/** The flash's erase unit, and yaota8266's default MAIN_APP_OFFSET: defined with the protocol, named here too. */
import { DEFAULT_MAIN_APP_OFFSET } from "../protocol/config-h.ts";
import { SECTOR_SIZE as FLASH_SECTOR } from "../protocol/datagram.ts";

/** boot8266 sits in exactly the first sector; the ota-server image follows at this offset. */
export const OTA_SERVER_OFFSET = 0x1000;
/**
 * The ota-server's irom0 text is linked at 0x40209000 (its ota.ld), so it must
 * lie at flash 0x9000: the ESP8266 maps flash offset X to CPU address 0x40200000 + X.
 */
export const OTA_SERVER_IROM0_OFFSET = 0x9000;
export const IROM0_MAP_BASE = 0x40200000;

/**
 * MicroPython's makeimg.py reserves the first 0x9000 bytes of the app for the
 * esptool image (the RAM segments); irom0 text follows at 0x9000. The size
 * word sits in the last 4 bytes of that area.
 */
export const PACKED_RAM_SIZE = 0x9000;
/** irom0 LENGTH in MicroPython's esp8266_ota.ld (the OTA build's linker script). */
export const OTA_IROM0_LENGTH = 0x8f000;
/**
 * The OTA build's code region ends at MAIN_APP_OFFSET + 0x9000 + 0x8f000
 * (0xd4000 with the default offset): esp8266_common.ld sets `_firmware_size`
 * to the end of irom0, and `esp.flash_user_start()` returns it.
 */
export const OTA_FIRMWARE_REGION = PACKED_RAM_SIZE + OTA_IROM0_LENGTH;
/**
 * MicroPython's flashbdev.py keeps one sector after `flash_user_start()` for
 * native code when that start lies below 1 MiB (always the case for the OTA
 * build), so the filesystem starts one sector later: 0xd5000 by default.
 */
export const NATIVE_CODE_SECTORS = 1;
/**
 * The last 20 KiB of flash belong to the Espressif SDK (both MicroPython and
 * the ota-server use it): RF calibration at size-0x5000, PHY init data
 * (esp_init_data_default) at size-0x4000 and three sectors of system
 * parameters from size-0x3000 (0xfb000, 0xfc000, 0xfd000-0xfffff on 1 MiB).
 * MicroPython's flashbdev.py ends the filesystem there ("20K at the flash end
 * is reserved for SDK params storage"). Writing over them breaks WiFi and
 * the SDK's boot until esp_init_data_default.bin is flashed again.
 */
export const SDK_RESERVED_BYTES = 0x5000;
/**
 * The ESP8266 maps only the first 1 MiB of flash to irom0 (0x40200000 to
 * 0x40300000): code past it cannot run, whatever the flash size.
 */
export const IROM0_WINDOW_END = 0x100000;

/** Flash sizes an ESP8266 board can have (what `--flash-size` accepts). */
export const FLASH_SIZES: readonly number[] = [256, 512, 1024, 2048, 4096, 8192, 16384].map((k) => k * 1024);

/**
 * The flash assumed when nobody says: the 1 MiB of Sonoff and ESP-01S boards
 * that yaota8266's layout targets (the emulator's flash, the server's checks).
 */
export const DEFAULT_FLASH_SIZE = 0x100000;

/** Checks a flash size in bytes is one an ESP8266 can have. */
export function checkFlashSize(bytes: number): number {
  if (!FLASH_SIZES.includes(bytes)) {
    const sizes = FLASH_SIZES.map(formatFlashSize);
    throw new FlashSizeError(
      `A flash size of ${bytes} bytes is not one an ESP8266 has; use ${sizes.slice(0, -1).join(", ")} or ${sizes.at(-1)} (\`esptool.py flash_id\` prints the chip's size).`,
    );
  }
  return bytes;
}

/** A flash size the way users write it on the command line: 512K, 1M, 4M. */
export function formatFlashSize(bytes: number): string {
  return bytes >= 0x100000 && bytes % 0x100000 === 0 ? `${bytes / 0x100000}M` : `${bytes / 1024}K`;
}

/** Checks MAIN_APP_OFFSET is a sector boundary past the bootloader's first two parts. */
export function checkAppOffset(offset: number): number {
  if (
    !Number.isInteger(offset) ||
    offset % FLASH_SECTOR !== 0 ||
    offset <= OTA_SERVER_IROM0_OFFSET ||
    offset >= IROM0_WINDOW_END
  ) {
    throw new FlashSizeError(
      `MAIN_APP_OFFSET ${Number.isInteger(offset) ? hex(offset) : offset} is not possible: it must be a multiple of 0x1000 between 0xa000 and 0xff000. yaota8266's default is 0x3c000; use the value from the config.h the bootloader was built with.`,
    );
  }
  return offset;
}

/** esptool's `-fs` name for a size in bytes (`1MB`, `4MB`, `512KB`). */
export function esptoolFlashSizeName(bytes: number): string {
  const entry = FLASH_SIZE_CODES.find((s) => s.bytes === bytes && !s.name.includes("-"));
  if (!entry) throw new FlashSizeError(`esptool has no name for a ${bytes}-byte flash.`);
  return entry.name;
}

export function flashSizeCode(bytes: number): number {
  const entry = FLASH_SIZE_CODES.find((s) => s.bytes === bytes && !s.name.includes("-"));
  if (!entry) throw new FlashSizeError(`esptool has no code for a ${bytes}-byte flash.`);
  return entry.code;
}

/** `1 MiB`, `512 KiB`. */
export function flashSizeText(bytes: number): string {
  return bytes >= 1024 * 1024 ? `${bytes / (1024 * 1024)} MiB` : `${bytes / 1024} KiB`;
}

/** Where everything lives on a yaota8266 device with a MicroPython OTA build. All offsets in bytes. */
export interface FlashLayout {
  flashSize: number;
  /** MAIN_APP_OFFSET: where boot8266 looks for the app and the receiver writes updates. */
  appOffset: number;
  /** End of the OTA build's linked code region, what `esp.flash_user_start()` returns. */
  appRegionEnd: number;
  /** First filesystem sector, as MicroPython's flashbdev.py computes it. */
  filesystemStart: number;
  /** First byte of the SDK's reserved sectors: the end of everything MicroPython may use. */
  usableEnd: number;
  /** The filesystem's size in bytes (0 when there is no room). */
  filesystemSize: number;
}

/**
 * The layout a standard OTA build (esp8266_ota.ld) has on a flash of
 * `flashSize` bytes with the app at `appOffset`. With the defaults on 1 MiB:
 * app 0x3c000-0xd4000, one native-code sector, filesystem 0xd5000-0xfb000
 * (152 KiB), SDK sectors 0xfb000-0x100000.
 */
export function flashLayout(flashSize: number, appOffset = DEFAULT_MAIN_APP_OFFSET): FlashLayout {
  const appRegionEnd = appOffset + OTA_FIRMWARE_REGION;
  const filesystemStart = appRegionEnd + NATIVE_CODE_SECTORS * FLASH_SECTOR;
  const usableEnd = flashSize - SDK_RESERVED_BYTES;
  // flashbdev.py makes no filesystem on flash below 1 MiB.
  const filesystemSize = flashSize < 1024 * 1024 ? 0 : Math.max(0, usableEnd - filesystemStart);
  return { flashSize, appOffset, appRegionEnd, filesystemStart, usableEnd, filesystemSize };
}
