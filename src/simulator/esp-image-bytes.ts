// The bytes every ESP image builder here writes (the ESP8266's esptool v1
// images, yaota8266's stand-in, the ESP32's app image): one encoder, so the
// format is written in one place.
import { seededRandom } from "../net/random.ts";

/** One segment: where it loads and its bytes. */
export interface EspSegment {
  address: number;
  data: Uint8Array;
}

/** `n` reproducible pseudo-random bytes for `seed`. */
export function seededBytes(n: number, seed: number): Uint8Array {
  const random = seededRandom(seed);
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.floor(random() * 256);
  return out;
}

/**
 * `header` (8 bytes on the ESP8266, 24 on the ESP32), then each segment as
 * u32 address, u32 length and its data, zero padding to the last byte of a
 * 16-byte block, and in that byte the XOR of all segment data seeded 0xEF.
 */
export function espSegmentsImage(header: Uint8Array, segments: readonly EspSegment[]): Uint8Array {
  const body = header.length + segments.reduce((n, s) => n + 8 + s.data.length, 0);
  const out = new Uint8Array(Math.floor(body / 16) * 16 + 16);
  const view = new DataView(out.buffer);
  out.set(header, 0);
  let at = header.length;
  let checksum = 0xef;
  for (const s of segments) {
    view.setUint32(at, s.address, true);
    view.setUint32(at + 4, s.data.length, true);
    out.set(s.data, at + 8);
    at += 8 + s.data.length;
    for (const b of s.data) checksum ^= b;
  }
  out[out.length - 1] = checksum;
  return out;
}
