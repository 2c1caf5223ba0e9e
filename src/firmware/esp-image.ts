import { MpotaError } from "../errors.ts";
import { EXIT_CODES } from "../exit-codes.ts";
import { hex } from "./format.ts";

/** An ESP8266 app image could not be read: truncated, or not in the format its magic byte promises. */
export class EspImageError extends MpotaError {
  override readonly exitCode: number = EXIT_CODES.espImage.code;
}

/** First byte of an esptool v1 image (what the ESP8266 ROM and boot8266 load). */
export const ESP_IMAGE_V1_MAGIC = 0xe9;
/** First byte of an esptool v2 image (the SDK's / rBoot's "boot_v1.x" format); boot8266 cannot load it. */
export const ESP_IMAGE_V2_MAGIC = 0xea;
export const ESP_IMAGE_HEADER_LENGTH = 8;
export const ESP_SEGMENT_HEADER_LENGTH = 8;
/** The ROM loader starts its XOR checksum with this value. */
const CHECKSUM_SEED = 0xef;
/** The ROM loader (and ESP-IDF's bootloader) accept at most this many segments. */
export const MAX_SEGMENTS = 16;

export type FlashMode = "qio" | "qout" | "dio" | "dout";
/** Header byte 2, by value. */
export const FLASH_MODES: readonly FlashMode[] = ["qio", "qout", "dio", "dout"];

/** Header byte 3, high nibble: flash size as esptool names it (`-fs`), and its bytes. */
export const FLASH_SIZE_CODES: ReadonlyArray<{ code: number; name: string; bytes: number }> = [
  { code: 0x0, name: "512KB", bytes: 512 * 1024 },
  { code: 0x1, name: "256KB", bytes: 256 * 1024 },
  { code: 0x2, name: "1MB", bytes: 1024 * 1024 },
  { code: 0x3, name: "2MB", bytes: 2 * 1024 * 1024 },
  { code: 0x4, name: "4MB", bytes: 4 * 1024 * 1024 },
  { code: 0x5, name: "2MB-c1", bytes: 2 * 1024 * 1024 },
  { code: 0x6, name: "4MB-c1", bytes: 4 * 1024 * 1024 },
  { code: 0x8, name: "8MB", bytes: 8 * 1024 * 1024 },
  { code: 0x9, name: "16MB", bytes: 16 * 1024 * 1024 },
];

/** Header byte 3, low nibble: SPI flash clock as esptool names it (`-ff`). */
export const FLASH_FREQUENCY_CODES: ReadonlyArray<{ code: number; name: string }> = [
  { code: 0x0, name: "40m" },
  { code: 0x1, name: "26m" },
  { code: 0x2, name: "20m" },
  { code: 0xf, name: "80m" },
];

/** Where on the ESP8266 a load address points. */
export type MemoryRegion = "iram" | "dram" | "irom0" | "dport" | "unknown";

export function memoryRegion(address: number): MemoryRegion {
  if (address >= 0x40100000 && address < 0x40110000) return "iram";
  if (address >= 0x3ffe8000 && address < 0x40000000) return "dram";
  if (address >= 0x40200000 && address < 0x40300000) return "irom0";
  if (address >= 0x3ff00000 && address < 0x3ff00010) return "dport";
  return "unknown";
}

export interface EspSegment {
  /** Position in the image, from 0. */
  index: number;
  loadAddress: number;
  length: number;
  /** File offset of the segment's data (after its 8-byte header). */
  fileOffset: number;
  region: MemoryRegion;
}

/** An esptool v1 image, decoded. Every field is plain data (this is also the `--json` shape). */
export interface EspImageV1 {
  format: "esp8266-v1";
  /** File offset of the image's first byte (its 0xE9). */
  offset: number;
  segmentCount: number;
  flashMode: string;
  flashModeCode: number;
  flashSize: string;
  flashSizeCode: number;
  flashFrequency: string;
  flashFrequencyCode: number;
  entry: number;
  segments: EspSegment[];
  checksum: {
    /** The byte stored after the segments (null when the file ends first). */
    stored: number | null;
    /** XOR of every segment data byte, seeded with 0xEF, as the ROM loader computes it. */
    computed: number;
    ok: boolean;
  };
  /** File offset just past the checksum byte (the image's end, a multiple of 16 from its start). */
  end: number;
}

function flashSizeName(code: number): string {
  return FLASH_SIZE_CODES.find((s) => s.code === code)?.name ?? `unknown (${hex(code)})`;
}

function flashFrequencyName(code: number): string {
  return FLASH_FREQUENCY_CODES.find((f) => f.code === code)?.name ?? `unknown (${hex(code)})`;
}

/** A segment as the shared walk reads it: where it loads, how long, where its data is in the file. */
export interface RawEspSegment {
  index: number;
  loadAddress: number;
  length: number;
  fileOffset: number;
}

export interface SegmentWalkOptions {
  /** File offset of the image's first byte (the checksum block is counted from it). */
  imageStart: number;
  /** File offset of the first segment header (after the 8-byte header, or the ESP32's 24). */
  firstSegmentAt: number;
  segmentCount: number;
  /** A segment claiming more is refused before its bytes are read. */
  maxSegmentLength: number;
  /** How messages name the file ("the file", "fw.bin (image at 0x1000)"). */
  where: string;
  /** The chip named in messages ("ESP8266", "ESP32"). */
  chip: string;
  fail: (message: string) => Error;
}

export interface SegmentWalk {
  segments: RawEspSegment[];
  /** File offset of the checksum byte: the last byte of the 16-byte block the segments end in. */
  checksumOffset: number;
  /** The byte stored there (null when the file ends first). */
  stored: number | null;
  /** XOR of every segment data byte, seeded with 0xEF, as the ROM loader computes it. */
  computed: number;
}

/**
 * The segment walk every esptool image shares (ESP8266 v1 and the ESP32
 * family): segment headers (u32 load address, u32 length) and data, each
 * length bounded by `maxSegmentLength` and by the file, then the checksum
 * byte at the end of the 16-byte block the last segment ends in.
 */
export function walkEspSegments(bytes: Uint8Array, o: SegmentWalkOptions): SegmentWalk {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const { where, segmentCount } = o;
  const segments: RawEspSegment[] = [];
  let position = o.firstSegmentAt;
  let checksum = CHECKSUM_SEED;
  for (let index = 0; index < segmentCount; index++) {
    if (position + ESP_SEGMENT_HEADER_LENGTH > bytes.length) {
      throw o.fail(
        `${where} is truncated: the header of segment ${index + 1} of ${segmentCount} would start at byte ${position}, but the file ends at byte ${bytes.length}. Copy or build the file again.`,
      );
    }
    const loadAddress = view.getUint32(position, true);
    const length = view.getUint32(position + 4, true);
    const fileOffset = position + ESP_SEGMENT_HEADER_LENGTH;
    if (length > o.maxSegmentLength) {
      throw o.fail(
        `${where}: segment ${index + 1} of ${segmentCount} claims ${length} bytes at load address ${hex(loadAddress, 8)}, more than an ${o.chip} can hold. The file is damaged or not an ${o.chip} image.`,
      );
    }
    if (fileOffset + length > bytes.length) {
      throw o.fail(
        `${where} is truncated: segment ${index + 1} of ${segmentCount} (load address ${hex(loadAddress, 8)}, ${length} bytes) needs the file to reach byte ${fileOffset + length}, but it ends at byte ${bytes.length}. Copy or build the file again.`,
      );
    }
    for (let i = fileOffset; i < fileOffset + length; i++) checksum ^= bytes[i] as number;
    segments.push({ index, loadAddress, length, fileOffset });
    position = fileOffset + length;
  }
  // Zero padding up to the last byte of a 16-byte block (counted from the image start), then the checksum.
  const checksumOffset = o.imageStart + (Math.floor((position - o.imageStart) / 16) * 16 + 15);
  const stored = checksumOffset < bytes.length ? (bytes[checksumOffset] as number) : null;
  return { segments, checksumOffset, stored, computed: checksum };
}

/**
 * Decodes the esptool v1 image that starts at `offset`: the 8-byte header
 * (0xE9, segment count, flash mode, size|frequency, u32 entry), the segments
 * (u32 load address, u32 length, data) and the checksum byte that follows
 * them at the end of a 16-byte block. Throws {@link EspImageError} for a file
 * that is truncated or whose header cannot be an ESP8266 image.
 */
export function parseEspImage(bytes: Uint8Array, offset = 0, source = "the file"): EspImageV1 {
  const where = offset === 0 ? source : `${source} (image at ${hex(offset)})`;
  if (bytes.length < offset + ESP_IMAGE_HEADER_LENGTH) {
    throw new EspImageError(
      `${where} is truncated: an ESP8266 image needs an 8-byte header, but the file ends at byte ${bytes.length}. Copy or build the file again.`,
    );
  }
  if (bytes[offset] !== ESP_IMAGE_V1_MAGIC) {
    throw new EspImageError(
      `${where} does not start with the esptool image magic 0xE9 (found ${hex(bytes[offset] as number, 2)}), so it is not an ESP8266 app image.`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const segmentCount = bytes[offset + 1] as number;
  if (segmentCount === 0 || segmentCount > MAX_SEGMENTS) {
    throw new EspImageError(
      `${where} claims ${segmentCount} segments; an ESP8266 image has 1 to ${MAX_SEGMENTS}. It is damaged or not an ESP8266 image.`,
    );
  }
  const modeCode = bytes[offset + 2] as number;
  const sizeFreq = bytes[offset + 3] as number;
  const walk = walkEspSegments(bytes, {
    imageStart: offset,
    firstSegmentAt: offset + ESP_IMAGE_HEADER_LENGTH,
    segmentCount,
    maxSegmentLength: 0x100000,
    where,
    chip: "ESP8266",
    fail: (message) => new EspImageError(message),
  });
  const segments = walk.segments.map((s) => ({ ...s, region: memoryRegion(s.loadAddress) }));
  const { checksumOffset, stored, computed: checksum } = walk;
  return {
    format: "esp8266-v1",
    offset,
    segmentCount,
    flashMode: FLASH_MODES[modeCode] ?? `unknown (${hex(modeCode)})`,
    flashModeCode: modeCode,
    flashSize: flashSizeName(sizeFreq >> 4),
    flashSizeCode: sizeFreq >> 4,
    flashFrequency: flashFrequencyName(sizeFreq & 0xf),
    flashFrequencyCode: sizeFreq & 0xf,
    entry: view.getUint32(offset + 4, true),
    segments,
    checksum: { stored, computed: checksum, ok: stored === checksum },
    end: checksumOffset + 1,
  };
}

/** Parses without throwing: undefined when `bytes` holds no readable v1 image at `offset`. */
export function tryParseEspImage(bytes: Uint8Array, offset = 0): EspImageV1 | undefined {
  try {
    return parseEspImage(bytes, offset);
  } catch (error) {
    if (error instanceof EspImageError) return undefined;
    throw error;
  }
}

/** The file offset that holds CPU address `address`, when one of the image's segments loads it. */
export function fileOffsetOfAddress(image: EspImageV1, address: number): number | undefined {
  for (const s of image.segments) {
    if (address >= s.loadAddress && address < s.loadAddress + s.length)
      return s.fileOffset + (address - s.loadAddress);
  }
  return undefined;
}

/** Segments whose load address is nowhere in ESP8266 memory: a sign the file is for another chip or damaged. */
export function strangeSegments(image: EspImageV1): EspSegment[] {
  return image.segments.filter((s) => s.region === "unknown");
}

/**
 * Returns a copy of `bytes` whose image header at 0 says `mode` and
 * `sizeCode` (the frequency nibble is kept), as `esptool.py write_flash -fm
 * -fs` patches the image it writes at 0x0. Only the header changes; the ROM
 * checksum covers segment data, not the header.
 */
export function withFlashParams(bytes: Uint8Array, mode: FlashMode, sizeCode: number): Uint8Array {
  if (bytes[0] !== ESP_IMAGE_V1_MAGIC)
    throw new EspImageError("Only an esptool v1 image (0xE9) can carry flash parameters.");
  const out = new Uint8Array(bytes);
  out[2] = FLASH_MODES.indexOf(mode);
  out[3] = ((sizeCode & 0xf) << 4) | ((bytes[3] as number) & 0xf);
  return out;
}
