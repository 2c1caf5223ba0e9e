import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import type { SignedAppManifest } from "../../apps/app-manifest.ts";
import { appFilePath, cacheAppFile } from "../../apps/app-store.ts";
import type { ImageStore } from "../storage/storage.ts";

/** The key of an app file among the database's stored bytes (beside firmware images, by identity). */
export function appFileKey(sha256: string): string {
  return `app-file/${sha256}`;
}

const digest = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

/**
 * An app's files where every server instance finds them. Each instance
 * keeps them in its data directory's app store (by digest); with a
 * database that several instances share (PostgreSQL), the files are also
 * stored there, as firmware images are, and an instance that lacks one
 * (another instance added the release) fetches it once, checks its
 * digest and keeps it. A file is never handed out unless its bytes match
 * its digest.
 */
export class AppFiles {
  constructor(
    private readonly dataDir: string,
    private readonly images: ImageStore | null,
  ) {}

  /** The file with this digest, or undefined when no store holds an undamaged copy. */
  async read(sha256: string): Promise<Uint8Array | undefined> {
    try {
      const local = await readFile(appFilePath(this.dataDir, sha256));
      if (digest(local) === sha256) return local;
    } catch {
      // Not here: perhaps in the shared store.
    }
    const shared = await this.images?.get(appFileKey(sha256));
    if (shared === undefined || digest(shared) !== sha256) return undefined;
    cacheAppFile(this.dataDir, sha256, shared);
    return shared;
  }

  /** Stores the release's files in the shared store too, when there is one (files it holds are skipped). */
  async share(manifest: SignedAppManifest, contents: ReadonlyMap<string, Uint8Array>): Promise<void> {
    if (!this.images) return;
    for (const file of manifest.files) {
      const bytes = contents.get(file.sha256);
      if (bytes !== undefined) await this.images.put(appFileKey(file.sha256), bytes);
    }
  }
}
