import { createHash } from "node:crypto";
import * as zlib from "node:zlib";
import yauzl from "yauzl";
import { AppReleaseError } from "./app-errors.ts";
import type { AppFolder, AppFolderFile } from "./app-folder.ts";
import { MAX_APP_BYTES, MAX_APP_FILE_BYTES, MAX_APP_FILES } from "./app-manifest.ts";
import { appPathProblem } from "./app-path.ts";
import { readMpyHeader } from "./mpy-header.ts";

/**
 * A zip of an app folder (the dashboard's upload), read into the same
 * files `mpota app add` reads from a folder, under the same rules. yauzl
 * reads the container (end record, central directory, local headers,
 * inflate); the bounds and the folder's rules are mpota's and are checked
 * here, in this order: the zip's size, its entry count on the end record,
 * every entry's kind and declared size on the central directory, every
 * path, and only then is a byte inflated, each entry with a ceiling of the
 * size it declares, so a zip bomb stops there: nothing bigger than an app
 * release is ever held in memory.
 */

/** Largest zip: an app's 4 MiB stored without compression, plus room for its headers. */
export const MAX_APP_ZIP_BYTES = MAX_APP_BYTES + 512 * 1024;
/** Most entries: the files an app may hold, plus as many folders and left-out entries. */
export const MAX_APP_ZIP_ENTRIES = 2 * MAX_APP_FILES;

const S_IFMT = 0o170000;
const S_IFLNK = 0o120000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const MADE_BY_UNIX = 3;
/** Left out as in a folder (hidden entries and __pycache__), and what macOS's Archive Utility adds. */
const SKIPPED_TOP = new Set(["__MACOSX"]);

interface Entry {
  name: string;
  directory: boolean;
  zipped: yauzl.Entry;
}

const refuse = (why: string) => new AppReleaseError(`The zip is refused: ${why}. Nothing was stored.`);

/** yauzl's refusal of the container, said with what to do (mpota's own refusals pass as they are). */
function refusal(error: unknown): AppReleaseError {
  if (error instanceof AppReleaseError) return error;
  const message = error instanceof Error ? error.message : String(error);
  if (/signature not found/i.test(message)) {
    return refuse("it is not a zip file (no end of central directory); zip the app's folder and upload that");
  }
  if (/multi-disk/i.test(message))
    return refuse("it spans several disks; zip the app's folder into one file");
  if (/strong encryption/i.test(message)) return refuse("it is encrypted; zip the folder without a password");
  return refuse(
    `it cannot be read as a zip (${message.slice(0, 200)}); zip the app's folder again and upload that`,
  );
}
const rethrow = (error: unknown): never => {
  throw refusal(error);
};

/** The central directory's entries, with every count, kind and size bound checked before any data is read. */
async function centralEntries(zipfile: yauzl.ZipFile): Promise<Entry[]> {
  // ZIP64 needs no refusal: yauzl resolves its 64-bit fields, and these bounds apply to what they say.
  if (zipfile.entryCount > MAX_APP_ZIP_ENTRIES) {
    throw refuse(
      `it has ${zipfile.entryCount} entries; an app's zip has at most ${MAX_APP_ZIP_ENTRIES} (files and folders)`,
    );
  }
  const entries: Entry[] = [];
  let files = 0;
  let total = 0;
  for await (const zipped of zipfile.eachEntry()) {
    const name = yauzl.getFileNameLowLevel(
      zipped.generalPurposeBitFlag,
      zipped.fileNameRaw,
      zipped.extraFields,
      true,
    );
    const shown = name.slice(0, 100);
    const mode = zipped.versionMadeBy >> 8 === MADE_BY_UNIX ? zipped.externalFileAttributes >>> 16 : 0;
    const directory = name.endsWith("/") || (mode & S_IFMT) === S_IFDIR;
    if ((mode & S_IFMT) === S_IFLNK)
      throw refuse(`${shown} is a symbolic link; put the file itself in the zip`);
    if (mode !== 0 && !directory && (mode & S_IFMT) !== S_IFREG)
      throw refuse(`${shown} is not a regular file`);
    if (zipped.isEncrypted()) throw refuse(`${shown} is encrypted; zip the folder without a password`);
    entries.push({ name, directory, zipped });
    if (directory) continue;
    const method = zipped.compressionMethod;
    if (method !== 0 && method !== 8) {
      throw refuse(`${shown} is compressed with method ${method}; only stored and deflated entries are read`);
    }
    const size = zipped.uncompressedSize;
    if (size > MAX_APP_FILE_BYTES) {
      throw refuse(
        `${shown} inflates to ${size} bytes; an app file holds at most ${MAX_APP_FILE_BYTES} (1 MiB)`,
      );
    }
    files += 1;
    total += size;
    if (files > MAX_APP_FILES)
      throw refuse(`it holds more than ${MAX_APP_FILES} files, the most a release holds`);
    if (total > MAX_APP_BYTES) {
      throw refuse(`its files inflate to more than ${MAX_APP_BYTES} bytes (4 MiB), the most a release holds`);
    }
  }
  return entries;
}

/** An entry's bytes: read up to the size it declares (never more), then checked against its size and CRC. */
async function entryBytes(zipfile: yauzl.ZipFile, entry: Entry): Promise<Buffer> {
  const { name, zipped } = entry;
  const size = zipped.uncompressedSize;
  const local = await zipfile.readLocalFileHeaderPromise(zipped).catch(rethrow);
  // A local name other than the central one is a way to show one file to a checker and write another.
  if (!local.fileName.equals(zipped.fileNameRaw)) {
    throw refuse(`the entry ${name} has another name in its local header`);
  }
  const stream = await zipfile.openReadStreamPromise(zipped).catch(rethrow);
  const chunks: Buffer[] = [];
  let length = 0;
  const past = `${name} inflates to more than the ${size} bytes it declares`;
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      length += chunk.length;
      // yauzl stops an inflate past the declared size too; this ceiling holds for stored entries as well.
      if (length > size) throw refuse(past);
      chunks.push(chunk);
    }
  } catch (error) {
    if (error instanceof AppReleaseError) throw error;
    const message = error instanceof Error ? error.message : String(error);
    const damaged = "the zip is damaged, zip the folder again";
    throw refuse(
      /too many bytes/.test(message)
        ? past
        : /not enough bytes/.test(message)
          ? `${name} holds fewer bytes than the ${size} it declares; ${damaged}`
          : `${name} cannot be inflated (${message.slice(0, 200)}); ${damaged}`,
    );
  }
  const bytes = Buffer.concat(chunks, length);
  if (bytes.length !== size) throw refuse(`${name} holds ${bytes.length} bytes, not the ${size} it declares`);
  // yauzl leaves the CRC to its caller. zlib.crc32 came in Node 20.15: looked up here, not imported
  // by name, so an older Node 20 fails this upload with a reason instead of failing to load the server.
  if (typeof zlib.crc32 !== "function") {
    throw new AppReleaseError(
      "Reading an app zip needs Node 20.15 or later (zlib.crc32); update Node and upload again.",
    );
  }
  if (zlib.crc32(bytes) >>> 0 !== zipped.crc32)
    throw refuse(`${name} does not match its CRC; the zip is damaged, zip the folder again`);
  return bytes;
}

/** The one folder every entry is in (a zipped folder), or "" when the files are at the top. */
function commonFolder(names: string[]): string {
  const first = names[0]?.split("/")[0];
  // Never an empty or dot name: "/etc/x" and "../x" keep their whole name, and the path rules refuse it.
  if (first === undefined || first === "" || first.startsWith(".")) return "";
  return names.every((n) => n.startsWith(`${first}/`)) ? `${first}/` : "";
}

/** The files to keep, by the folder's rules (app-path.ts): every path checked before any is read. */
function keptFiles(entries: Entry[], skipped: string[]): Array<{ path: string; entry: Entry }> {
  const kept = entries.filter((e) => !SKIPPED_TOP.has(e.name.split("/")[0] as string));
  if (kept.length < entries.length) skipped.push("__MACOSX/");
  const root = commonFolder(kept.map((e) => e.name));
  const files: Array<{ path: string; entry: Entry }> = [];
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
    files.push({ path, entry });
  }
  return files;
}

/** Reads the zip of an app folder into its files, by the folder's rules (app-path.ts). */
export async function readAppZip(zip: Uint8Array): Promise<AppFolder> {
  if (zip.length > MAX_APP_ZIP_BYTES) {
    throw refuse(`it is ${zip.length} bytes; an app's zip holds at most ${MAX_APP_ZIP_BYTES}`);
  }
  // Names are decoded in centralEntries, not by yauzl, whose own path check would refuse "../x" before
  // mpota's path rules say why; strictFileNames keeps a backslash for those rules to see.
  const options = {
    lazyEntries: true,
    decodeStrings: false,
    validateEntrySizes: true,
    strictFileNames: true,
  };
  const buffer = Buffer.from(zip.buffer, zip.byteOffset, zip.length);
  const zipfile = await yauzl.fromBufferPromise(buffer, options).catch(rethrow);
  try {
    const skipped: string[] = [];
    const wanted = keptFiles(await centralEntries(zipfile).catch(rethrow), skipped);
    if (wanted.length === 0) {
      throw refuse(
        `it holds no app files${skipped.length > 0 ? ` (only ${skipped.slice(0, 5).join(", ")}, which are left out)` : ""}`,
      );
    }
    const files: AppFolderFile[] = [];
    for (const { path, entry } of wanted) {
      const bytes = await entryBytes(zipfile, entry);
      files.push({ path, bytes, sha256: createHash("sha256").update(bytes).digest("hex") });
    }
    files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    const mpy = files
      .filter((f) => f.path.toLowerCase().endsWith(".mpy"))
      .map((f) => ({ path: f.path, header: readMpyHeader(f.path, f.bytes) }));
    return { files, mpy, skipped };
  } finally {
    zipfile.close();
  }
}
