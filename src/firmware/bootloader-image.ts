import { SECTOR_SIZE as FLASH_SECTOR, MAX_IMAGE_SIZE } from "../protocol/datagram.ts";
import type { PublicKeyInfo } from "../protocol/rsa-key.ts";
import {
  ESP_IMAGE_V1_MAGIC,
  type EspImageV1,
  fileOffsetOfAddress,
  parseEspImage,
  tryParseEspImage,
} from "./esp-image.ts";
import { OTA_SERVER_IROM0_OFFSET, OTA_SERVER_OFFSET } from "./flash-layout.ts";
import { hex } from "./format.ts";
import {
  analyzeMicroPythonImage,
  isMicroPythonImage,
  type MicroPythonImageAnalysis,
} from "./micropython-image.ts";

/**
 * boot8266.ld places the `.param` section (u32 gpio_mask, u32 gpio_wait_ms)
 * at iram 0x40100000 + 0xf00 - 0x10: with the 8-byte image header and the
 * 8-byte segment header before the iram data, that is file offset 0xf00.
 */
export const BOOT8266_PARAM_ADDRESS = 0x40100ef0;
export const BOOT8266_PARAM_FILE_OFFSET = 0xf00;
/** boot8266's defaults (config.h.example). */
export const DEFAULT_GPIO_MASK = 0xf035;
export const DEFAULT_GPIO_WAIT_MS = 3000;

/**
 * The modulus in yaota8266's config.h.example. Its private key is not
 * public: a bootloader built with it accepts no update its owner can sign.
 */
export const EXAMPLE_MODULUS = Buffer.from(
  "ce4aaf650d4a74dac1305980cfdde82a2e1df7a8c96ca94a2cb78a5a2a25c02b7b2f584ca8cb820706087eff1fce471367945f9aac5e7dcf63f008e951989501",
  "hex",
);

/**
 * Text in the synthetic yaota8266.bin that `mpota simulate --write-bootloader`
 * writes (upstream's layout and the user's modulus, no working code), so
 * that inspect and flash-plan can say it must not go on a device.
 */
export const SYNTHETIC_BOOTLOADER_MARK = "mpota synthetic yaota8266.bin: runs nothing, do not flash";

/** One piece of a yaota8266.bin (or of a flash image that starts with one). */
export interface BootloaderPart {
  name: "boot8266" | "ota-server" | "ota-server irom0" | "main app";
  offset: number;
  length: number;
}

/** Where the receiver's key stands. */
export interface ModulusMatch {
  bits: number;
  /** True when the key's modulus (big-endian) appears in the file. */
  found: boolean;
  /** File offset of the modulus, when found. */
  offset: number | null;
}

/** What mpota reads from a yaota8266.bin. Plain data (the `--json` shape). */
export interface BootloaderAnalysis {
  parts: BootloaderPart[];
  boot8266: {
    espImage: EspImageV1;
    /** GPIO inputs boot8266 watches after reset (0: OTA mode on every boot); null when unreadable. */
    gpioMask: number | null;
    /** GPIO numbers set in gpioMask. */
    gpioPins: number[];
    /** How long boot8266 watches them, in ms; null when unreadable. */
    gpioWaitMs: number | null;
    /** File offset the two parameters were read from (0xf00 for upstream's build). */
    paramOffset: number | null;
    /** MAIN_APP_OFFSET as boot8266's code holds it (X and X+0x8ffc both appear as constants); null when not found. */
    mainAppOffset: number | null;
    /** boot8266 holds the 800000 size limit constant (a sign it is boot8266 and not another small app). */
    hasSizeLimit: boolean;
  };
  otaServer: {
    espImage: EspImageV1 | null;
    /** Where the ota-server's irom0 text starts in the file (it must be 0x9000). */
    irom0Offset: number;
    irom0Length: number;
  };
  /** Where the bootloader's content ends (last byte that is not 0xFF padding, rounded up to a sector). */
  contentEnd: number;
  /** Built with the modulus of yaota8266's config.h.example. */
  exampleKey: boolean;
  /** Set when a key was given. */
  key: ModulusMatch | null;
  /** When the file also holds an app at MAIN_APP_OFFSET (a full flash image or `flash_read` dump). */
  mainApp: { offset: number; espImage: EspImageV1; micropython: MicroPythonImageAnalysis | null } | null;
  warnings: string[];
  /** Problems with the bootloader itself. */
  errors: string[];
  /** Problems with its key: built with the example key, or without the given key's modulus. */
  keyErrors: string[];
}

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** File offset of `modulus` (big-endian, as config.h holds it) in `bytes`, or -1. */
export function findModulus(bytes: Uint8Array, modulus: Uint8Array): number {
  return asBuffer(bytes).indexOf(asBuffer(modulus));
}

/**
 * True when `bytes` starts like a yaota8266.bin: an esptool image at 0 that
 * ends within the first sector (boot8266) and another esptool image at 0x1000
 * (the ota-server), or boot8266's sector alone.
 */
export function isYaotaBootloader(bytes: Uint8Array): boolean {
  if (bytes[0] !== ESP_IMAGE_V1_MAGIC) return false;
  const boot = tryParseEspImage(bytes, 0);
  if (!boot || boot.end > OTA_SERVER_OFFSET) return false;
  if (bytes.length <= OTA_SERVER_OFFSET) {
    // boot8266 alone: exactly one sector (boot8266.ld makes it so) holding boot8266's 800000 size limit.
    return boot.end === OTA_SERVER_OFFSET && words(bytes, 0, boot.end).has(MAX_IMAGE_SIZE);
  }
  return (
    bytes[OTA_SERVER_OFFSET] === ESP_IMAGE_V1_MAGIC &&
    tryParseEspImage(bytes, OTA_SERVER_OFFSET) !== undefined
  );
}

function words(bytes: Uint8Array, start: number, end: number): Set<number> {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Set<number>();
  for (let i = start + ((4 - (start % 4)) % 4); i + 4 <= Math.min(end, bytes.length); i += 4) {
    out.add(view.getUint32(i, true));
  }
  return out;
}

/** GPIO numbers whose bit is set in a mask. */
export function gpioPins(mask: number): number[] {
  const pins: number[] = [];
  for (let i = 0; i < 32; i++) if ((mask >>> i) & 1) pins.push(i);
  return pins;
}

function lastContentByte(bytes: Uint8Array, end: number): number {
  let i = Math.min(end, bytes.length) - 1;
  while (i >= 0 && bytes[i] === 0xff) i--;
  return i + 1;
}

/**
 * Reads a yaota8266.bin: boot8266 in the first sector (its esptool image,
 * GPIO parameters and compiled-in MAIN_APP_OFFSET), the ota-server image at
 * 0x1000 and its irom0 text at the next sector boundary, which must be 0x9000.
 * With a key, says whether the file holds its modulus; a bootloader built
 * with another modulus drops every datagram signed with the key, silently.
 */
export function analyzeBootloader(
  bytes: Uint8Array,
  options: { key?: PublicKeyInfo; appOffset?: number; source?: string } = {},
): BootloaderAnalysis {
  const source = options.source ?? "the bootloader";
  const warnings: string[] = [];
  const errors: string[] = [];
  const keyErrors: string[] = [];
  const boot = parseEspImage(bytes, 0, source);
  const paramOffset = fileOffsetOfAddress(boot, BOOT8266_PARAM_ADDRESS) ?? null;
  const readParam = (at: number) =>
    at + 4 <= bytes.length ? new DataView(bytes.buffer, bytes.byteOffset).getUint32(at, true) : null;
  const gpioMask = paramOffset === null ? null : readParam(paramOffset);
  const gpioWaitMs = paramOffset === null ? null : readParam(paramOffset + 4);
  if (paramOffset === null) {
    warnings.push(
      `boot8266's parameter area (address ${hex(BOOT8266_PARAM_ADDRESS)}, file offset ${hex(BOOT8266_PARAM_FILE_OFFSET)} in upstream's build) is not in its image, so the GPIO settings cannot be read.`,
    );
  } else if (gpioMask !== null && gpioMask > 0x1ffff) {
    warnings.push(
      `boot8266's gpio_mask reads ${hex(gpioMask)}, which names pins an ESP8266 does not have: this boot sector may not be upstream's layout.`,
    );
  }
  if (gpioMask === 0) {
    warnings.push(
      "gpio_mask is 0: boot8266 enters OTA mode on every boot, and the app runs only after the receiver gives up (IDLE_REBOOT_MS).",
    );
  }
  const bootWords = words(bytes, 0, Math.min(boot.end, OTA_SERVER_OFFSET));
  let mainAppOffset: number | null = null;
  for (const w of [...bootWords].sort((a, b) => a - b)) {
    if (w >= 0x2000 && w < 0x100000 && w % FLASH_SECTOR === 0 && bootWords.has(w + 0x8ffc)) {
      mainAppOffset = w;
      break;
    }
  }
  const hasSizeLimit = bootWords.has(MAX_IMAGE_SIZE);
  if (asBuffer(bytes.subarray(0, OTA_SERVER_OFFSET)).includes(SYNTHETIC_BOOTLOADER_MARK, 0, "latin1")) {
    warnings.push(
      "This is a synthetic yaota8266.bin made by `mpota simulate --write-bootloader`: upstream's layout with your key's modulus, but no working code. It is for trying inspect and flash-plan; do not flash it. Build yaota8266 (https://github.com/pfalcon/yaota8266) with `mpota config-h` for a real device.",
    );
  }

  const appOffset = options.appOffset ?? mainAppOffset ?? undefined;
  // A full flash image (or a dump of a device's flash) holds the app at MAIN_APP_OFFSET too.
  const app =
    appOffset !== undefined && bytes.length > appOffset && bytes[appOffset] === ESP_IMAGE_V1_MAGIC
      ? tryParseEspImage(bytes, appOffset)
      : undefined;
  const bootloaderEnd = app ? (appOffset as number) : bytes.length;
  const parts: BootloaderPart[] = [
    { name: "boot8266", offset: 0, length: Math.min(FLASH_SECTOR, bytes.length) },
  ];
  let server: EspImageV1 | null = null;
  let irom0Offset = OTA_SERVER_IROM0_OFFSET;
  const contentEnd = Math.ceil(lastContentByte(bytes, bootloaderEnd) / FLASH_SECTOR) * FLASH_SECTOR;
  if (bytes.length <= OTA_SERVER_OFFSET) {
    errors.push(
      "The file holds only boot8266 (one sector) and no ota-server: in OTA mode the device would jump into empty flash. Flash the whole yaota8266.bin from the yaota8266 build.",
    );
  } else {
    try {
      server = parseEspImage(bytes, OTA_SERVER_OFFSET, source);
      parts.push({ name: "ota-server", offset: OTA_SERVER_OFFSET, length: server.end - OTA_SERVER_OFFSET });
      irom0Offset = Math.ceil(server.end / FLASH_SECTOR) * FLASH_SECTOR;
      if (irom0Offset !== OTA_SERVER_IROM0_OFFSET) {
        errors.push(
          `The ota-server's irom0 text starts at ${hex(irom0Offset)}, but the ota-server is linked for ${hex(OTA_SERVER_IROM0_OFFSET)} (0x40209000): OTA mode would crash. Rebuild yaota8266 so that merge.py lays the irom0 part at 0x9000.`,
        );
      }
    } catch (error) {
      errors.push(
        `The ota-server image at ${hex(OTA_SERVER_OFFSET)} cannot be read: ${(error as Error).message}`,
      );
    }
  }
  const irom0Length = Math.max(0, contentEnd - irom0Offset);
  if (server) parts.push({ name: "ota-server irom0", offset: irom0Offset, length: irom0Length });

  const exampleKey = findModulus(bytes.subarray(0, bootloaderEnd), EXAMPLE_MODULUS) >= 0;
  if (exampleKey) {
    keyErrors.push(
      "This bootloader was built with the example key from yaota8266's config.h.example. Nobody but that key's author can sign updates it accepts. Create your own key (`mpota keys new`), put its modulus in config.h (`mpota config-h`) and rebuild yaota8266.",
    );
  }
  let key: ModulusMatch | null = null;
  if (options.key) {
    const at = findModulus(bytes.subarray(0, bootloaderEnd), options.key.modulus);
    key = { bits: options.key.bits, found: at >= 0, offset: at >= 0 ? at : null };
    if (at < 0) {
      keyErrors.push(
        `This bootloader does not hold the ${options.key.bits}-bit modulus of the given key: it would silently drop every update signed with that key. Use the key the bootloader was built with, or rebuild yaota8266 with this key's modulus in config.h (\`mpota config-h\`).`,
      );
    }
  }

  let mainApp: BootloaderAnalysis["mainApp"] = null;
  if (app) {
    const appBytes = bytes.subarray(appOffset);
    mainApp = {
      offset: appOffset as number,
      espImage: app,
      micropython: isMicroPythonImage(appBytes)
        ? analyzeMicroPythonImage(appBytes, { appOffset }).micropython
        : null,
    };
    parts.push({
      name: "main app",
      offset: appOffset as number,
      length: bytes.length - (appOffset as number),
    });
  } else if (appOffset !== undefined && contentEnd > appOffset) {
    errors.push(
      `The bootloader's content reaches ${hex(contentEnd)}, past MAIN_APP_OFFSET ${hex(appOffset)}: flashing the app there would overwrite the end of the ota-server. Use the MAIN_APP_OFFSET of the config.h it was built with.`,
    );
  }
  return {
    parts,
    boot8266: {
      espImage: boot,
      gpioMask,
      gpioPins: gpioMask === null ? [] : gpioPins(gpioMask),
      gpioWaitMs,
      paramOffset,
      mainAppOffset,
      hasSizeLimit,
    },
    otaServer: { espImage: server, irom0Offset, irom0Length },
    contentEnd,
    exampleKey,
    key,
    mainApp,
    warnings,
    errors,
    keyErrors,
  };
}
