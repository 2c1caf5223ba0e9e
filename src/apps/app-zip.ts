import { createHash } from "node:crypto";
import { inflateRawSync } from "node:zlib";
import { AppReleaseError } from "./app-errors.ts";
import type { AppFolder, AppFolderFile } from "./app-folder.ts";
import { MAX_APP_BYTES, MAX_APP_FILE_BYTES, MAX_APP_FILES } from "./app-manifest.ts";
import { appPathProblem } from "./app-path.ts";
import { readMpyHeader } from "./mpy-header.ts";

/**
 * A zip of an app folder (the dashboard's upload), read into the same
 * files `mpota app add` reads from a folder, under the same rules. Only
 * what a zipped folder holds is taken: stored or deflated entries, no
 * encryption, no ZIP64, no spanning. Every bound is checked on the central
 * directory's numbers before a byte is inflated, and each entry is inflated
 * with a ceiling of the size it declares, so a zip bomb stops at that
 * ceiling: nothing bigger than an app release is ever held in memory.
 */

/** Largest zip: an app's 4 MiB stored without compression, plus room for its headers. */
export const MAX_APP_ZIP_BYTES = MAX_APP_BYTES + 512 * 1024;
/** Most entries: the files an app may hold, plus as many folders and left-out entries. */
export const MAX_APP_ZIP_ENTRIES = 2 * MAX_APP_FILES;

const EOCD = 0x06054b50;
const CENTRAL = 0x02014b50;
const LOCAL = 0x04034b50;
const EOCD_SIZE = 22;
const CENTRAL_SIZE = 46;
const LOCAL_SIZE = 30;
const S_IFMT = 0o170000;
const S_IFLNK = 0o120000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
/** Left out as in a folder (hidden entries and __pycache__), and what macOS's Archive Utility adds. */
const SKIPPED_TOP = new Set(["__MACOSX"]);

interface Entry {
  name: string;
  method: number;
  crc: number;
  packed: number;
  size: number;
  offset: number;
  directory: boolean;
}

const refuse = (why: string) => new AppReleaseError(`The zip is refused: ${why}. Nothing was stored.`);

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = (CRC_TABLE[(c ^ b) & 0xff] as number) ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function findEnd(zip: Buffer): number {
  const lowest = Math.max(0, zip.length - EOCD_SIZE - 0xffff);
  for (let at = zip.length - EOCD_SIZE; at >= lowest; at--) {
    if (zip.readUInt32LE(at) === EOCD && at + EOCD_SIZE + zip.readUInt16LE(at + 20) === zip.length) return at;
  }
  throw refuse("it is not a zip file (no end of central directory); zip the app's folder and upload that");
}

/** The central directory's entries, with every count and size bound checked before any data is read. */
function centralEntries(zip: Buffer): Entry[] {
  if (zip.length > MAX_APP_ZIP_BYTES) {
    throw refuse(`it is ${zip.length} bytes; an app's zip holds at most ${MAX_APP_ZIP_BYTES}`);
  }
  if (zip.length < EOCD_SIZE) throw refuse("it is too short to be a zip file");
  const end = findEnd(zip);
  const count = zip.readUInt16LE(end + 10);
  const dirSize = zip.readUInt32LE(end + 12);
  const dirOffset = zip.readUInt32LE(end + 16);
  if (zip.readUInt16LE(end + 4) !== 0 || zip.readUInt16LE(end + 8) !== count) {
    throw refuse("it spans several disks");
  }
  if (count === 0xffff || dirOffset === 0xffffffff)
    throw refuse("it is a ZIP64 archive, which an app never needs");
  if (count > MAX_APP_ZIP_ENTRIES) {
    throw refuse(
      `it has ${count} entries; an app's zip has at most ${MAX_APP_ZIP_ENTRIES} (files and folders)`,
    );
  }
  if (dirOffset + dirSize > end) throw refuse("its central directory lies outside the file");
  const entries: Entry[] = [];
  let files = 0;
  let total = 0;
  let at = dirOffset;
  for (let i = 0; i < count; i++) {
    if (at + CENTRAL_SIZE > end || zip.readUInt32LE(at) !== CENTRAL)
      throw refuse("its central directory is damaged");
    const flags = zip.readUInt16LE(at + 8);
    const method = zip.readUInt16LE(at + 10);
    const nameLength = zip.readUInt16LE(at + 28);
    const next = at + CENTRAL_SIZE + nameLength + zip.readUInt16LE(at + 30) + zip.readUInt16LE(at + 32);
    if (next > end) throw refuse("its central directory is damaged");
    const name = zip.toString("latin1", at + CENTRAL_SIZE, at + CENTRAL_SIZE + nameLength);
    const mode = zip.readUInt16LE(at + 4) >> 8 === 3 ? zip.readUInt32LE(at + 38) >>> 16 : 0;
    const entry: Entry = {
      name,
      method,
      crc: zip.readUInt32LE(at + 16),
      packed: zip.readUInt32LE(at + 20),
      size: zip.readUInt32LE(at + 24),
      offset: zip.readUInt32LE(at + 42),
      directory: name.endsWith("/") || (mode & S_IFMT) === S_IFDIR,
    };
    at = next;
    if ((mode & S_IFMT) === S_IFLNK)
      throw refuse(`${name.slice(0, 100)} is a symbolic link; put the file itself in the zip`);
    if (mode !== 0 && !entry.directory && (mode & S_IFMT) !== S_IFREG) {
      throw refuse(`${name.slice(0, 100)} is not a regular file`);
    }
    if (flags & 1) throw refuse(`${name.slice(0, 100)} is encrypted; zip the folder without a password`);
    if (entry.directory) {
      entries.push(entry);
      continue;
    }
    if (method !== 0 && method !== 8) {
      throw refuse(
        `${name.slice(0, 100)} is compressed with method ${method}; only stored and deflated entries are read`,
      );
    }
    if (entry.size > MAX_APP_FILE_BYTES) {
      throw refuse(
        `${name.slice(0, 100)} inflates to ${entry.size} bytes; an app file holds at most ${MAX_APP_FILE_BYTES} (1 MiB)`,
      );
    }
    files += 1;
    total += entry.size;
    if (files > MAX_APP_FILES)
      throw refuse(`it holds more than ${MAX_APP_FILES} files, the most a release holds`);
    if (total > MAX_APP_BYTES) {
      throw refuse(`its files inflate to more than ${MAX_APP_BYTES} bytes (4 MiB), the most a release holds`);
    }
    entries.push(entry);
  }
  return entries;
}

/** An entry's bytes: inflated up to the size it declares (never more), then checked against its size and CRC. */
function entryBytes(zip: Buffer, entry: Entry): Buffer {
  const at = entry.offset;
  if (at + LOCAL_SIZE > zip.length || zip.readUInt32LE(at) !== LOCAL)
    throw refuse(`the entry ${entry.name} is damaged`);
  const nameLength = zip.readUInt16LE(at + 26);
  const start = at + LOCAL_SIZE + nameLength + zip.readUInt16LE(at + 28);
  // A local name other than the central one is a way to show one file to a checker and write another.
  if (zip.toString("latin1", at + LOCAL_SIZE, at + LOCAL_SIZE + nameLength) !== entry.name) {
    throw refuse(`the entry ${entry.name} has another name in its local header`);
  }
  if (start + entry.packed > zip.length) throw refuse(`the entry ${entry.name} runs past the end of the zip`);
  const packed = zip.subarray(start, start + entry.packed);
  let bytes: Buffer;
  if (entry.method === 0) {
    bytes = packed;
  } else {
    try {
      // One byte more than declared: an entry that inflates past its size is caught, never inflated whole.
      bytes = inflateRawSync(packed, { maxOutputLength: entry.size + 1 });
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      throw refuse(
        code === "ERR_BUFFER_TOO_LARGE"
          ? `${entry.name} inflates to more than the ${entry.size} bytes it declares`
          : `${entry.name} cannot be inflated (${(error as Error).message})`,
      );
    }
  }
  if (bytes.length !== entry.size) {
    throw refuse(`${entry.name} holds ${bytes.length} bytes, not the ${entry.size} it declares`);
  }
  if (crc32(bytes) !== entry.crc) throw refuse(`${entry.name} does not match its CRC: the zip is damaged`);
  return bytes;
}

/** The one folder every entry is in (a zipped folder), or "" when the files are at the top. */
function commonFolder(names: string[]): string {
  const first = names[0]?.split("/")[0];
  // Never an empty or dot name: "/etc/x" and "../x" keep their whole name, and the path rules refuse it.
  if (first === undefined || first === "" || first.startsWith(".")) return "";
  return names.every((n) => n.startsWith(`${first}/`)) ? `${first}/` : "";
}

/** Reads the zip of an app folder into its files, by the folder's rules (app-path.ts). */
export function readAppZip(zip: Uint8Array): AppFolder {
  const buffer = Buffer.from(zip.buffer, zip.byteOffset, zip.length);
  const entries = centralEntries(buffer);
  const kept = entries.filter((e) => !SKIPPED_TOP.has(e.name.split("/")[0] as string));
  const skipped = entries.filter((e) => !kept.includes(e)).length > 0 ? ["__MACOSX/"] : [];
  const root = commonFolder(kept.map((e) => e.name));
  const files: AppFolderFile[] = [];
  for (const entry of kept) {
    if (entry.directory) continue;
    const path = entry.name.slice(root.length);
    const segments = path.split("/");
    // A name that climbs out or is absolute is refused even where it would be left out as hidden ("..\\x").
    const escapes = /[\\:]/.test(path) || path.startsWith("/") || segments.includes("..");
    if (
      !escapes &&
      (segments.some((s) => s.startsWith(".") && s !== ".") || segments.slice(0, -1).includes("__pycache__"))
    ) {
      skipped.push(path);
      continue;
    }
    const problem = appPathProblem(path);
    if (problem)
      throw new AppReleaseError(
        `The app file ${path.slice(0, 120)} in the zip is refused: ${problem}. Nothing was stored.`,
      );
    const bytes = entryBytes(buffer, entry);
    files.push({ path, bytes, sha256: createHash("sha256").update(bytes).digest("hex") });
  }
  if (files.length === 0) {
    throw refuse(
      `it holds no app files${skipped.length > 0 ? ` (only ${skipped.slice(0, 5).join(", ")}, which are left out)` : ""}`,
    );
  }
  files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const mpy = files
    .filter((f) => f.path.toLowerCase().endsWith(".mpy"))
    .map((f) => ({ path: f.path, header: readMpyHeader(f.path, f.bytes) }));
  return { files, mpy, skipped };
}
