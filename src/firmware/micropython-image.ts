import { createHash } from "node:crypto";
import { DEFAULT_MAIN_APP_OFFSET } from "../protocol/config-h.ts";
import { MAX_IMAGE_SIZE } from "../protocol/datagram.ts";
import { type BuildKindAnalysis, classifyBuild } from "./build-kind.ts";
import { ESP_IMAGE_V1_MAGIC, type EspImageV1, parseEspImage, tryParseEspImage } from "./esp-image.ts";
import { PACKED_RAM_SIZE } from "./flash-layout.ts";
import { hex, hexBytes, readU32 } from "./format.ts";
import { findMicroPythonVersion, type MicroPythonVersion } from "./micropython-version.ts";

/** makeimg.py writes the total size (0x9000 + irom0 length) here, in the last word before irom0. */
export const SIZE_WORD_OFFSET = PACKED_RAM_SIZE - 4;
export const MD5_TRAILER_LENGTH = 16;
/** boot8266 leaves the first 4 bytes (magic, count, flash mode, size|freq) out of the MD5: esptool may patch them. */
export const MD5_SKIP = 4;

export type TrailerStatus = "ok" | "mismatch" | "truncated" | "too-large" | "invalid-size";

/** The outcome of boot8266's check_main_app() run on a file. */
export interface TrailerCheck {
  status: TrailerStatus;
  /** The size word at 0x8ffc (null when the file is too short to hold it). */
  totalSize: number | null;
  /** The 16 bytes at totalSize, as hex (null when the file ends before them). */
  stored: string | null;
  /** MD5 of bytes [4, totalSize), as hex (null when it cannot be computed). */
  computed: string | null;
  /** What boot8266 would do with this image, in a sentence. */
  message: string;
}

/**
 * Runs boot8266's check on an image file: read the u32 size word at 0x8ffc,
 * refuse it above 800000, and compare the MD5 of bytes [4, size) with the 16
 * bytes at `size`. A failure means boot8266 starts the OTA receiver instead
 * of the app, on every boot.
 */
export function checkMd5Trailer(image: Uint8Array): TrailerCheck {
  const total = readU32(image, SIZE_WORD_OFFSET);
  if (total === undefined) {
    return {
      status: "truncated",
      totalSize: null,
      stored: null,
      computed: null,
      message: `The file is ${image.length} bytes long, too short to hold the size word at ${hex(SIZE_WORD_OFFSET)}; boot8266 would read whatever flash holds there and stay in OTA mode.`,
    };
  }
  if (total > MAX_IMAGE_SIZE) {
    return {
      status: "too-large",
      totalSize: total,
      stored: null,
      computed: null,
      message: `The size word at ${hex(SIZE_WORD_OFFSET)} says ${total} bytes, more than the ${MAX_IMAGE_SIZE} boot8266 accepts ("Invalid main app size"): the device would start the OTA receiver on every boot.`,
    };
  }
  if (total < PACKED_RAM_SIZE) {
    return {
      status: "invalid-size",
      totalSize: total,
      stored: null,
      computed: null,
      message: `The size word at ${hex(SIZE_WORD_OFFSET)} says ${total} bytes, less than the ${hex(PACKED_RAM_SIZE)} bytes before irom0: this is not what MicroPython's makeimg.py writes.`,
    };
  }
  const computed = hexBytes(
    createHash("md5")
      .update(image.subarray(MD5_SKIP, Math.min(total, image.length)))
      .digest(),
  );
  if (image.length < total + MD5_TRAILER_LENGTH) {
    return {
      status: "truncated",
      totalSize: total,
      stored: null,
      computed: image.length >= total ? computed : null,
      message: `The size word says the image is ${total} bytes plus a 16-byte MD5, but the file has only ${image.length} bytes: it is truncated.`,
    };
  }
  const stored = hexBytes(image.subarray(total, total + MD5_TRAILER_LENGTH));
  if (stored !== computed) {
    return {
      status: "mismatch",
      totalSize: total,
      stored,
      computed,
      message: `The MD5 trailer at ${hex(total)} (${stored}) does not match the MD5 of bytes ${hex(MD5_SKIP)}-${hex(total)} (${computed}): boot8266 would reject the app and start the OTA receiver on every boot.`,
    };
  }
  return {
    status: "ok",
    totalSize: total,
    stored,
    computed,
    message: `The MD5 trailer at ${hex(total)} matches the MD5 of bytes ${hex(MD5_SKIP)}-${hex(total)}, as boot8266 checks it.`,
  };
}

/** Everything mpota reads from a MicroPython image. Plain data (the `--json` shape). */
export interface MicroPythonImageAnalysis {
  fileLength: number;
  /** The size word: 0x9000 + irom0 text length. */
  totalSize: number | null;
  irom0Length: number | null;
  trailer: TrailerCheck;
  /** The MD5 trailer as 32 hex digits: the firmware identity the device agent reports (null when absent). */
  identity: string | null;
  /** Bytes after the MD5 trailer (they are written to flash too, but nothing reads them). */
  trailingBytes: number;
  build: BuildKindAnalysis;
  version: MicroPythonVersion | null;
}

/**
 * True when `bytes` has the layout of MicroPython's makeimg.py: an esptool
 * v1 image that ends before 0x8ffc, and a size word there (not erased flash).
 */
export function isMicroPythonImage(bytes: Uint8Array): boolean {
  if (bytes[0] !== ESP_IMAGE_V1_MAGIC || bytes.length < PACKED_RAM_SIZE) return false;
  const header = tryParseEspImage(bytes);
  if (!header || header.end > SIZE_WORD_OFFSET) return false;
  const total = readU32(bytes, SIZE_WORD_OFFSET) as number;
  return total !== 0xffffffff && total !== 0;
}

export function analyzeMicroPythonImage(
  bytes: Uint8Array,
  options: { appOffset?: number; source?: string } = {},
): { espImage: EspImageV1; micropython: MicroPythonImageAnalysis } {
  const espImage = parseEspImage(bytes, 0, options.source);
  const trailer = checkMd5Trailer(bytes);
  const total = trailer.totalSize;
  const plausible = total !== null && trailer.status !== "invalid-size";
  const irom0Length = plausible ? (total as number) - PACKED_RAM_SIZE : null;
  const build = classifyBuild(bytes, {
    appOffset: options.appOffset ?? DEFAULT_MAIN_APP_OFFSET,
    irom0Length: irom0Length ?? Math.max(0, bytes.length - PACKED_RAM_SIZE),
  });
  const trailerEnd = plausible ? (total as number) + MD5_TRAILER_LENGTH : bytes.length;
  return {
    espImage,
    micropython: {
      fileLength: bytes.length,
      totalSize: total,
      irom0Length,
      trailer,
      identity: trailer.stored,
      trailingBytes: Math.max(0, bytes.length - trailerEnd),
      build,
      version: findMicroPythonVersion(bytes),
    },
  };
}
