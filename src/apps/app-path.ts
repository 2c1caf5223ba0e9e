/**
 * The rules for a file's path inside an app release. The device checks the
 * same rules again (device/mpota_app.py), so a path that passes here is one
 * every board can write: ASCII letters, digits, `.`, `_`, `-`, segments
 * joined by `/`, and nothing FAT (the ESP8266's usual filesystem) would
 * read as another name.
 */

/** Longest path in bytes (the slot folder the loader adds stays within MicroPython's path buffers). */
export const MAX_APP_PATH = 96;
/** Most folders deep a path may go (segments, the file name included). */
export const MAX_APP_DEPTH = 8;
/**
 * Names the app may not hold at its top: the loader that never changes
 * (`boot.py`, `mpota_loader`), and the per-device settings (credentials,
 * keys) that must never be the same file on every device. Compared without
 * case, as FAT does.
 */
export const RESERVED_APP_PATHS: readonly string[] = [
  "boot.py",
  "boot.mpy",
  "mpota_loader.py",
  "mpota_loader.mpy",
  "mpota_config.py",
  "mpota_config.mpy",
];

const SEGMENT = /^[A-Za-z0-9_-][A-Za-z0-9._-]*$/;
const ALLOWED = /^[A-Za-z0-9._/-]*$/;

/** Why `path` cannot be a file's path in an app, or undefined when it can. */
export function appPathProblem(path: string): string | undefined {
  if (path.length === 0) return "it is empty";
  if (path.includes("\\")) return "it holds a backslash; separate folders with /";
  if (path.startsWith("/")) return "it is absolute; paths are relative to the app's folder";
  if (/^[A-Za-z]:/.test(path)) return "it names a drive; paths are relative to the app's folder";
  if (Buffer.byteLength(path) > MAX_APP_PATH) {
    return `it is ${Buffer.byteLength(path)} bytes long; the most is ${MAX_APP_PATH}`;
  }
  const segments = path.split("/");
  if (segments.includes("..")) return "it climbs out of the app (..)";
  if (segments.includes("")) return "it has an empty folder name (// or a / at the end)";
  if (segments.includes(".")) return "it has a . folder name";
  if (!ALLOWED.test(path)) {
    return "it holds characters other than ASCII letters, digits, '.', '_', '-' and '/' (boards' filesystems differ on the rest)";
  }
  const hidden = segments.find((s) => !SEGMENT.test(s));
  if (hidden !== undefined) return `its part "${hidden}" starts with a dot (hidden files are not sent)`;
  if (segments.length > MAX_APP_DEPTH) {
    return `it is ${segments.length} levels deep; the most is ${MAX_APP_DEPTH}`;
  }
  if (RESERVED_APP_PATHS.includes(path.toLowerCase())) {
    return `${path} belongs to the device, not to an app (the loader and the per-device settings stay outside every release); rename it`;
  }
  return undefined;
}

/**
 * The manifest's order: paths compared by their lowercased segments, one
 * segment after the other. Strictly ascending order lets a device find,
 * holding only the previous path, a duplicate (equal without case, as FAT
 * sees names) and a file that is also a folder (it comes right before its
 * first child).
 */
export function compareAppPaths(a: string, b: string): number {
  const x = a.toLowerCase().split("/");
  const y = b.toLowerCase().split("/");
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const p = x[i] as string;
    const q = y[i] as string;
    if (p !== q) return p < q ? -1 : 1;
  }
  return x.length - y.length;
}

/** Why `b` cannot follow `a` in a manifest (they collide), or undefined. Both are valid paths, `a` <= `b`. */
export function appPathClash(a: string, b: string): string | undefined {
  const x = a.toLowerCase();
  const y = b.toLowerCase();
  if (x === y) {
    return a === b
      ? `${a} is listed twice`
      : `${a} and ${b} differ only in upper and lower case: FAT (the ESP8266's usual filesystem) sees one file`;
  }
  if (y.startsWith(`${x}/`)) return `${a} is a file, and ${b} needs a folder of that name`;
  return undefined;
}
