import { createHash } from "node:crypto";
import { seededRandom } from "../../src/net/random.ts";

export interface ImageOptions {
  /** Total file size wanted (header + padding + irom0 + MD5 trailer); rounded as needed. */
  size: number;
  seed?: number;
  /** OTA build (irom0 linked at 0x40245000) or normal build (0x40209000). */
  ota?: boolean;
  /** Flash mode byte (0 qio, 1 qout, 2 dio, 3 dout). */
  flashMode?: number;
  /** Size/frequency byte (high nibble size, low nibble frequency). */
  sizeFreq?: number;
}

function randomBytes(n: number, seed: number): Uint8Array {
  const rnd = seededRandom(seed);
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.floor(rnd() * 256);
  return out;
}

/**
 * A MicroPython ESP8266 image laid out as makeimg.py writes it: an esptool v1
 * image (iram and dram segments) padded with 0xFF to 0x8ffc, the u32 total
 * size word, irom0 text from 0x9000, then the MD5 of bytes [4, total).
 * Contents are pseudo-random, with some references to the irom0 link address.
 */
export function buildMicroPythonImage(options: ImageOptions): Uint8Array {
  const seed = options.seed ?? 1;
  const irom0Base = options.ota === false ? 0x40209000 : 0x40245000;
  const iram = randomBytes(0x6000, seed);
  const dram = randomBytes(0x1200, seed + 1);
  // Literal pools in iram point into irom0: the link address shows in the image.
  for (let i = 0; i < 64; i++) {
    new DataView(iram.buffer).setUint32(16 + i * 64, irom0Base + i * 0x400, true);
  }
  const header = new Uint8Array(8);
  header[0] = 0xe9;
  header[1] = 2;
  header[2] = options.flashMode ?? 0;
  header[3] = options.sizeFreq ?? 0x20; // 1 MiB? (v1: 0x2 = 1MB), 40 MHz
  new DataView(header.buffer).setUint32(4, 0x40100004, true);
  const seg = (addr: number, data: Uint8Array) => {
    const h = new Uint8Array(8);
    new DataView(h.buffer).setUint32(0, addr, true);
    new DataView(h.buffer).setUint32(4, data.length, true);
    return Buffer.concat([h, data]);
  };
  const app = Buffer.concat([header, seg(0x40100000, iram), seg(0x3ffe8000, dram)]);
  const irom0Length = Math.max(16, options.size - 0x9000 - 16);
  const total = 0x9000 + irom0Length;
  const image = new Uint8Array(total + 16).fill(0xff);
  image.set(app, 0);
  new DataView(image.buffer).setUint32(0x8ffc, total, true);
  const irom = randomBytes(irom0Length, seed + 2);
  for (let i = 0; i + 4 <= irom.length && i < 4096; i += 256) {
    new DataView(irom.buffer).setUint32(i, irom0Base + i * 8, true);
  }
  image.set(irom, 0x9000);
  image.set(createHash("md5").update(image.subarray(4, total)).digest(), total);
  return image;
}

/** The firmware identity: the 16-byte MD5 trailer, as hex. */
export function imageIdentity(image: Uint8Array): string {
  const total = new DataView(image.buffer, image.byteOffset).getUint32(0x8ffc, true);
  return Buffer.from(image.subarray(total, total + 16)).toString("hex");
}
