import { espSegmentsImage, seededBytes } from "../../src/simulator/esp-image-bytes.ts";

export interface SegmentSpec {
  address: number;
  data: Uint8Array;
}

export interface EspImageSpec {
  segments: SegmentSpec[];
  entry?: number;
  /** Header byte 2 (0 qio, 1 qout, 2 dio, 3 dout). */
  flashMode?: number;
  /** Header byte 3 (high nibble size, low nibble frequency). */
  sizeFreq?: number;
}

/**
 * An esptool v1 image as `esptool.py elf2image` writes it for the ESP8266:
 * 8-byte header, the segments (u32 address, u32 length, data), zero padding
 * to the last byte of a 16-byte block, and the XOR checksum (seed 0xEF).
 */
export function buildEspImage(spec: EspImageSpec): Uint8Array {
  const header = new Uint8Array(8);
  header[0] = 0xe9;
  header[1] = spec.segments.length;
  header[2] = spec.flashMode ?? 0;
  header[3] = spec.sizeFreq ?? 0x20;
  new DataView(header.buffer).setUint32(4, spec.entry ?? 0x40100004, true);
  return espSegmentsImage(header, spec.segments);
}

function putU32(bytes: Uint8Array, offset: number, value: number): void {
  new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).setUint32(offset, value >>> 0, true);
}

function padTo(bytes: Uint8Array, size: number): Uint8Array {
  const out = new Uint8Array(size).fill(0xff);
  out.set(bytes, 0);
  return out;
}

export interface BootloaderImageOptions {
  /** The receiver's RSA modulus, big-endian, as config.h's MODULUS holds it. */
  modulus: Uint8Array;
  gpioMask?: number;
  gpioWaitMs?: number;
  /** MAIN_APP_OFFSET compiled into boot8266 (as the literals X and X + 0x8ffc). */
  mainAppOffset?: number;
  /** Length of the ota-server's iram segment; the default makes its image end inside 0x8000-0x9000, as upstream's does. */
  serverIramLength?: number;
  /** Length of the ota-server's irom0 text. */
  irom0Length?: number;
  flashMode?: number;
  sizeFreq?: number;
  seed?: number;
}

/**
 * A yaota8266.bin laid out as upstream's merge.py writes it:
 * - boot8266: one iram segment at 0x40100000 of 0xfe4 bytes, so that the
 *   image is exactly one sector (boot8266.ld); u32 gpio_mask and u32
 *   gpio_wait_ms at iram 0xef0 = file 0xf00 (the .param section); literal
 *   pools holding MAIN_APP_OFFSET, MAIN_APP_OFFSET + 0x8ffc and 800000;
 * - the ota-server image at 0x1000 (iram, dram holding the modulus as
 *   `static uint8_t MOD[] = MODULUS;` puts it, rodata), padded to 4 KiB;
 * - its irom0 text at 0x9000, padded to 4 KiB.
 */
export function buildBootloaderImage(options: BootloaderImageOptions): Uint8Array {
  const seed = options.seed ?? 7;
  const appOffset = options.mainAppOffset ?? 0x3c000;
  const code = seededBytes(0xfe4, seed);
  // Everything after the code up to the parameters is the linker's 0xff fill.
  code.fill(0xff, 0x900, 0xef0);
  code.fill(0xff, 0xef8);
  putU32(code, 0x100, appOffset);
  putU32(code, 0x104, appOffset + 0x8ffc);
  putU32(code, 0x108, 800000);
  putU32(code, 0xef0, options.gpioMask ?? 0xf035);
  putU32(code, 0xef4, options.gpioWaitMs ?? 3000);
  const boot = buildEspImage({
    segments: [{ address: 0x40100000, data: code }],
    entry: 0x40100004,
    flashMode: options.flashMode ?? 0,
    sizeFreq: options.sizeFreq ?? 0x20,
  });
  if (boot.length !== 0x1000) throw new Error(`boot8266 image is ${boot.length} bytes, not one sector`);

  const dram = seededBytes(0x600, seed + 1);
  dram.set(options.modulus, 0x40);
  dram[0x40 + options.modulus.length] = 0;
  const server = buildEspImage({
    segments: [
      { address: 0x40100000, data: seededBytes(options.serverIramLength ?? 0x6800, seed + 2) },
      { address: 0x3ffe8000, data: dram },
      { address: 0x3ffe8600, data: seededBytes(0x400, seed + 3) },
    ],
    entry: 0x40100010,
  });
  const serverPadded = padTo(server, Math.ceil(server.length / 0x1000) * 0x1000);
  const irom = seededBytes(options.irom0Length ?? 0x10000, seed + 4);
  const iromPadded = padTo(irom, Math.ceil(irom.length / 0x1000) * 0x1000);
  return new Uint8Array(Buffer.concat([boot, serverPadded, iromPadded]));
}
