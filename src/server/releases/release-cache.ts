import { createHash } from "node:crypto";
import { stat } from "node:fs/promises";
import type { CheckedArtifact } from "./release-kind.ts";

export const DEFAULT_CACHED_RELEASES = 8;

/**
 * A file changed this recently may change again within the file system's
 * timestamp granularity (a few ms) without its stamp changing: such a read
 * is not kept (as git treats "racily clean" files).
 */
const RACY_MS = 50;

interface Entry {
  artifact: CheckedArtifact;
  /** The file as it was when read and checked: size, modification time, inode. */
  stamp: string;
}

/**
 * Artifacts read and checked against their identity, by identity, so a job
 * reads and checks its release once (at the request) rather than at every
 * step. A later use costs a stat of the file: a file that changed since
 * (same name, other bytes) is read and checked again, so a damaged image is
 * still never delivered. At most `max` artifacts are kept, the least
 * recently used dropped first.
 */
export class ReleaseCache {
  private readonly entries = new Map<string, Entry>();
  /** Reads (and checks) of files so far: tests count them. */
  reads = 0;

  constructor(private readonly max = DEFAULT_CACHED_RELEASES) {}

  /** The checked artifact at `path`; `read` reads and checks it when it is not kept or its file changed. */
  async get(identity: string, path: string, read: () => Promise<Uint8Array>): Promise<CheckedArtifact> {
    const before = await stampOf(path);
    const kept = this.entries.get(identity);
    this.entries.delete(identity);
    if (kept && before !== undefined && kept.stamp === before && kept.artifact.path === path) {
      this.entries.set(identity, kept);
      return kept.artifact;
    }
    const bytes = await read();
    this.reads++;
    const artifact: CheckedArtifact = {
      identity,
      bytes,
      sha256: createHash("sha256").update(bytes).digest("hex"),
      path,
    };
    // Kept only when the file did not change while it was read (else the next use reads it again).
    const after = await stampOf(path);
    if (after !== undefined && after === before && !racy(after)) {
      this.entries.set(identity, { artifact, stamp: after });
      while (this.entries.size > this.max) this.entries.delete(this.entries.keys().next().value as string);
    }
    return artifact;
  }

  forget(identity: string): void {
    this.entries.delete(identity);
  }
}

async function stampOf(path: string): Promise<string | undefined> {
  try {
    const s = await stat(path, { bigint: true });
    return `${s.size}:${s.mtimeNs}:${s.ino}`;
  } catch {
    return undefined;
  }
}

/** File times are the system's wall clock, not the server's injected one. */
function racy(stamp: string): boolean {
  const mtimeMs = Number(BigInt(stamp.split(":")[1] as string) / 1_000_000n);
  return Date.now() - mtimeMs < RACY_MS;
}
