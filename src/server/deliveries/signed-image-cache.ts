import { createHash } from "node:crypto";
import { checkBlockSize, type SignedPacket, signPacket } from "../../protocol/datagram.ts";
import type { SigningKey } from "../../protocol/rsa-key.ts";
import type { PushSource } from "../../transfer/sender.ts";

/** Signs one datagram body (header, data) with the key: the RSA work of a push. */
export type PacketSigner = (key: SigningKey, offset: number, data: Uint8Array) => SignedPacket;

export const DEFAULT_SIGNED_IMAGES = 4;
/** Datagrams signed between two turns of the event loop. */
const BATCH = 8;

export interface SignedImageCacheOptions {
  key: SigningKey;
  /** Data bytes per datagram. */
  block: number;
  /** Firmware images kept signed; the least recently used is dropped first. */
  maxImages?: number;
  /** The signer (tests count its calls). */
  sign?: PacketSigner;
}

/** One firmware image's datagrams, signed once, filled in as they are signed so a first push can start at once. */
class SignedImage {
  readonly packets: SignedPacket[] = [];
  done = false;
  error: unknown;
  private wake: Array<() => void> = [];

  constructor(
    readonly digest: string,
    readonly totalBytes: number,
  ) {}

  notify(): void {
    for (const resolve of this.wake.splice(0)) resolve();
  }

  async *iterate(): AsyncGenerator<SignedPacket> {
    let i = 0;
    for (;;) {
      if (i < this.packets.length) {
        yield this.packets[i++] as SignedPacket;
        continue;
      }
      if (this.error !== undefined) throw this.error;
      if (this.done) return;
      await new Promise<void>((resolve) => this.wake.push(resolve));
    }
  }
}

/**
 * Signed datagrams per firmware image, so that updating a fleet costs the
 * RSA work of one push per firmware, not one per device. A yaota8266
 * signature covers the datagram's body (header and data) but not its
 * sequence number, which the sender puts in front for each push, so the
 * signed bodies of an image are the same for every device.
 *
 * Entries are keyed by firmware identity and checked against a SHA-256 of
 * the bytes (the identity, the MD5 trailer, does not cover the image's
 * first four bytes): a changed image is signed afresh, never pushed with
 * stale signatures. At most `maxImages` images are kept (about 1.3 MB each
 * for a 600 KiB image with a 2048-bit key and 256-byte blocks).
 */
export class SignedImageCache {
  private readonly entries = new Map<string, SignedImage>();
  private readonly sign: PacketSigner;
  private readonly maxImages: number;
  /** Datagrams signed so far (data and end packets). */
  signatures = 0;

  constructor(private readonly o: SignedImageCacheOptions) {
    checkBlockSize(o.block);
    this.sign = o.sign ?? signPacket;
    this.maxImages = Math.max(1, o.maxImages ?? DEFAULT_SIGNED_IMAGES);
  }

  get size(): number {
    return this.entries.size;
  }

  /** A push source for the image with this identity: its signed datagrams, signed now if not kept yet. */
  source(identity: string, image: Uint8Array, sha256?: string): PushSource {
    // The digest comes with bytes already checked (releases/release-cache.ts); computed here otherwise.
    const digest = sha256 ?? createHash("sha256").update(image).digest("hex");
    let entry = this.entries.get(identity);
    if (entry && entry.digest !== digest) entry = undefined;
    if (entry) {
      // Most recently used last: Map keeps insertion order.
      this.entries.delete(identity);
      this.entries.set(identity, entry);
    } else {
      entry = new SignedImage(digest, image.length);
      this.entries.delete(identity);
      this.entries.set(identity, entry);
      while (this.entries.size > this.maxImages) {
        const oldest = this.entries.keys().next().value as string;
        this.entries.delete(oldest);
      }
      void this.fill(identity, entry, new Uint8Array(image));
    }
    return { totalBytes: entry.totalBytes, packets: entry.iterate() };
  }

  private async fill(identity: string, entry: SignedImage, image: Uint8Array): Promise<void> {
    const { key, block } = this.o;
    try {
      let n = 0;
      for (let offset = 0; offset < image.length; offset += block) {
        entry.packets.push(this.sign(key, offset, image.subarray(offset, offset + block)));
        this.signatures++;
        if (++n % BATCH === 0) {
          entry.notify();
          await new Promise((resolve) => setImmediate(resolve));
        }
      }
      entry.packets.push(this.sign(key, 0, new Uint8Array(0)));
      this.signatures++;
      entry.done = true;
    } catch (error) {
      entry.error = error;
      if (this.entries.get(identity) === entry) this.entries.delete(identity);
    }
    entry.notify();
  }
}
