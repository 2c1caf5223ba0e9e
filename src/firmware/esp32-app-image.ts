import { createHash } from "node:crypto";
import { MpotaError } from "../errors.ts";
import { EXIT_CODES } from "../exit-codes.ts";
import { ESP_IMAGE_V1_MAGIC, FLASH_MODES, MAX_SEGMENTS, walkEspSegments } from "./esp-image.ts";
import { type Esp32Chip, esp32ChipById } from "./esp32-chips.ts";
import { findMergedFirmware, mergedFirmwareMessage } from "./esp32-merged-firmware.ts";
import { hex, hexBytes, readU32 } from "./format.ts";

/** An ESP32 app image cannot be read: truncated, not in ESP-IDF's app image format, or a merged firmware.bin. */
export class Esp32ImageError extends MpotaError {
  override readonly exitCode: number = EXIT_CODES.esp32Image.code;
}

/** esp_image_header_t: the 8 bytes the ESP8266 also has, then the extended header (16 bytes). */
export const ESP32_IMAGE_HEADER_LENGTH = 24;
/** esp_app_desc_t's magic_word, at image offset 0x20 (the first segment's data). */
export const APP_DESC_MAGIC = 0xabcd5432;
export const APP_DESC_OFFSET = 0x20;
/** sizeof(esp_app_desc_t). */
const APP_DESC_LENGTH = 256;
const SHA256_LENGTH = 32;
/** No segment is larger than the largest flash an ESP32-family chip maps (a guard before reading it). */
const MAX_SEGMENT_LENGTH = 16 * 1024 * 1024;

/** Byte 3's high nibble on the ESP32 family (esp_image_flash_size_t). */
const FLASH_SIZES = ["1MB", "2MB", "4MB", "8MB", "16MB", "32MB", "64MB", "128MB"];
/** Byte 3's low nibble on the ESP32, S2, S3 and C3 (other chips clock their flash differently). */
const FLASH_FREQUENCIES: Record<number, string> = { 0: "40m", 1: "26m", 2: "20m", 15: "80m" };
const FREQUENCY_CHIPS = new Set([0x0, 0x2, 0x5, 0x9]);

export interface Esp32Segment {
  index: number;
  loadAddress: number;
  length: number;
  /** File offset of the segment's data (after its 8-byte header). */
  fileOffset: number;
}

/** esp_app_desc_t, the strings as the build wrote them (non-printable bytes as \xNN). */
export interface Esp32AppDescription {
  secureVersion: number;
  /** Empty in MicroPython's builds. */
  version: string;
  /** Empty in MicroPython's builds. */
  projectName: string;
  time: string;
  date: string;
  idfVersion: string;
  /** SHA-256 of the ELF the image was made from, hex: the firmware's identity, readable from the running slot. */
  elfSha256: string;
}

/** An ESP32-family app image, decoded. Plain data (also the `--json` shape). */
export interface Esp32AppImage {
  format: "esp32-app";
  chip: Esp32Chip & { known: boolean };
  /** "v0.0": the lowest chip revision the image runs on (min_chip_rev_full). */
  minChipRevision: string;
  maxChipRevision: string;
  segmentCount: number;
  flashMode: string;
  flashSize: string;
  flashFrequency: string;
  entry: number;
  segments: Esp32Segment[];
  checksum: { stored: number; computed: number; ok: boolean };
  /** The SHA-256 esptool appends after the checksum (hash_appended); ESP-IDF checks it before booting. */
  hash: { appended: boolean; stored: string | null; computed: string; ok: boolean | null };
  /** Null when the first segment does not start with esp_app_desc_t's magic. */
  appDescription: Esp32AppDescription | null;
  /** Bytes of the image: header, segments, checksum block and appended hash. */
  imageLength: number;
  /** Bytes in the file after the image (nothing loads them). */
  trailingBytes: number;
}

/** Whether `bytes` start like an ESP-IDF app image: 0xE9 and the app description's magic at 0x20. */
export function isEsp32AppImage(bytes: Uint8Array): boolean {
  return bytes[0] === ESP_IMAGE_V1_MAGIC && readU32(bytes, APP_DESC_OFFSET) === APP_DESC_MAGIC;
}

function revision(full: number): string {
  return `v${Math.floor(full / 100)}.${full % 100}`;
}

/** A NUL-terminated string field, non-printable bytes escaped so a message never carries control characters. */
function cString(bytes: Uint8Array, offset: number, length: number): string {
  let out = "";
  for (let i = offset; i < offset + length; i++) {
    const b = bytes[i] as number;
    if (b === 0) break;
    out += b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, "0")}`;
  }
  return out;
}

function appDescription(bytes: Uint8Array, first: Esp32Segment | undefined): Esp32AppDescription | null {
  // The description must lie wholly in the first segment, where ESP-IDF's linker script puts it.
  if (!first || first.fileOffset !== APP_DESC_OFFSET || first.length < APP_DESC_LENGTH) return null;
  if (readU32(bytes, APP_DESC_OFFSET) !== APP_DESC_MAGIC) return null;
  const at = APP_DESC_OFFSET;
  return {
    secureVersion: readU32(bytes, at + 4) as number,
    version: cString(bytes, at + 16, 32),
    projectName: cString(bytes, at + 48, 32),
    time: cString(bytes, at + 80, 16),
    date: cString(bytes, at + 96, 16),
    idfVersion: cString(bytes, at + 112, 32),
    elfSha256: hexBytes(bytes.subarray(at + 144, at + 144 + SHA256_LENGTH)),
  };
}

/**
 * Decodes an ESP-IDF app image (what an OTA slot holds: MicroPython's
 * `micropython.bin`): the 24-byte header with the chip id, the segments, the
 * checksum byte, the appended SHA-256 and the app description. A checksum
 * or hash that does not match is reported, not thrown (the checks judge it);
 * a file that cannot be walked, or a merged `firmware.bin`, throws
 * {@link Esp32ImageError}.
 */
export function parseEsp32AppImage(
  bytes: Uint8Array,
  source = "the file",
  options: { refuseMerged?: boolean } = {},
): Esp32AppImage {
  // ESP-IDF itself reads whatever image starts the partition (a merged file's bootloader): the board model asks for that.
  const merged = options.refuseMerged === false ? null : findMergedFirmware(bytes);
  if (merged) throw new Esp32ImageError(mergedFirmwareMessage(merged, source));
  if (bytes.length < ESP32_IMAGE_HEADER_LENGTH) {
    throw new Esp32ImageError(
      `${source} is truncated: an ESP32 app image needs a 24-byte header, but the file ends at byte ${bytes.length}. Copy or build the file again.`,
    );
  }
  if (bytes[0] !== ESP_IMAGE_V1_MAGIC) {
    throw new Esp32ImageError(
      `${source} does not start with the esptool image magic 0xE9 (found ${hex(bytes[0] as number, 2)}), so it is not an ESP32 app image. Use micropython.bin from the build (published on micropython.org as the .app-bin file).`,
    );
  }
  const segmentCount = bytes[1] as number;
  if (segmentCount === 0 || segmentCount > MAX_SEGMENTS) {
    throw new Esp32ImageError(
      `${source} claims ${segmentCount} segments; an ESP32 app image has 1 to ${MAX_SEGMENTS}. It is damaged or not an ESP32 app image.`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const chip = esp32ChipById(view.getUint16(12, true));
  const walk = walkEspSegments(bytes, {
    imageStart: 0,
    firstSegmentAt: ESP32_IMAGE_HEADER_LENGTH,
    segmentCount,
    maxSegmentLength: MAX_SEGMENT_LENGTH,
    where: source,
    chip: "ESP32",
    fail: (message) => new Esp32ImageError(message),
  });
  if (walk.stored === null) {
    throw new Esp32ImageError(
      `${source} is truncated: its checksum byte belongs at byte ${walk.checksumOffset}, but the file ends at byte ${bytes.length}. Copy or build the file again.`,
    );
  }
  const checksumEnd = walk.checksumOffset + 1;
  const appended = bytes[23] !== 0;
  if (appended && checksumEnd + SHA256_LENGTH > bytes.length) {
    throw new Esp32ImageError(
      `${source} is truncated: its header says a SHA-256 follows the checksum (bytes ${checksumEnd} to ${checksumEnd + SHA256_LENGTH}), but the file ends at byte ${bytes.length}. Copy or build the file again.`,
    );
  }
  const computed = createHash("sha256").update(bytes.subarray(0, checksumEnd)).digest("hex");
  const stored = appended ? hexBytes(bytes.subarray(checksumEnd, checksumEnd + SHA256_LENGTH)) : null;
  const imageLength = checksumEnd + (appended ? SHA256_LENGTH : 0);
  const modeCode = bytes[2] as number;
  const sizeFreq = bytes[3] as number;
  const frequency = FREQUENCY_CHIPS.has(chip.id) ? FLASH_FREQUENCIES[sizeFreq & 0xf] : undefined;
  return {
    format: "esp32-app",
    chip,
    minChipRevision: revision(view.getUint16(15, true)),
    maxChipRevision: revision(view.getUint16(17, true)),
    segmentCount,
    flashMode: FLASH_MODES[modeCode] ?? `unknown (${hex(modeCode)})`,
    flashSize: FLASH_SIZES[sizeFreq >> 4] ?? `unknown (${hex(sizeFreq >> 4)})`,
    flashFrequency: frequency ?? `code ${hex(sizeFreq & 0xf)}`,
    entry: view.getUint32(4, true),
    segments: walk.segments,
    checksum: { stored: walk.stored, computed: walk.computed, ok: walk.stored === walk.computed },
    hash: { appended, stored, computed, ok: stored === null ? null : stored === computed },
    appDescription: appDescription(bytes, walk.segments[0]),
    imageLength,
    trailingBytes: bytes.length - imageLength,
  };
}
