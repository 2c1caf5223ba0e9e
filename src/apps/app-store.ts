import { createHash, randomBytes } from "node:crypto";
import {
  closeSync,
  fsyncSync,
  linkSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeSync,
} from "node:fs";
import { dirname, join, resolve } from "node:path";
import { FileError } from "../errors.ts";
import { AppReleaseError } from "./app-errors.ts";
import {
  checkAppName,
  checkAppVersion,
  compareAppVersions,
  parseAppManifest,
  type SignedAppManifest,
} from "./app-manifest.ts";

/**
 * The app store in the data directory:
 *
 *     apps/files/<sha256>                       each file's bytes, by digest (shared by releases)
 *     apps/releases/<name>/<version>.manifest   the signed manifest
 *
 * Every file is written to a temporary name, synced, then renamed, and the
 * manifest last: a release that can be listed has all its files.
 */

export function appStoreDir(dataDir: string): string {
  return join(resolve(dataDir), "apps");
}

function manifestPath(dataDir: string, name: string, version: string): string {
  return join(appStoreDir(dataDir), "releases", checkAppName(name), `${checkAppVersion(version)}.manifest`);
}

export function appFilePath(dataDir: string, sha256: string): string {
  return join(appStoreDir(dataDir), "files", sha256);
}

function storeError(path: string, error: unknown): FileError {
  const code = (error as NodeJS.ErrnoException).code;
  const why =
    code === "ENOSPC"
      ? "the disk is full"
      : code === "EACCES" || code === "EPERM" || code === "EROFS"
        ? "no permission to write there (run as the user that owns the data directory)"
        : (error as Error).message;
  return new FileError(`Cannot write the app store file ${path}: ${why}.`, { cause: error });
}

function syncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, "r");
    fsyncSync(fd);
  } catch {
    // Directories cannot be opened here (Windows): the entry is durable with the next flush.
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/**
 * Puts one file into the app store by its digest (a copy fetched from a
 * store several servers share), completely or not at all. The caller has
 * checked the digest.
 */
export function cacheAppFile(dataDir: string, sha256: string, bytes: Uint8Array): void {
  const path = appFilePath(dataDir, sha256);
  try {
    mkdirSync(dirname(path), { recursive: true });
  } catch (error) {
    throw storeError(path, error);
  }
  writeAtomic(path, bytes);
}

/** Writes `bytes` to `path` completely or not at all: temp file in the same folder, fsync, rename. */
function writeAtomic(path: string, bytes: Uint8Array): void {
  const temp = `${path}.${randomBytes(6).toString("hex")}.tmp`;
  try {
    const fd = openSync(temp, "wx", 0o644);
    try {
      writeSync(fd, bytes);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temp, path);
  } catch (error) {
    rmSync(temp, { force: true });
    throw storeError(path, error);
  }
}

function readIfPresent(path: string): Buffer | undefined {
  try {
    return readFileSync(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new FileError(`Cannot read the app store file ${path}: ${(error as Error).message}.`, {
      cause: error,
    });
  }
}

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

export interface StoreResult {
  /** "unchanged": this very release was stored before. */
  state: "added" | "unchanged";
  /** Files written now (the others were in the store already, from this or another release). */
  filesWritten: number;
  bytesWritten: number;
  manifestPath: string;
}

/**
 * Stores a signed release and its files (`contents`: bytes by SHA-256).
 * A version, once stored, never changes: other bytes under the same name
 * and version are refused.
 */
export function storeAppRelease(
  dataDir: string,
  manifest: SignedAppManifest,
  contents: ReadonlyMap<string, Uint8Array>,
): StoreResult {
  const target = manifestPath(dataDir, manifest.name, manifest.version);
  const before = readIfPresent(target);
  if (before !== undefined && !before.equals(manifest.bytes)) {
    throw new AppReleaseError(
      `${manifest.name} ${manifest.version} is already stored (release ${sha256(before).slice(0, 12)}) with other files or another key's signature. A stored version never changes, so devices that run it can trust it: give these files a new version.`,
    );
  }
  const filesDir = join(appStoreDir(dataDir), "files");
  const releaseDir = join(appStoreDir(dataDir), "releases", manifest.name);
  try {
    mkdirSync(filesDir, { recursive: true });
    mkdirSync(releaseDir, { recursive: true });
  } catch (error) {
    throw storeError(releaseDir, error);
  }
  let filesWritten = 0;
  let bytesWritten = 0;
  for (const file of manifest.files) {
    const bytes = contents.get(file.sha256);
    if (bytes === undefined || bytes.length !== file.size || sha256(bytes) !== file.sha256) {
      throw new AppReleaseError(
        `The bytes of ${file.path} do not match the manifest's digest: the file changed while the release was made. Try again.`,
      );
    }
    const path = appFilePath(dataDir, file.sha256);
    const stored = readIfPresent(path);
    // A damaged copy (another release's, cut by a crash before rename could not happen; a disk error) is replaced.
    if (stored !== undefined && sha256(stored) === file.sha256) continue;
    writeAtomic(path, bytes);
    filesWritten++;
    bytesWritten += bytes.length;
  }
  syncDir(filesDir);
  const state = before === undefined ? publishManifest(target, manifest) : "unchanged";
  return { state, filesWritten, bytesWritten, manifestPath: target };
}

/**
 * Puts the manifest in place without replacing one: link() fails when the
 * name exists, so of two `app add` runs for one version, the second finds
 * the first's manifest and is told, rather than silently replacing it.
 */
function publishManifest(target: string, manifest: SignedAppManifest): "added" | "unchanged" {
  const temp = `${target}.${randomBytes(6).toString("hex")}.tmp`;
  try {
    writeAtomic(temp, manifest.bytes);
    try {
      linkSync(temp, target);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw storeError(target, error);
      if (readIfPresent(target)?.equals(manifest.bytes)) return "unchanged";
      throw new AppReleaseError(
        `${manifest.name} ${manifest.version} was stored by another run just now, with other files or another key's signature: give these files a new version.`,
      );
    }
  } finally {
    rmSync(temp, { force: true });
  }
  syncDir(dirname(target));
  return "added";
}

export type StoredApp = { name: string; version: string; manifest?: SignedAppManifest; damaged?: string };

/** Every stored release, by name, then oldest version first; a manifest that cannot be read is listed as damaged. */
export function listAppReleases(dataDir: string): StoredApp[] {
  const releases = join(appStoreDir(dataDir), "releases");
  let names: string[];
  try {
    names = readdirSync(releases).sort();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw new FileError(`Cannot read the app store ${releases}: ${(error as Error).message}.`, {
      cause: error,
    });
  }
  const out: StoredApp[] = [];
  for (const name of names) {
    const versions = readdirSync(join(releases, name))
      .filter((f) => f.endsWith(".manifest"))
      .map((f) => f.slice(0, -".manifest".length));
    for (const version of versions) {
      try {
        const manifest = parseAppManifest(readFileSync(join(releases, name, `${version}.manifest`)));
        if (manifest.name !== name || manifest.version !== version) {
          throw new AppReleaseError(
            `the manifest is for ${manifest.name} ${manifest.version}, stored as ${name} ${version}`,
          );
        }
        out.push({ name, version, manifest });
      } catch (error) {
        out.push({ name, version, damaged: (error as Error).message });
      }
    }
  }
  const valid = (v: string) => /^\d+(\.\d+)*$/.test(v);
  return out.sort((a, b) =>
    a.name !== b.name
      ? a.name < b.name
        ? -1
        : 1
      : valid(a.version) && valid(b.version)
        ? compareAppVersions(a.version, b.version)
        : a.version < b.version
          ? -1
          : 1,
  );
}

/** The stored release `name@version`, or the newest of `name`. */
export function readAppRelease(dataDir: string, ref: string): SignedAppManifest {
  const at = ref.indexOf("@");
  const name = checkAppName(at < 0 ? ref : ref.slice(0, at));
  const all = listAppReleases(dataDir).filter((r) => r.name === name);
  const version = at < 0 ? all.at(-1)?.version : checkAppVersion(ref.slice(at + 1));
  const found = all.find((r) => r.version === version);
  if (found === undefined || version === undefined) {
    throw new AppReleaseError(
      `There is no app release ${at < 0 ? name : `${name} ${version}`} in ${appStoreDir(dataDir)}${all.length > 0 ? ` (stored: ${all.map((r) => r.version).join(", ")})` : ""}. \`mpota app list\` shows what is stored.`,
    );
  }
  if (found.manifest === undefined) {
    throw new AppReleaseError(
      `The stored release ${name} ${found.version} cannot be used. ${found.damaged} Move ${manifestPath(dataDir, name, found.version)} away and add the release again from its folder.`,
    );
  }
  return found.manifest;
}

/** Files of a stored release that are missing or whose bytes no longer match their digest. */
export function damagedAppFiles(
  dataDir: string,
  manifest: SignedAppManifest,
): Array<{ path: string; problem: string }> {
  const out: Array<{ path: string; problem: string }> = [];
  for (const file of manifest.files) {
    const bytes = readIfPresent(appFilePath(dataDir, file.sha256));
    if (bytes === undefined) out.push({ path: file.path, problem: "missing from the store" });
    else if (sha256(bytes) !== file.sha256)
      out.push({ path: file.path, problem: "its bytes no longer match its digest" });
  }
  return out;
}
