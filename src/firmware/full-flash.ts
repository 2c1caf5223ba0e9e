import { MpotaError } from "../errors.ts";
import { EXIT_CODES } from "../exit-codes.ts";
import { type FlashMode, withFlashParams } from "./esp-image.ts";
import { esptoolFlashSizeName, flashSizeCode } from "./flash-layout.ts";
import { hex } from "./format.ts";

/** The bootloader and the firmware cannot be combined into one flash image as asked. */
export class FlashPlanError extends MpotaError {
  override readonly exitCode: number = EXIT_CODES.flashPlan.code;
}

export interface FullFlashOptions {
  /** yaota8266.bin: boot8266 + ota-server, written at 0x0. */
  bootloader: Uint8Array;
  /** firmware-ota.bin, written at MAIN_APP_OFFSET. */
  firmware: Uint8Array;
  appOffset: number;
  flashSize: number;
  /** When given, the header at 0x0 is set to this mode and flashSize, as `esptool.py write_flash -fm -fs` would. */
  flashMode?: FlashMode;
}

/**
 * One file for the first serial flash: the bootloader at 0x0, 0xFF up to
 * MAIN_APP_OFFSET (what erased flash holds), the app at MAIN_APP_OFFSET.
 * Nothing past the app: the filesystem and the SDK sectors are left alone.
 */
export function buildFullFlashImage(options: FullFlashOptions): Uint8Array {
  const { bootloader, firmware, appOffset, flashSize } = options;
  let bootEnd = bootloader.length;
  while (bootEnd > appOffset && bootloader[bootEnd - 1] === 0xff) bootEnd--;
  if (bootEnd > appOffset) {
    throw new FlashPlanError(
      `The bootloader is ${bootEnd} bytes long, past MAIN_APP_OFFSET ${hex(appOffset)}: the app would overwrite the ota-server. Pass the --app-offset from the config.h it was built with (its MAIN_APP_OFFSET).`,
    );
  }
  if (appOffset + firmware.length > flashSize) {
    throw new FlashPlanError(
      `Bootloader and app need ${appOffset + firmware.length} bytes, more than the ${flashSize}-byte flash holds. Use a device with more flash.`,
    );
  }
  const out = new Uint8Array(appOffset + firmware.length).fill(0xff);
  out.set(bootloader.subarray(0, bootEnd), 0);
  out.set(firmware, appOffset);
  return options.flashMode ? withFlashParams(out, options.flashMode, flashSizeCode(flashSize)) : out;
}

/** Quotes a word for a POSIX shell when it needs it. */
export function shellWord(word: string): string {
  return /^[A-Za-z0-9_./:=@%+,-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

export interface EsptoolCommandOptions {
  port: string;
  baud: number;
  flashMode: FlashMode;
  flashSize: number;
  appOffset: number;
  bootloaderFile: string;
  firmwareFile: string;
  /** The merged image, when one was written. */
  mergedFile?: string;
}

export interface EsptoolCommands {
  /** Erases the whole chip: old filesystem and SDK parameters go, which a first flash wants. */
  erase: string;
  /** Writes the merged image at 0x0 (null without one). */
  merged: string | null;
  /** Writes the two parts at their offsets. */
  parts: string;
}

/**
 * The esptool.py command lines for a first flash. `-fm` and `-fs` make
 * esptool patch the header at 0x0, where the ROM reads the flash mode and
 * the SDK reads the flash size (to find its parameter sectors).
 */
export function esptoolCommands(options: EsptoolCommandOptions): EsptoolCommands {
  const base = `esptool.py --port ${shellWord(options.port)} --baud ${options.baud}`;
  const params = `-fm ${options.flashMode} -fs ${esptoolFlashSizeName(options.flashSize)}`;
  return {
    erase: `${base} erase_flash`,
    merged: options.mergedFile ? `${base} write_flash ${params} 0x0 ${shellWord(options.mergedFile)}` : null,
    parts: `${base} write_flash ${params} 0x0 ${shellWord(options.bootloaderFile)} ${hex(options.appOffset)} ${shellWord(options.firmwareFile)}`,
  };
}
