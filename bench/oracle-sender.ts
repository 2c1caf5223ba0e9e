// An oracle sender, for the virtual push bench only: it is told what model B
// (bench/receiver-model-b.ts) did with each datagram, which no real sender can
// know, so that what it reaches bounds what a sender could reach on a link that
// reorders (README, issue 18). Two levels of knowledge:
//
// - "nack": as if the receiver answered every datagram it handles, taken or
//   dropped, with the offset it expects next, and those answers were never
//   lost: each answer arrives one return-way delay (drawn from the link's
//   model) after the handling ends, as an acknowledgement would. A datagram
//   the link loses is reported as if the receiver saw it go missing where it
//   would have arrived: a way out and a way back after it left.
// - "late": the NACK oracle's answers, but a drop or a loss is told only when
//   a missing acknowledgement would be surely late (the handling's end, or
//   where the datagram would have been handled, plus a beat and the longest
//   way back), and never wrongly: the best timing a sender that learns of a
//   drop only from a missing acknowledgement could have, without the false
//   alarms it would also have.
// - "perfect": told the moment the receiver starts handling a datagram what it
//   does with it, the moment the link loses one, and which datagrams are still
//   on their way; it goes back only to the first offset that nothing on the
//   way will fill.
//
// Either way it goes back to the offset the receiver needs (or forward, when
// the receiver is ahead of it), sends at a fixed spacing otherwise, and never
// has more datagrams at the receiver or on their way to it than the receiver
// holds (the one it handles and the 7 of its queue), counting a datagram as
// there until it has heard that it was handled or lost: the queue cannot
// overflow.
import type { LinkDirection, LinkProfile } from "../src/net/impairment.ts";
import type { Random } from "../src/net/random.ts";
import { type SignedPacket, withSeq } from "../src/protocol/datagram.ts";
import { DEFAULT_TUNING } from "../src/transfer/push-tuning.ts";
import type { ModelBEvent } from "./receiver-model-b.ts";
import type { VirtualSenderContext } from "./virtual-push.ts";

/** What model B holds at once: the datagram it handles and the 7 of its receive queue. */
export const RECEIVER_HOLDS = 8;

export type OracleKind = "perfect" | "nack" | "late";

/** Model B's time per 256-byte datagram (its UART log), the uncertainty in when it reached one. */
const BEAT_MS = 10.4;

/** The longest a datagram can take one way: the delay plus the whole jitter, in either reading. */
function longest(d: LinkDirection): number {
  return d.delayMs + d.jitterMs;
}

export interface OracleOptions {
  kind: OracleKind;
  /** Time between two transmissions, resends included. */
  spacingMs: number;
  /** The link model B runs, for the answers' delays. */
  link: LinkProfile;
  /** Model B's reading of the jitter. */
  jitter: "from" | "around";
  /** For the answers' delays only (model B's link draws from its own). */
  random: Random;
}

export interface OracleCounts {
  datagramsSent: number;
  retransmits: number;
  /** Times the sender went back to an offset below the next it would have sent. */
  goBacks: number;
  /** Data datagrams the link lost on the way to the receiver. */
  lost: number;
  /** Datagrams dropped for their offset while a copy of the one expected, sent before them, was still on its way: overtaken. */
  overtaken: number;
  /** All datagrams dropped for their offset. */
  dropped: number;
  duplicates: number;
  overflows: number;
}

interface Transmission {
  seq: number;
  index: number;
  sentAt: number;
}

export class OracleSender {
  readonly counts: OracleCounts = {
    datagramsSent: 0,
    retransmits: 0,
    goBacks: 0,
    lost: 0,
    overtaken: 0,
    dropped: 0,
    duplicates: 0,
    overflows: 0,
  };
  private context: VirtualSenderContext | undefined;
  private data: SignedPacket[] = [];
  private block = 0;
  /** Transmissions on their way to the receiver or in its queue, by sequence number. */
  private readonly onTheWay = new Map<number, Transmission>();
  private readonly lastSentAt = new Map<number, number>();
  private seq = 0;
  private next = 0;
  private maxSent = -1;
  private nextSendAt = 0;
  /** Transmissions not yet known to be handled or lost. */
  private outstanding = 0;
  /** Every index below this is known taken. */
  private knownTaken = 0;
  private finished = false;
  private pumpTimer: { cancel(): void } | undefined;
  private done: (() => void) | undefined;

  constructor(private readonly options: OracleOptions) {}

  /** The hook for model B's `observe` option. */
  readonly observe = (event: ModelBEvent): void => {
    const tx = this.onTheWay.get(event.seq);
    const clock = this.context?.clock;
    if (!tx || !clock || this.finished) return;
    this.onTheWay.delete(event.seq);
    const { kind } = this.options;
    const { inbound, outbound } = this.options.link;
    if (event.kind === "lost" || event.kind === "overflow") {
      if (event.kind === "lost") this.counts.lost++;
      else this.counts.overflows++;
      // The link decides as the datagram leaves: a receiver would see the gap where it would have arrived.
      const answerIn = kind === "perfect" ? 0 : this.draw(inbound) + this.draw(outbound);
      const learnIn = kind === "late" ? longest(inbound) + BEAT_MS + longest(outbound) : answerIn;
      clock.setTimer(answerIn, () => this.release());
      clock.setTimer(learnIn, () => this.learn(tx, this.firstNeeded(tx.index)));
      return;
    }
    const expected = event.expected / this.block;
    if (event.outcome === "unexpected") {
      this.counts.dropped++;
      if (this.onItsWay(expected, tx.sentAt)) this.counts.overtaken++;
    } else if (event.outcome === "duplicate") this.counts.duplicates++;
    // The datagram holds its place at the receiver until its handling ends; "taken" is
    // learnt then at the earliest, when an acknowledgement would leave, so that a push
    // ends as a real one would (the last sector written).
    const endsIn = event.endsAt - clock.now();
    const answerIn = endsIn + (kind === "perfect" ? 0 : this.draw(outbound));
    clock.setTimer(answerIn, () => {
      this.release();
      if (event.outcome === "accepted") this.learnTaken(tx.index + 1);
    });
    if (event.outcome !== "unexpected") return;
    // The perfect oracle knows as the receiver reads the offset, and what is still on its way.
    if (kind === "perfect") this.learn(tx, this.firstNeeded(expected));
    else
      clock.setTimer(kind === "late" ? endsIn + BEAT_MS + longest(outbound) : answerIn, () =>
        this.learn(tx, Math.max(expected, this.knownTaken)),
      );
  };

  /** The VirtualSender: pushes every data packet, then the end packets as mpota does. */
  async send(
    context: VirtualSenderContext,
  ): Promise<{ datagramsSent: number; retransmits: number; timeouts: number }> {
    this.context = context;
    this.data = context.packets.filter((p) => p.length > 0);
    const end = context.packets.find((p) => p.length === 0);
    if (!end || this.data.length === 0)
      throw new Error("oracle sender: the image has no data or no end packet");
    this.block = (this.data[0] as SignedPacket).length;
    await new Promise<void>((resolve) => {
      this.done = resolve;
      this.pump();
    });
    for (let i = 0; i < DEFAULT_TUNING.endPackets; i++) {
      if (i > 0) await context.clock.sleep(DEFAULT_TUNING.endGapMs);
      this.seq++;
      this.counts.datagramsSent++;
      context.channel.send(context.device, withSeq(this.seq, end));
    }
    return {
      datagramsSent: this.counts.datagramsSent,
      retransmits: this.counts.retransmits,
      timeouts: this.counts.goBacks,
    };
  }

  /** One way's delay, as the link's model draws it. */
  private draw(d: LinkDirection): number {
    const r = this.options.random();
    return Math.max(
      0,
      d.delayMs + (this.options.jitter === "around" ? (2 * r - 1) * d.jitterMs : r * d.jitterMs),
    );
  }

  /** Whether a copy of this index (sent before `sentBefore`) is on its way to the receiver or in its queue. */
  private onItsWay(index: number, sentBefore = Number.POSITIVE_INFINITY): boolean {
    for (const tx of this.onTheWay.values()) if (tx.index === index && tx.sentAt < sentBefore) return true;
    return false;
  }

  /**
   * The first index at or after `from` that the receiver will still need:
   * for the perfect oracle, past every index a copy of which is on its way;
   * for the NACK and late oracles, `from` itself (they cannot tell late from lost).
   */
  private firstNeeded(from: number): number {
    let index = Math.max(from, this.knownTaken);
    if (this.options.kind === "perfect") while (index < this.data.length && this.onItsWay(index)) index++;
    return index;
  }

  private release(): void {
    this.outstanding--;
    this.pump();
  }

  private learnTaken(through: number): void {
    if (through <= this.knownTaken) return;
    this.knownTaken = through;
    if (this.next < through) this.next = through;
    if (through >= this.data.length) this.finish();
  }

  /** Told that `tx` was dropped or lost and that the receiver needs `target` next. */
  private learn(tx: Transmission, target: number): void {
    if (this.finished || target >= this.data.length || target === this.next) return;
    // A copy of the needed datagram left after this one: this drop is answered already.
    if ((this.lastSentAt.get(target) ?? Number.NEGATIVE_INFINITY) > tx.sentAt) return;
    if (target < this.next) this.counts.goBacks++;
    this.next = target;
    this.pump();
  }

  private pump(): void {
    const context = this.context;
    if (!context || this.finished || this.pumpTimer) return;
    const { clock, channel, device } = context;
    while (this.next < this.data.length && this.outstanding < RECEIVER_HOLDS) {
      const now = clock.now();
      if (now < this.nextSendAt) {
        this.pumpTimer = clock.setTimer(this.nextSendAt - now, () => {
          this.pumpTimer = undefined;
          this.pump();
        });
        return;
      }
      const index = this.next++;
      this.seq++;
      this.onTheWay.set(this.seq, { seq: this.seq, index, sentAt: now });
      this.lastSentAt.set(index, now);
      if (index <= this.maxSent) this.counts.retransmits++;
      else this.maxSent = index;
      this.counts.datagramsSent++;
      this.outstanding++;
      this.nextSendAt = now + this.options.spacingMs;
      channel.send(device, withSeq(this.seq, this.data[index] as SignedPacket));
    }
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.pumpTimer?.cancel();
    this.pumpTimer = undefined;
    this.done?.();
  }
}
