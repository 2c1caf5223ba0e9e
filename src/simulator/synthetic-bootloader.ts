import { SYNTHETIC_BOOTLOADER_MARK } from "../firmware/bootloader-image.ts";
import type { YaotaSettings } from "../protocol/config-h.ts";
import { DEFAULT_MAIN_APP_OFFSET } from "../protocol/config-h.ts";
import { MAX_IMAGE_SIZE } from "../protocol/datagram.ts";
import { espSegmentsImage, seededBytes } from "./esp-image-bytes.ts";

export interface SyntheticBootloaderOptions {
  /** The receiver's RSA modulus, big-endian, as config.h's MODULUS holds it. */
  modulus: Uint8Array;
  /** GPIO_MASK, GPIO_WAIT_MS and MAIN_APP_OFFSET (defaults: upstream's config.h.example). */
  settings?: Partial<Pick<YaotaSettings, "gpioMask" | "gpioWaitMs" | "mainAppOffset">>;
  seed?: number;
}

const SECTOR = 0x1000;
/** boot8266's iram segment: with the image and segment headers and the checksum block, exactly one sector. */
const BOOT_CODE_BYTES = 0xfe4;
/** The `.param` section (u32 gpio_mask, u32 gpio_wait_ms) at iram offset 0xef0, file offset 0xf00. */
const PARAM_AT = 0xef0;

/** An esptool v1 image of `segments` ([address, data]) starting at `entry`. */
function espImage(segments: Array<[number, Uint8Array]>, entry: number): Uint8Array {
  const header = new Uint8Array(8);
  header[0] = 0xe9;
  header[1] = segments.length;
  header[2] = 0; // qio; esptool sets the mode and size when flashing
  header[3] = 0x20; // 1 MiB, 40 MHz
  new DataView(header.buffer).setUint32(4, entry, true);
  return espSegmentsImage(
    header,
    segments.map(([address, data]) => ({ address, data })),
  );
}

function padToSector(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(Math.ceil(bytes.length / SECTOR) * SECTOR).fill(0xff);
  out.set(bytes);
  return out;
}

/**
 * A stand-in for a yaota8266.bin built with `modulus`, laid out as
 * upstream's merge.py writes one: boot8266 in one sector (its GPIO
 * parameters at 0xf00, MAIN_APP_OFFSET and the 800000 size limit among its
 * constants), the ota-server image at 0x1000 (the modulus in its data, as
 * `static uint8_t MOD[] = MODULUS;` places it) and its irom0 text at
 * 0x9000. It runs nothing: its code is filler and it says so in its first
 * sector, which `mpota inspect` and `flash-plan` report. For trying the
 * tools without a yaota8266 build; never for a device.
 */
export function buildSyntheticBootloader(options: SyntheticBootloaderOptions): Uint8Array {
  const seed = options.seed ?? 1;
  const appOffset = options.settings?.mainAppOffset ?? DEFAULT_MAIN_APP_OFFSET;
  const code = seededBytes(BOOT_CODE_BYTES, seed);
  // The linker's 0xFF fill between the code and the parameters.
  code.fill(0xff, 0x900, PARAM_AT);
  code.fill(0xff, PARAM_AT + 8);
  const view = new DataView(code.buffer);
  view.setUint32(0x100, appOffset, true);
  view.setUint32(0x104, appOffset + 0x8ffc, true);
  view.setUint32(0x108, MAX_IMAGE_SIZE, true);
  code.set(Buffer.from(`${SYNTHETIC_BOOTLOADER_MARK}\0`, "latin1"), 0x200);
  view.setUint32(PARAM_AT, options.settings?.gpioMask ?? 0xf035, true);
  view.setUint32(PARAM_AT + 4, options.settings?.gpioWaitMs ?? 3000, true);
  const boot = espImage([[0x40100000, code]], 0x40100004);

  const data = seededBytes(0x600, seed + 1);
  data.set(options.modulus, 0x40);
  data[0x40 + options.modulus.length] = 0;
  const server = espImage(
    [
      [0x40100000, seededBytes(0x6800, seed + 2)],
      [0x3ffe8000, data],
      [0x3ffe8600, seededBytes(0x400, seed + 3)],
    ],
    0x40100010,
  );
  const irom0 = seededBytes(0x10000, seed + 4);
  return new Uint8Array(Buffer.concat([boot, padToSector(server), padToSector(irom0)]));
}
