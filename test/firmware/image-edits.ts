import { createHash } from "node:crypto";

/** A copy of `image` with `data` written at `offset`. */
export function patched(image: Uint8Array, offset: number, data: Uint8Array | string): Uint8Array {
  const out = new Uint8Array(image);
  out.set(typeof data === "string" ? Buffer.from(data, "latin1") : data, offset);
  return out;
}

/** Recomputes the MD5 trailer after an edit, as makeimg.py would have written it. */
export function withFreshTrailer(image: Uint8Array): Uint8Array {
  const out = new Uint8Array(image);
  const total = new DataView(out.buffer).getUint32(0x8ffc, true);
  out.set(createHash("md5").update(out.subarray(4, total)).digest(), total);
  return out;
}

/** The MicroPython banner strings, NUL-terminated, as the firmware stores them. */
export function bannerBytes(
  version = "v1.27.0",
  date = "2025-12-10",
  machine = "ESP module (1M) with ESP8266",
): string {
  return `MicroPython ${version} on ${date}\0; ${machine}\0`;
}
