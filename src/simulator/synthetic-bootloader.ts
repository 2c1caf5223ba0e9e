import { SYNTHETIC_BOOTLOADER_MARK } from "../firmware/bootloader-image.ts";
import { seededRandom } from "../net/random.ts";
import type { YaotaSettings } from "../protocol/config-h.ts";
import { DEFAULT_MAIN_APP_OFFSET } from "../protocol/config-h.ts";
import { MAX_IMAGE_SIZE } from "../protocol/datagram.ts";

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

function pseudoRandom(n: number, seed: number): Uint8Array {
  const random = seededRandom(seed);
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.floor(random() * 256);
  return out;
}

/** An esptool v1 image: header, segments (address, length, data), padding and the XOR checksum (seed 0xEF) in its last byte. */
function espImage(segments: Array<[number, Uint8Array]>, entry: number): Uint8Array {
  const body = 8 + segments.reduce((n, [, data]) => n + 8 + data.length, 0);
  const out = new Uint8Array(Math.floor(body / 16) * 16 + 16);
  const view = new DataView(out.buffer);
  out[0] = 0xe9;
  out[1] = segments.length;
  out[2] = 0; // qio; esptool sets the mode and size when flashing
  out[3] = 0x20; // 1 MiB, 40 MHz
  view.setUint32(4, entry, true);
  let at = 8;
  let checksum = 0xef;
  for (const [address, data] of segments) {
    view.setUint32(at, address, true);
    view.setUint32(at + 4, data.length, true);
    out.set(data, at + 8);
    at += 8 + data.length;
    for (const b of data) checksum ^= b;
  }
  out[out.length - 1] = checksum;
  return out;
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
  const code = pseudoRandom(BOOT_CODE_BYTES, seed);
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

  const data = pseudoRandom(0x600, seed + 1);
  data.set(options.modulus, 0x40);
  data[0x40 + options.modulus.length] = 0;
  const server = espImage(
    [
      [0x40100000, pseudoRandom(0x6800, seed + 2)],
      [0x3ffe8000, data],
      [0x3ffe8600, pseudoRandom(0x400, seed + 3)],
    ],
    0x40100010,
  );
  const irom0 = pseudoRandom(0x10000, seed + 4);
  return new Uint8Array(Buffer.concat([boot, padToSector(server), padToSector(irom0)]));
}
