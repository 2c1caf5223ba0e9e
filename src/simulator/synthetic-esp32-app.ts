/**
 * Synthetic ESP-IDF app images (what an ESP32 OTA slot holds) and merged
 * firmware.bin files, for the simulator's ESP32s and for tests: real
 * headers, segments, checksum, appended SHA-256 and app description, with
 * pseudo-random contents. They run nothing.
 */
import { createHash } from "node:crypto";
import { espSegmentsImage, seededBytes } from "./esp-image-bytes.ts";

/** Pseudo-random bytes from a seed (the same stream test/support's images use). */
/** A MicroPython ESP32_GENERIC OTA build's micropython.bin is about this large (v1.18: 1,466,432 B). */
export const DEFAULT_ESP32_APP_SIZE = 1_466_432;

export interface Esp32SegmentSpec {
  address: number;
  data: Uint8Array;
}

export interface Esp32ImageOptions {
  /** ESP-IDF chip id in the extended header (0 ESP32, 2 S2, 5 C3, 9 S3). */
  chipId?: number;
  /** The file's length, about (the code segment grows to it); default 64 KiB. */
  size?: number;
  seed?: number;
  /** hash_appended: a SHA-256 of the image follows the checksum (esptool's default). */
  hashAppended?: boolean;
  /** App description fields; MicroPython leaves version and project name empty. */
  version?: string;
  projectName?: string;
  idfVersion?: string;
  date?: string;
  time?: string;
  /** 64 hex digits; default derived from the seed. */
  elfSha256?: string;
  /** A MicroPython banner placed in the code segment ("v1.27.0 on 2025-12-09"), as real builds hold it. */
  banner?: string;
  /** Leave out the app description (as a bootloader image has none). */
  noAppDesc?: boolean;
  /** Segments after the first (default: dram, iram and a flash-mapped code segment sized to `size`). */
  segments?: Esp32SegmentSpec[];
}

function putString(out: Uint8Array, offset: number, length: number, text: string): void {
  out.set(Buffer.from(text, "latin1").subarray(0, length - 1), offset);
}

/** esp_app_desc_t (256 bytes), as ESP-IDF's build fills it and esptool patches the ELF SHA-256 in. */
export function buildAppDesc(options: Esp32ImageOptions = {}): Uint8Array {
  const desc = new Uint8Array(256);
  const view = new DataView(desc.buffer);
  view.setUint32(0, 0xabcd5432, true);
  putString(desc, 16, 32, options.version ?? "");
  putString(desc, 48, 32, options.projectName ?? "");
  putString(desc, 80, 16, options.time ?? "12:00:00");
  putString(desc, 96, 16, options.date ?? "Dec  6 2026");
  putString(desc, 112, 32, options.idfVersion ?? "v5.5.1");
  const elf =
    options.elfSha256 ??
    createHash("sha256")
      .update(`elf ${options.seed ?? 1}`)
      .digest("hex");
  desc.set(Buffer.from(elf, "hex"), 144);
  return desc;
}

/** The ELF SHA-256 an image built with these options carries. */
export function esp32Identity(options: Esp32ImageOptions = {}): string {
  return (
    options.elfSha256 ??
    createHash("sha256")
      .update(`elf ${options.seed ?? 1}`)
      .digest("hex")
  );
}

/**
 * An ESP-IDF app image as `esptool elf2image` writes it for an ESP32-family
 * chip: the 24-byte header (magic 0xE9, segment count, flash mode and
 * size/frequency, entry, the extended header with chip id, revisions and
 * hash_appended), segments whose first one starts with esp_app_desc_t, zero
 * padding to the last byte of a 16-byte block, the XOR checksum (seed 0xEF)
 * and, by default, the SHA-256 of everything before it. Contents are
 * pseudo-random.
 */
export function buildEsp32AppImage(options: Esp32ImageOptions = {}): Uint8Array {
  const seed = options.seed ?? 1;
  const size = options.size ?? 64 * 1024;
  const drom = new Uint8Array(0x1000);
  drom.set(seededBytes(0x1000, seed), 0);
  if (options.noAppDesc) drom.fill(0, 0, 4);
  else drom.set(buildAppDesc(options), 0);
  const fixed: Esp32SegmentSpec[] = [
    { address: 0x3ffb0000, data: seededBytes(0x800, seed + 1) },
    { address: 0x40080000, data: seededBytes(0x2000, seed + 2) },
  ];
  const overhead = 24 + 8 + drom.length + fixed.reduce((n, s) => n + 8 + s.data.length, 0) + 8 + 16 + 32;
  const codeLength = Math.max(4, Math.floor((size - overhead) / 4) * 4);
  const code = seededBytes(codeLength, seed + 3);
  if (options.banner !== undefined) code.set(Buffer.from(`\0${options.banner}\0`, "latin1"), 0x100);
  const segments = options.segments ?? [...fixed, { address: 0x400d0020, data: code }];
  const all = [{ address: 0x3f400020, data: drom }, ...segments];
  const header = new Uint8Array(24);
  const hv = new DataView(header.buffer);
  header[0] = 0xe9;
  header[1] = all.length;
  header[2] = 2; // dio
  header[3] = 0x20; // 4MB, 40m
  hv.setUint32(4, 0x40081000, true);
  header[8] = 0xee; // WP pin disabled
  hv.setUint16(12, options.chipId ?? 0, true);
  hv.setUint16(15, 0, true); // min_chip_rev_full v0.0
  hv.setUint16(17, 399, true); // max_chip_rev_full v3.99
  header[23] = options.hashAppended === false ? 0 : 1;
  const image = espSegmentsImage(header, all);
  if (options.hashAppended === false) return image;
  return new Uint8Array(Buffer.concat([image, createHash("sha256").update(image).digest()]));
}

/**
 * MicroPython's merged `firmware.bin`: the bootloader at 0x1000 (0x0 for
 * the S3 and C3 and later), a partition table at 0x8000 and the app at
 * 0x10000, gaps filled with 0xFF as `esptool merge_bin` leaves them.
 */
export function buildMergedFirmware(app: Uint8Array, bootloaderOffset = 0x1000): Uint8Array {
  const out = new Uint8Array(0x10000 + app.length).fill(0xff);
  const bootloader = buildEsp32AppImage({ size: 0x3000, seed: 99, noAppDesc: true, chipId: app[12] });
  out.set(bootloader, bootloaderOffset);
  // Two partition table entries (magic 0x50AA, type, subtype, offset, size, label, flags).
  const table = new Uint8Array(64).fill(0);
  const tv = new DataView(table.buffer);
  for (const [i, [type, subtype, offset, size, label]] of (
    [
      [1, 0, 0x9000, 0x6000, "nvs"],
      [0, 0x10, 0x10000, 0x180000, "ota_0"],
    ] as const
  ).entries()) {
    tv.setUint16(i * 32, 0x50aa, true);
    table[i * 32 + 2] = type;
    table[i * 32 + 3] = subtype;
    tv.setUint32(i * 32 + 4, offset, true);
    tv.setUint32(i * 32 + 8, size, true);
    putString(table, i * 32 + 12, 16, label);
  }
  out.set(table, 0x8000);
  out.set(app, 0x10000);
  return out;
}
