import { ESP_IMAGE_V1_MAGIC, ESP_IMAGE_V2_MAGIC } from "./esp-image.ts";
import { hexBytes } from "./format.ts";

/** What a file that is no firmware image mpota knows looks like. Plain data (the `--json` shape). */
export interface UnknownFileDescription {
  /** The first (up to) 16 bytes, hex. */
  firstBytes: string;
  /** A short name for what it looks like: "empty", "text", "ELF", "ZIP", ... or "binary". */
  looksLike: string;
  /** A sentence on what it probably is and what to use instead. */
  hint: string;
}

function startsWith(bytes: Uint8Array, prefix: number[] | string): boolean {
  const p = typeof prefix === "string" ? Array.from(Buffer.from(prefix, "latin1")) : prefix;
  return bytes.length >= p.length && p.every((b, i) => bytes[i] === b);
}

function textShare(bytes: Uint8Array): number {
  const sample = bytes.subarray(0, 4096);
  if (sample.length === 0) return 0;
  let text = 0;
  for (const b of sample) if ((b >= 0x20 && b < 0x7f) || b === 0x09 || b === 0x0a || b === 0x0d) text++;
  return text / sample.length;
}

/** Describes a file that is not an ESP8266 image, a yaota8266.bin or a canned .ota file. */
export function describeUnknownFile(bytes: Uint8Array): UnknownFileDescription {
  const firstBytes = hexBytes(bytes.subarray(0, 16));
  const d = (looksLike: string, hint: string): UnknownFileDescription => ({ firstBytes, looksLike, hint });
  if (bytes.length === 0) return d("empty", "The file is empty: the build or download did not finish.");
  if (bytes.every((b) => b === 0xff)) {
    return d(
      "erased flash",
      "Every byte is 0xFF: this is erased flash (an empty `esptool.py read_flash` dump), not a firmware.",
    );
  }
  if (bytes.every((b) => b === 0)) return d("zeros", "Every byte is 0: the file holds no firmware.");
  if (startsWith(bytes, [0x7f, 0x45, 0x4c, 0x46])) {
    return d(
      "ELF",
      "This is an ELF file (the linker's output). Flash and push the .bin made from it: firmware-ota.bin from MicroPython's OTA build, yaota8266.bin from yaota8266.",
    );
  }
  if (startsWith(bytes, "PK\x03\x04"))
    return d("ZIP", "This is a ZIP archive: unpack it and inspect the .bin inside.");
  if (startsWith(bytes, [0x1f, 0x8b]))
    return d("gzip", "This is gzip-compressed: decompress it (gunzip) first.");
  if (startsWith(bytes, "-----BEGIN")) {
    return d("PEM", "This is a PEM key or certificate, not a firmware. Pass keys with --key.");
  }
  if (startsWith(bytes, ":") && textShare(bytes) > 0.95) {
    return d("Intel HEX", "This looks like an Intel HEX file; ESP8266 tools want a raw .bin image.");
  }
  if (startsWith(bytes, "yaota8266")) {
    return d(
      "canned .ota (unknown version)",
      `This starts like a canned .ota file but its format version byte is ${bytes[9] ?? "missing"}, not 1. It was written by another tool or is damaged.`,
    );
  }
  if (bytes[0] === ESP_IMAGE_V2_MAGIC) {
    return d(
      "esptool v2 image",
      "This is an esptool v2 image (0xEA, the Espressif SDK's own OTA format for boot_v1.x/rBoot). yaota8266 and MicroPython use v1 images (0xE9).",
    );
  }
  if (bytes[0] === ESP_IMAGE_V1_MAGIC) {
    return d(
      "damaged ESP image",
      "This starts with the esptool image magic 0xE9 but its header or segments cannot be read: it is damaged, truncated, or for another chip (an ESP32 image has a different header).",
    );
  }
  if (textShare(bytes) > 0.95) return d("text", "This is a text file, not a firmware image.");
  return d("binary", "Unrecognised binary data.");
}
