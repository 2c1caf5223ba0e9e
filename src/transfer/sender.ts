import type { Timer } from "../net/clock.ts";
import type { UdpEndpoint } from "../net/udp-channel.ts";
import { decodeAck, SECTOR_SIZE, type SignedPacket, withSeq } from "../protocol/datagram.ts";
import { AckClock } from "./ack-clock.ts";
import { InFlight } from "./in-flight.ts";
import { DeviceSilentError, DeviceStoppedError, PushError, SILENT_CAUSES } from "./push-errors.ts";
import { DEFAULT_TUNING, type PushTuning, SMALL_WINDOW } from "./push-tuning.ts";
import type { PushEvent, PushOptions, PushResult, PushStats } from "./push-types.ts";

// The sender's public surface stays importable from here.
export { DeviceSilentError, DeviceStoppedError, PushError } from "./push-errors.ts";
export {
  COMPAT_TUNING,
  DEFAULT_TUNING,
  MAX_WINDOW,
  type PushTuning,
  SMALL_WINDOW,
  tuningWithWindow,
} from "./push-tuning.ts";
export type { PushEvent, PushOptions, PushResult, PushSource, PushStats } from "./push-types.ts";

interface Sent {
  index: number;
  at: number;
}

/**
 * Sends an image to a yaota8266 receiver and resolves when every data
 * datagram is acknowledged and the end packets are sent.
 *
 * The receiver accepts only the next expected offset, re-acknowledges the
 * previous one, and drops everything else silently. So the sender keeps a
 * small window in flight, treats an acknowledgement of datagram i as
 * acknowledging everything before it, and on a timeout goes back to the first
 * unacknowledged datagram (go-back-N). Every transmission carries a fresh
 * sequence number, so each acknowledgement names the transmission it answers
 * and round-trip samples are never ambiguous.
 */
export class PushSession {
  private readonly tuning: PushTuning;
  private readonly waitMs: number;
  private readonly stallMs: number;
  private readonly iterator: AsyncIterator<SignedPacket>;
  /** Packets from index `base` on, not yet acknowledged. */
  private readonly window: SignedPacket[] = [];
  private base = 0;
  private next = 0;
  private sourceDone = false;
  private endPacket: SignedPacket | undefined;
  private filling: Promise<void> | undefined;
  private seq = 0;
  private readonly sent = new Map<number, Sent>();
  private readonly inFlight = new InFlight();
  private readonly sentOrder: number[] = [];
  /** Latest transmission time of each outstanding datagram index. */
  private readonly lastSentAt = new Map<number, number>();
  private cwnd: number;
  private readonly ackClock: AckClock;
  private lastAckAt: number | undefined;
  private started = false;
  private startAt = 0;
  private lastProgressAt = 0;
  private ackedBytes = 0;
  private datagramsSent = 0;
  private retransmits = 0;
  private timeouts = 0;
  private staleAcks = 0;
  private firstAttempts = 0;
  private unreachable = false;
  private maxSentIndex = -1;
  /** After a timeout: resend up to here whatever the window, since the receiver may be anywhere in it. */
  private recoverThrough = -1;
  private timeoutsInARow = 0;
  private timer: Timer | undefined;
  private pumpTimer: Timer | undefined;
  private nextSendAt = 0;
  private settle: { resolve: () => void; reject: (error: Error) => void } | undefined;
  private finished = false;
  private lastProgressEventAt = -Infinity;

  constructor(private readonly options: PushOptions) {
    this.tuning = options.tuning ?? DEFAULT_TUNING;
    this.waitMs = options.waitMs ?? 30_000;
    this.stallMs = options.stallMs ?? 8_000;
    this.iterator = options.source.packets[Symbol.asyncIterator]();
    this.cwnd = this.tuning.initialWindow;
    this.seq = options.firstSeq ?? 0;
    this.ackClock = new AckClock({
      initialTimeoutMs: this.tuning.initialRtoMs,
      minTimeoutMs: this.tuning.minRtoMs,
      maxTimeoutMs: this.tuning.maxRtoMs,
    });
  }

  async run(): Promise<PushResult> {
    const { channel, clock } = this.options;
    this.startAt = clock.now();
    const offMessage = channel.onMessage((data, from) => this.onMessage(data, from));
    const offError = channel.onError((error) => {
      if ((error as NodeJS.ErrnoException).code === "ECONNREFUSED") this.unreachable = true;
    });
    try {
      await this.fill();
      if (this.window.length === 0) throw new PushError("The image is empty: there is nothing to send.");
      if (!this.sourceDone) await this.fill();
      await new Promise<void>((resolve, reject) => {
        this.settle = { resolve, reject };
        this.pump();
        this.armTimer(this.tuning.firstRetryMs);
      });
      this.emit({ type: "finishing", elapsedMs: clock.now() - this.startAt });
      const end = this.endPacket;
      if (!end)
        throw new PushError("The update source ended without an end packet; the device would not finish.");
      for (let i = 0; i < this.tuning.endPackets; i++) {
        if (i > 0) await clock.sleep(this.tuning.endGapMs);
        this.transmit(end, -1);
      }
      const result = this.stats();
      this.emit({ type: "done", ...result });
      return result;
    } finally {
      this.finished = true;
      this.timer?.cancel();
      this.pumpTimer?.cancel();
      offMessage();
      offError();
      await this.iterator.return?.();
    }
  }

  private stats(): PushStats {
    return {
      ackedBytes: this.ackedBytes,
      totalBytes: this.options.source.totalBytes,
      datagramsSent: this.datagramsSent,
      retransmits: this.retransmits,
      timeouts: this.timeouts,
      staleAcks: this.staleAcks,
      elapsedMs: this.options.clock.now() - this.startAt,
      paceMs: this.ackClock.pace,
      window: Math.floor(this.cwnd),
    };
  }

  private emit(event: PushEvent): void {
    this.options.onEvent?.(event);
  }

  /** Reads packets from the source until the window can be filled. */
  private fill(): Promise<void> {
    if (this.filling) return this.filling;
    const want = this.tuning.maxWindow;
    if (this.sourceDone || this.window.length >= want) return Promise.resolve();
    this.filling = (async () => {
      try {
        while (!this.sourceDone && this.window.length < want) {
          const r = await this.iterator.next();
          if (r.done) this.sourceDone = true;
          else if (r.value.length === 0) {
            this.endPacket = r.value;
            this.sourceDone = true;
          } else this.window.push(r.value);
        }
      } finally {
        this.filling = undefined;
      }
    })();
    return this.filling;
  }

  private transmit(packet: SignedPacket, index: number): void {
    this.seq = (this.seq + 1) >>> 0 || 1;
    if (index >= 0) {
      this.sent.set(this.seq, { index, at: this.options.clock.now() });
      this.inFlight.add({ seq: this.seq, index, at: this.options.clock.now() });
      this.lastSentAt.set(index, this.options.clock.now());
      this.sentOrder.push(this.seq);
      if (index <= this.maxSentIndex) this.retransmits++;
      else this.maxSentIndex = index;
    }
    this.datagramsSent++;
    this.options.channel.send(this.options.device, withSeq(this.seq, packet));
  }

  /** Sends what the window allows. Before the first acknowledgement only the first datagram goes out. */
  private pump(): void {
    if (this.finished) return;
    const limit = this.started ? Math.max(1, Math.floor(this.cwnd)) : 1;
    const paced = this.started && !this.tuning.fixedRto;
    const now = this.options.clock.now();
    while (
      (this.next < this.base + limit || this.next <= this.recoverThrough) &&
      this.next - this.base < this.window.length &&
      // Datagrams abandoned by a go-back still sit in the receiver's queue
      // until it reaches them: while it may be writing a sector, never more
      // than the queue holds with them.
      (!this.started ||
        !this.sectorWritePossible() ||
        this.inFlight.count(now, this.handledWithinMs()) <= this.tuning.maxWindow)
    ) {
      // Datagrams leave at the receiver's own pace: bursts gain nothing (it
      // takes one at a time) and get reordered by jitter, and the receiver
      // drops anything out of order.
      if (paced && now < this.nextSendAt) {
        if (!this.pumpTimer) {
          this.pumpTimer = this.options.clock.setTimer(this.nextSendAt - now, () => {
            this.pumpTimer = undefined;
            this.pump();
          });
        }
        return;
      }
      this.transmit(this.window[this.next - this.base] as SignedPacket, this.next);
      this.next++;
      if (paced)
        this.nextSendAt = Math.max(now, this.nextSendAt) + this.ackClock.pace * this.tuning.paceFactor;
    }
  }

  /**
   * Whether the receiver may be writing a sector that we have not heard of:
   * only then can datagrams abandoned by a go-back pile up in its queue.
   * Otherwise it drops them one a beat, and resends, spaced at least a beat
   * apart, arrive no faster than it drains them. Had it taken more than the
   * first two unacknowledged datagrams, their acknowledgements would have
   * arrived before the go-back.
   */
  private sectorWritePossible(): boolean {
    const last = Math.min(this.maxSentIndex, this.base + 2);
    for (let i = this.base; i <= last; i++) {
      const packet = this.window[i - this.base];
      if (packet && (packet.offset + packet.length) % SECTOR_SIZE === 0) return true;
    }
    return false;
  }

  /**
   * How long the receiver may hold a datagram. A full queue (the window and
   * the datagram it is handling) completes one sector at 256-byte blocks but
   * two at 1024, and the datagrams behind both writes wait for both.
   */
  private handledWithinMs(): number {
    const queued = this.tuning.maxWindow + 1;
    const block = this.window[0]?.length ?? SECTOR_SIZE;
    return this.ackClock.handledWithinMs(Math.ceil((queued * block) / SECTOR_SIZE));
  }

  /** A receiver whose queue overflows may hang (spec): after a stall, say how to keep fewer datagrams in flight. */
  private smallerQueueHint(): string {
    const { maxWindow } = this.tuning;
    if (maxWindow <= SMALL_WINDOW) return "";
    return `\nIf pushes to it keep stopping, its receiver may hold fewer datagrams than the ${maxWindow + 1} this push counted on while it writes a sector (an overflow can hang yaota8266): push with --window ${SMALL_WINDOW} (mpota serve: --push-window ${SMALL_WINDOW}).`;
  }

  private armTimer(ms: number): void {
    this.timer?.cancel();
    this.timer = this.options.clock.setTimer(ms, () => this.onTimeout());
  }

  private fail(error: Error): void {
    if (this.finished) return;
    this.finished = true;
    this.timer?.cancel();
    this.settle?.reject(error);
  }

  private onTimeout(): void {
    if (this.finished) return;
    const now = this.options.clock.now();
    const { device } = this.options;
    if (!this.started) {
      if (now - this.startAt >= this.waitMs) {
        const unreachable = this.unreachable
          ? `\nThe host reported that nothing listens on UDP port ${device.port} (ICMP port unreachable): it is up but not in OTA mode, or it is another machine.`
          : "";
        this.fail(
          new DeviceSilentError(
            `No answer from ${device.address}:${device.port} after ${Math.round((now - this.startAt) / 1000)} s and ${this.firstAttempts + 1} tries.${unreachable}\nThe usual causes:\n${SILENT_CAUSES(device)}\nIf the device needs longer to enter OTA mode, raise --wait.`,
          ),
        );
        return;
      }
      this.firstAttempts++;
      this.emit({
        type: "waiting",
        attempt: this.firstAttempts,
        elapsedMs: now - this.startAt,
        unreachable: this.unreachable,
      });
      this.next = this.base;
      this.pump();
      this.armTimer(this.tuning.firstRetryMs);
      return;
    }
    if (now - this.lastProgressAt >= this.stallMs) {
      const offset = this.window[0]?.offset ?? this.ackedBytes;
      this.fail(
        new DeviceStoppedError(
          `${device.address}:${device.port} stopped answering at offset ${offset} of ${this.options.source.totalBytes} (no acknowledgement for ${Math.round((now - this.lastProgressAt) / 1000)} s). It may have rebooted, lost WiFi or power.\nDo not try to resume: after such a stall the yaota8266 receiver keeps a stale buffer and would write a shifted, corrupt image. Put the device into OTA mode again (reset it, or trigger OTA from MicroPython) and push the whole image again.${this.smallerQueueHint()}`,
        ),
      );
      return;
    }
    // Go back to the first unacknowledged datagram. The receiver may have
    // taken datagrams whose acknowledgements were lost; it re-acknowledges
    // only the last one it took and drops the others, so the outstanding
    // range goes out again (the whole of it after a second timeout in a row).
    // The window is kept: a loss is not congestion (the receiver's pace did
    // not change), and a halved window left the receiver idle for a round
    // trip after every loss. What the queue still holds is counted instead.
    this.timeouts++;
    this.timeoutsInARow++;
    this.recoverThrough =
      this.timeoutsInARow > 1
        ? this.maxSentIndex
        : Math.min(this.maxSentIndex, this.base + Math.floor(this.cwnd) - 1);
    this.next = this.base;
    this.ackClock.timedOut();
    // The first resend leaves at once, not at the next pacing slot: the
    // receiver is only dropping until it arrives. And the retransmit timer is
    // then armed from the resend itself; armed from the original transmission
    // it expired again before the resend could be answered, and the second
    // go-back sent the same datagrams once more.
    this.nextSendAt = now;
    this.pumpTimer?.cancel();
    this.pumpTimer = undefined;
    this.pump();
    this.armRetransmitTimer();
  }

  private onMessage(data: Uint8Array, from: UdpEndpoint): void {
    if (this.finished) return;
    if (from.port !== this.options.device.port) return;
    const ack = decodeAck(data);
    if (!ack) return;
    const sent = this.sent.get(ack.seq);
    const packet = sent ? this.window[sent.index - this.base] : undefined;
    if (
      !sent ||
      !packet ||
      sent.index < this.base ||
      ack.offset !== packet.offset ||
      ack.length !== packet.length
    ) {
      this.staleAcks++;
      return;
    }
    const now = this.options.clock.now();
    if (!this.started) {
      this.started = true;
      this.emit({ type: "started", elapsedMs: now - this.startAt });
    }
    if (!this.tuning.fixedRto) {
      this.ackClock.observe({
        now,
        sentAt: sent.at,
        previousAckAt: this.lastAckAt,
        newlyAcked: sent.index - this.base + 1,
        sectorEnd: (packet.offset + packet.length) % SECTOR_SIZE === 0,
      });
    }
    this.lastAckAt = now;
    this.timeoutsInARow = 0;
    const tr = this.inFlight.get(ack.seq);
    if (tr) this.inFlight.answered(tr);
    // An acknowledgement of datagram i means the receiver took everything before it too.
    const newlyAcked = sent.index - this.base + 1;
    for (let i = 0; i < newlyAcked; i++) {
      this.ackedBytes += (this.window.shift() as SignedPacket).length;
      this.lastSentAt.delete(this.base + i);
    }
    this.base = sent.index + 1;
    this.inFlight.acknowledgedBelow(this.base);
    if (this.next < this.base) this.next = this.base;
    while (this.sentOrder.length > 0) {
      const oldest = this.sent.get(this.sentOrder[0] as number);
      if (oldest && oldest.index >= this.base) break;
      this.sent.delete(this.sentOrder.shift() as number);
    }
    this.lastProgressAt = now;
    if (this.cwnd < this.tuning.maxWindow)
      this.cwnd = Math.min(this.tuning.maxWindow, this.cwnd + newlyAcked / this.cwnd);
    if (now - this.lastProgressEventAt >= 100 || (this.sourceDone && this.window.length === 0)) {
      this.lastProgressEventAt = now;
      this.emit({ type: "progress", ...this.stats() });
    }
    if (this.sourceDone && this.window.length === 0) {
      this.timer?.cancel();
      this.settle?.resolve();
      return;
    }
    this.fill().then(
      () => {
        if (this.finished) return;
        if (this.sourceDone && this.window.length === 0) {
          this.timer?.cancel();
          this.settle?.resolve();
        } else {
          this.pump();
          this.armRetransmitTimer();
        }
      },
      (error: unknown) => this.fail(error as Error),
    );
    this.pump();
    this.armRetransmitTimer();
  }

  /** Arms the timer for the oldest unacknowledged datagram. */
  private armRetransmitTimer(): void {
    const now = this.options.clock.now();
    if (this.tuning.fixedRto) {
      this.armTimer(this.tuning.initialRtoMs);
      return;
    }
    const oldest = this.window[0];
    const sentAt = this.lastSentAt.get(this.base);
    if (!oldest || sentAt === undefined) {
      this.armTimer(this.tuning.initialRtoMs);
      return;
    }
    const at = this.ackClock.deadline({
      now,
      lastAckAt: this.lastAckAt,
      sentAt,
      sectorEnd: (oldest.offset + oldest.length) % SECTOR_SIZE === 0,
    });
    this.armTimer(at - now);
  }
}

/** Pushes an image; see {@link PushSession}. */
export function push(options: PushOptions): Promise<PushResult> {
  return new PushSession(options).run();
}
