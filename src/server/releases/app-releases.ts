import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { AppKeyError, AppReleaseError } from "../../apps/app-errors.ts";
import { defaultAppKeyPath, loadAppKey } from "../../apps/app-key.ts";
import { MAX_APP_BYTES, MAX_APP_FILES, type SignedAppManifest } from "../../apps/app-manifest.ts";
import { verifyAppManifest } from "../../apps/app-signature.ts";
import {
  appFilePath,
  damagedAppFiles,
  listAppReleases,
  readAppRelease,
  storeAppRelease,
} from "../../apps/app-store.ts";
import { RequestError } from "../base/request-error.ts";
import type { FirmwareRecord, StoredVerdict } from "../storage/storage.ts";
import { AppFiles } from "./app-files.ts";
import { APP_KIND, appIdentity, appManifestOf } from "./app-kind.ts";
import type { FirmwareLibrary } from "./firmware-library.ts";

export interface AddAppInput {
  /** The signed manifest, as `mpota app add` wrote it. */
  manifest: Uint8Array;
  /** The files' bytes by SHA-256; files already in the app store may be left out. */
  files: ReadonlyMap<string, Uint8Array>;
  notes?: string | null;
}

export interface AppReleaseView {
  record: FirmwareRecord;
  manifest: SignedAppManifest;
}

/**
 * App releases in the server: the app store in the data directory (the one
 * `mpota app add` writes: files by digest, signed manifests) and a row of
 * the release store per release, of kind `app` (its artifact is the
 * manifest), so jobs and rollouts name it as they name firmware:
 * `thermostat@1.4.0`, its identity or a prefix. The files stay in the app
 * store (by digest, shared by releases), so a one-file change stores one file.
 */
export class AppReleases {
  constructor(
    private readonly library: FirmwareLibrary,
    private readonly dataDir: string,
    /** Where every instance finds the files (the shared database too, with PostgreSQL). */
    private readonly files: AppFiles = new AppFiles(dataDir, null),
  ) {}

  /**
   * Stores an uploaded release: its files into the app store (checked
   * against the manifest's digests), then the release row. The signature
   * is checked when this server holds the key that made it (its data
   * directory's app key); a release signed by a key kept elsewhere is the
   * boards' to check (they hold the moduli), and its verdict says so.
   */
  async add(input: AddAppInput): Promise<{ record: FirmwareRecord; verdicts: StoredVerdict[] }> {
    const manifest = appManifestOf(input.manifest, "The app manifest");
    const verdicts = this.checkSignature(manifest);
    const contents = new Map<string, Uint8Array>();
    for (const file of manifest.files) {
      const given = input.files.get(file.sha256);
      if (given !== undefined) contents.set(file.sha256, given);
    }
    const held = new Map<string, Uint8Array>();
    for (const f of manifest.files) {
      if (contents.has(f.sha256) || held.has(f.sha256)) continue;
      const stored = await this.files.read(f.sha256);
      if (stored !== undefined) held.set(f.sha256, stored);
    }
    const missing = manifest.files.filter((f) => !contents.has(f.sha256) && !held.has(f.sha256));
    if (missing.length > 0) {
      throw new RequestError(
        `The upload lacks ${missing.length} file${missing.length > 1 ? "s" : ""} of ${manifest.name} ${manifest.version} that the server does not hold: ${missing
          .slice(0, 5)
          .map((f) => f.path)
          .join(", ")}${missing.length > 5 ? ", ..." : ""}. Send every file the manifest names.`,
      );
    }
    for (const file of manifest.files) {
      if (!contents.has(file.sha256)) continue;
      const bytes = contents.get(file.sha256) as Uint8Array;
      if (bytes.length !== file.size || createHash("sha256").update(bytes).digest("hex") !== file.sha256) {
        throw new RequestError(
          `The bytes sent for ${file.path} do not match the manifest (size ${file.size}, SHA-256 ${file.sha256.slice(0, 12)}...): nothing was stored. Send the files the manifest was made from.`,
        );
      }
    }
    // Files already stored are not rewritten; storeAppRelease wants every file's bytes, so they are read here.
    for (const [sha, bytes] of held) contents.set(sha, bytes);
    try {
      storeAppRelease(this.dataDir, manifest, contents);
    } catch (error) {
      if (error instanceof AppReleaseError) throw new RequestError(error.message);
      throw error;
    }
    await this.files.share(manifest, contents);
    return this.addRow(manifest, input.notes ?? null, verdicts);
  }

  /**
   * Takes a release `mpota app add` stored in this server's data directory
   * into the release store (`name@version`, or the newest of `name`).
   */
  async import(ref: string): Promise<{ record: FirmwareRecord; verdicts: StoredVerdict[] }> {
    let manifest: SignedAppManifest;
    try {
      manifest = readAppRelease(this.dataDir, ref);
    } catch (error) {
      if (error instanceof AppReleaseError) throw new RequestError(error.message);
      throw error;
    }
    const damaged = damagedAppFiles(this.dataDir, manifest);
    if (damaged.length > 0) {
      throw new RequestError(
        `${manifest.name} ${manifest.version} cannot be used: ${damaged.map((d) => `${d.path} is ${d.problem}`).join("; ")}. Add it again from its folder (\`mpota app add\`).`,
      );
    }
    const verdicts = this.checkSignature(manifest);
    const contents = new Map<string, Uint8Array>();
    for (const f of manifest.files) contents.set(f.sha256, readFileSync(appFilePath(this.dataDir, f.sha256)));
    await this.files.share(manifest, contents);
    return this.addRow(manifest, null, verdicts);
  }

  /**
   * The row for `name` or `name@version` when only the app store beside the
   * server holds it (`mpota app add` there, then `mpota update`): taken in as
   * `import` does. Undefined when the app store has no such release.
   */
  async takeIn(ref: string): Promise<FirmwareRecord | undefined> {
    const at = ref.indexOf("@");
    const name = at < 0 ? ref : ref.slice(0, at);
    const version = at < 0 ? undefined : ref.slice(at + 1);
    const stored = listAppReleases(this.dataDir).some(
      (r) => r.name === name && (version === undefined || r.version === version),
    );
    if (!stored) return undefined;
    try {
      return (await this.import(ref)).record;
    } catch (error) {
      // Two requests at once: the other one took it in.
      let id: string | undefined;
      try {
        id = appIdentity(readAppRelease(this.dataDir, ref).id);
      } catch {
        throw error;
      }
      const held = (await this.library.list()).find((r) => r.id === id);
      if (held) return held;
      throw error;
    }
  }

  /** The app releases of the release store, newest first, with their manifests. */
  async list(): Promise<AppReleaseView[]> {
    const rows = (await this.library.list()).filter((r) => this.library.kinds.of(r).name === APP_KIND);
    const out: AppReleaseView[] = [];
    for (const record of rows) {
      out.push({ record, manifest: await this.manifestOf(record.id) });
    }
    return out;
  }

  /** Releases `mpota app add` stored in the data directory that the release store does not list yet. */
  async unimported(): Promise<string[]> {
    const known = new Set((await this.library.list()).map((r) => r.id));
    return listAppReleases(this.dataDir)
      .filter((r) => r.manifest !== undefined && !known.has(appIdentity(r.manifest.id)))
      .map((r) => `${r.name}@${r.version}`);
  }

  /** The manifest of a stored app release, checked against its identity. */
  async manifestOf(id: string): Promise<SignedAppManifest> {
    const artifact = await this.library.readRelease(id);
    return appManifestOf(artifact.bytes, `app release ${id}`);
  }

  private checkSignature(manifest: SignedAppManifest): StoredVerdict[] {
    const path = defaultAppKeyPath(this.dataDir);
    if (existsSync(path)) {
      let key: ReturnType<typeof loadAppKey> | undefined;
      try {
        key = loadAppKey(path, { create: false });
      } catch (error) {
        if (!(error instanceof AppKeyError)) throw error;
      }
      if (key !== undefined && key.kid === manifest.kid) {
        try {
          verifyAppManifest(manifest.bytes, [key.privateKey]);
        } catch (error) {
          throw new RequestError(`${(error as Error).message} Sign it again (\`mpota app add\`).`);
        }
        return [
          {
            check: "app-signature",
            level: "ok",
            forced: false,
            message: `Signed by this server's app key ${key.kid}.`,
          },
        ];
      }
    }
    return [
      {
        check: "app-signature",
        level: "warning",
        forced: false,
        message: `Signed by key ${manifest.kid}, which this server does not hold: the boards check the signature against their APP_KEYS.`,
      },
    ];
  }

  private async addRow(
    manifest: SignedAppManifest,
    notes: string | null,
    signature: StoredVerdict[],
  ): Promise<{ record: FirmwareRecord; verdicts: StoredVerdict[] }> {
    if (manifest.files.length > MAX_APP_FILES || manifest.total > MAX_APP_BYTES) {
      throw new RequestError(`${manifest.name} ${manifest.version} is larger than an app release may be.`);
    }
    const result = await this.library.add({
      bytes: manifest.bytes,
      kind: APP_KIND,
      name: manifest.name,
      version: manifest.version,
      notes,
      source: `${manifest.name} ${manifest.version}`,
      appFilesStored: true,
    });
    return { record: result.record, verdicts: [...result.verdicts, ...signature] };
  }
}
