import { createHash } from "node:crypto";
import { UsageError } from "../errors.ts";
import { PACKED_RAM_SIZE } from "../firmware/flash-layout.ts";
import { SIZE_WORD_OFFSET } from "../firmware/micropython-image.ts";
import { seededRandom } from "../net/random.ts";
import { DEFAULT_MAIN_APP_OFFSET } from "../protocol/config-h.ts";
import { MAX_IMAGE_SIZE } from "../protocol/datagram.ts";

/** A synthetic firmware was asked for with a size it cannot have. */
export class SyntheticFirmwareError extends UsageError {}

/** About the size of a MicroPython 1.27 OTA build for the ESP8266. */
export const DEFAULT_SYNTHETIC_SIZE = 600 * 1024;
/** What os.uname().version says on the simulated devices. */
export const SYNTHETIC_VERSION = "v1.27.0 on 2025-12-10";

const IRAM_BYTES = 0x6000;
const DRAM_BYTES = 0x1200;
/** Smallest image: the packed RAM area, a little irom0, the MD5 trailer. */
const MIN_SIZE = PACKED_RAM_SIZE + 256 + 16;

export interface SyntheticFirmwareOptions {
  /** Bytes of the whole image (packed RAM area, irom0, MD5 trailer); default 600 KiB. */
  size?: number;
  /** The same seed gives the same bytes, hence the same identity. */
  seed?: number;
  /** MAIN_APP_OFFSET the image is linked for (irom0 at 0x40200000 + offset + 0x9000). */
  appOffset?: number;
}

function fill(bytes: Uint8Array, seed: number): void {
  const random = seededRandom(seed);
  for (let i = 0; i < bytes.length; i += 4) {
    const word = Math.floor(random() * 0x1_0000_0000);
    for (let b = 0; b < 4 && i + b < bytes.length; b++) bytes[i + b] = (word >>> (8 * b)) & 0xff;
  }
}

/**
 * A stand-in for a MicroPython ESP8266 "OTA build", laid out as makeimg.py
 * writes one: an esptool v1 image (an iram and a dram segment) padded with
 * 0xFF to 0x8ffc, the u32 total size there, irom0 text from 0x9000, and the
 * MD5 of bytes [4, total) as a 16-byte trailer, so boot8266 accepts it and
 * its trailer is its identity. Contents are pseudo-random from `seed`, with
 * literal pools pointing at the OTA build's irom0 link address and the
 * usual version banner, so `mpota inspect` and the preflight checks see an
 * OTA build. It runs nothing: the simulated device's app is the agent.
 */
export function buildSyntheticFirmware(options: SyntheticFirmwareOptions = {}): Uint8Array {
  const size = options.size ?? DEFAULT_SYNTHETIC_SIZE;
  if (!Number.isSafeInteger(size) || size < MIN_SIZE || size - 16 > MAX_IMAGE_SIZE) {
    throw new SyntheticFirmwareError(
      `A synthetic firmware of ${size} bytes is not possible: give a size from ${MIN_SIZE} to ${MAX_IMAGE_SIZE + 16} bytes (boot8266 refuses images above ${MAX_IMAGE_SIZE}).`,
    );
  }
  const seed = options.seed ?? 1;
  const irom0Base = 0x40200000 + (options.appOffset ?? DEFAULT_MAIN_APP_OFFSET) + PACKED_RAM_SIZE;
  const total = size - 16;
  const irom0Length = total - PACKED_RAM_SIZE;

  const iram = new Uint8Array(IRAM_BYTES);
  fill(iram, seed * 3 + 1);
  const dram = new Uint8Array(DRAM_BYTES);
  fill(dram, seed * 3 + 2);
  const irom = new Uint8Array(irom0Length);
  fill(irom, seed * 3 + 3);

  // Literal pools: iram calls into irom0 densely from its link base on.
  const iramView = new DataView(iram.buffer);
  const span = Math.min(irom0Length, 0x10000);
  for (let i = 0; i < 128; i++) iramView.setUint32(32 + i * 128, irom0Base + ((i * 0x200) % span), true);
  // irom0 calls within itself.
  const iromView = new DataView(irom.buffer);
  for (let at = 0; at + 4 <= irom0Length && at < 0x8000; at += 256) {
    iromView.setUint32(at, irom0Base + ((at * 4) % Math.max(4, irom0Length)), true);
  }
  const banner = Buffer.from(`MicroPython ${SYNTHETIC_VERSION}; ESP module (1M) with ESP8266\0`, "latin1");
  dram.set(banner, 64);

  const image = new Uint8Array(size).fill(0xff);
  const header = new DataView(image.buffer);
  image[0] = 0xe9; // esptool v1 image
  image[1] = 2; // two segments
  image[2] = 0; // flash mode qio (esptool rewrites it when flashing)
  image[3] = 0x20; // 1 MiB, 40 MHz
  header.setUint32(4, 0x40100004, true); // entry point in iram
  let at = 8;
  for (const [address, data] of [
    [0x40100000, iram],
    [0x3ffe8000, dram],
  ] as const) {
    header.setUint32(at, address, true);
    header.setUint32(at + 4, data.length, true);
    image.set(data, at + 8);
    at += 8 + data.length;
  }
  header.setUint32(SIZE_WORD_OFFSET, total, true);
  image.set(irom, PACKED_RAM_SIZE);
  image.set(createHash("md5").update(image.subarray(4, total)).digest(), total);
  return image;
}

/**
 * The firmware identity of a MicroPython image: its 16-byte MD5 trailer as
 * hex (what the agent reports as `fw`). Undefined when the size word is not
 * plausible.
 */
export function firmwareIdentity(image: Uint8Array): string | undefined {
  if (image.length < PACKED_RAM_SIZE) return undefined;
  const total = new DataView(image.buffer, image.byteOffset, image.byteLength).getUint32(
    SIZE_WORD_OFFSET,
    true,
  );
  if (total < PACKED_RAM_SIZE || total > MAX_IMAGE_SIZE || total + 16 > image.length) return undefined;
  return Buffer.from(image.subarray(total, total + 16)).toString("hex");
}
