import { createHash } from "node:crypto";
import { buildMicroPythonImage } from "./images.ts";

export interface LinkedImageOptions {
  /** File size (as buildMicroPythonImage). */
  size: number;
  /** Where the references start: 0x40245000 is an OTA build for MAIN_APP_OFFSET 0x3c000. */
  irom0Base: number;
  /** How many aligned words point into irom0. */
  references: number;
  /** The span of irom0 addresses they cover from irom0Base (default: the image's irom0 length). */
  span?: number;
  seed?: number;
}

/**
 * A MicroPython image whose only irom0 references are the `references`
 * words written here, spread evenly over [irom0Base, irom0Base + span): what
 * the build-kind heuristic sees of a build linked at irom0Base with that many
 * literal-pool entries. The MD5 trailer is recomputed.
 */
export function linkedImage(options: LinkedImageOptions): Uint8Array {
  const image = new Uint8Array(buildMicroPythonImage({ size: options.size, seed: options.seed ?? 5 }));
  const view = new DataView(image.buffer);
  const total = view.getUint32(0x8ffc, true);
  // Scrub what buildMicroPythonImage (and chance) put there: only ours count.
  for (let i = 0; i + 4 <= total; i += 4) {
    const w = view.getUint32(i, true);
    if (w >= 0x40209000 && w < 0x40300000) view.setUint32(i, 0, true);
  }
  const irom0Length = total - 0x9000;
  const span = options.span ?? irom0Length;
  const room = irom0Length - 0x100;
  for (let i = 0; i < options.references; i++) {
    const at = 0x9000 + 0x80 + Math.floor((i * room) / options.references / 4) * 4;
    const target = options.irom0Base + Math.floor((i * span) / options.references / 4) * 4;
    view.setUint32(at, target, true);
  }
  image.set(createHash("md5").update(image.subarray(4, total)).digest(), total);
  return image;
}
