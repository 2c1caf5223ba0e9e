import { MpotaError } from "../../errors.ts";
import { EXIT_CODES } from "../../exit-codes.ts";
import type { Clock, Timer } from "../../net/clock.ts";
import type { UdpEndpoint, UdpNetwork } from "../../net/udp-channel.ts";
import type { SigningKey } from "../../protocol/rsa-key.ts";
import { DEFAULT_TUNING, type PushResult, type PushTuning, push } from "../../transfer/sender.ts";
import { imageFileSource } from "../../transfer/sources.ts";
import { SignedImageCache } from "./signed-image-cache.ts";

/** A push was stopped because the server is shutting down. */
export class PushAbortedError extends MpotaError {
  override readonly exitCode: number = EXIT_CODES.pushAborted.code;
}

export interface PushProgress {
  bytes: number;
  total: number;
  /** Bytes per second so far. */
  rate: number;
  retransmits: number;
}

export interface ImagePushInput {
  device: UdpEndpoint;
  /** The image file (already checked against its identity). */
  imagePath: string;
  /** The image's bytes as checked, with its identity: pushed from the signed-datagram cache (no RSA work after the first push). */
  image?: { id: string; bytes: Uint8Array; sha256?: string };
  /** How long to resend the first datagram before giving up (the receiver listens 60 s after boot). */
  waitMs: number;
  onProgress?: (progress: PushProgress) => void;
  signal?: AbortSignal;
}

export interface ImagePusherOptions {
  network: UdpNetwork;
  key: SigningKey;
  /** Data bytes per datagram (256, 512 or 1024). */
  block: number;
  /** Monotonic clock for the sender's timers. */
  clock: Clock;
  tuning?: PushTuning;
  /** No progress this long mid-transfer: the device stopped (below the receiver's 10 s PKT_WAIT). */
  stallMs?: number;
  /** Signed datagrams per firmware (default: one of its own, for this key and block size). */
  cache?: SignedImageCache;
}

/**
 * A clock whose timers all stop at once: aborting a push cancels its
 * resends, so the sender goes quiet and leaves nothing running.
 */
class StoppableClock implements Clock {
  private readonly timers = new Set<Timer>();
  private stopped = false;

  constructor(private readonly inner: Clock) {}

  now(): number {
    return this.inner.now();
  }

  setTimer(ms: number, fn: () => void): Timer {
    if (this.stopped) return { cancel: () => undefined };
    const timer: Timer = this.inner.setTimer(ms, () => {
      this.timers.delete(timer);
      fn();
    });
    this.timers.add(timer);
    return {
      cancel: () => {
        this.timers.delete(timer);
        timer.cancel();
      },
    };
  }

  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.setTimer(ms, resolve));
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.timers) t.cancel();
    this.timers.clear();
  }
}

/**
 * Sends a stored image to a device in OTA mode with the yaota8266 protocol
 * (src/transfer's sender, signed on the fly), over a UDP socket of its own.
 */
export class ImagePusher {
  /** Each firmware's signed datagrams, shared by every push of it. */
  readonly cache: SignedImageCache;

  constructor(private readonly options: ImagePusherOptions) {
    this.cache = options.cache ?? new SignedImageCache({ key: options.key, block: options.block });
  }

  get keyBits(): number {
    return this.options.key.bits;
  }

  async push(input: ImagePushInput): Promise<PushResult> {
    const { network, key, block } = this.options;
    if (input.signal?.aborted) throw new PushAbortedError("The push was cancelled before it started.");
    const source = input.image
      ? this.cache.source(input.image.id, input.image.bytes, input.image.sha256)
      : await imageFileSource(input.imagePath, key, block);
    const channel = await network.bind({ connect: input.device });
    const clock = new StoppableClock(this.options.clock);
    let onAbort: (() => void) | undefined;
    const aborted = new Promise<never>((_, reject) => {
      onAbort = () => {
        clock.stop();
        reject(new PushAbortedError("The push was stopped because the server is shutting down."));
      };
      input.signal?.addEventListener("abort", onAbort, { once: true });
    });
    aborted.catch(() => undefined);
    try {
      const run = push({
        channel,
        device: input.device,
        clock,
        source,
        tuning: this.options.tuning ?? DEFAULT_TUNING,
        waitMs: input.waitMs,
        ...(this.options.stallMs !== undefined ? { stallMs: this.options.stallMs } : {}),
        onEvent: (event) => {
          if (event.type === "progress" || event.type === "done") {
            const seconds = event.elapsedMs / 1000;
            input.onProgress?.({
              bytes: event.ackedBytes,
              total: event.totalBytes,
              rate: seconds > 0 ? Math.round(event.ackedBytes / seconds) : 0,
              retransmits: event.retransmits,
            });
          }
        },
      });
      run.catch(() => undefined);
      return await Promise.race([run, aborted]);
    } finally {
      if (onAbort) input.signal?.removeEventListener("abort", onAbort);
      clock.stop();
      await channel.close();
    }
  }
}
