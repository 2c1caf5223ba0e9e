/**
 * Predicts when the yaota8266 receiver's next acknowledgement is due, so a
 * lost datagram is noticed after a few of the receiver's own beats instead of
 * a fixed timeout.
 *
 * The receiver is one server working through a queue: with datagrams waiting,
 * it acknowledges one every `pace` ms (its UART logging sets that), plus the
 * sector erase-and-write time after every datagram that completes a 4 KiB
 * sector (it writes before it acknowledges). Both are learned from the
 * acknowledgements themselves; the lowest round trip seen bounds how soon a
 * datagram sent into an idle receiver can be answered.
 */
export interface AckClockOptions {
  /** Deadline used until enough acknowledgements have been seen (ms). */
  initialTimeoutMs: number;
  /** Bounds on the wait for one acknowledgement (ms). */
  minTimeoutMs: number;
  maxTimeoutMs: number;
}

export interface AckSample {
  now: number;
  /** When the acknowledged transmission was sent. */
  sentAt: number;
  /** When the previous new acknowledgement arrived (undefined for the first). */
  previousAckAt: number | undefined;
  /** Datagrams this acknowledgement newly covers (more than 1 when acknowledgements were lost). */
  newlyAcked: number;
  /** The acknowledged datagram completed a sector (the receiver wrote flash before answering). */
  sectorEnd: boolean;
}

const WARMUP_SAMPLES = 6;
/** The slowest erase and program of a 4 KiB sector the spec names (300-400 ms worst-case erase). */
const SLOWEST_SECTOR_WRITE_MS = 420;
/**
 * How much of a beat and four deviations to wait past the predicted
 * acknowledgement. Every wasted millisecond of a real loss or reordering
 * idles the receiver, while an early go-back after a lost acknowledgement
 * only costs the few resends it drops, so the wait is shorter than a full
 * extra beat (0.7 from runs of the virtual bench, npm run bench:virtual).
 */
const LATE_FACTOR = 0.7;

export class AckClock {
  /** Receiver time per datagram while busy (ms). */
  pace = 12;
  /** Extra time for a sector write (ms). */
  sectorExtra = 70;
  /** Mean deviation of acknowledgement gaps from the prediction (ms). */
  deviation = 5;
  /** Lowest round trip seen (ms). */
  minRtt = Number.POSITIVE_INFINITY;
  private samples = 0;
  private sectorSamples = 0;
  private backoff = 1;

  constructor(private readonly options: AckClockOptions) {}

  get warmedUp(): boolean {
    return this.samples >= WARMUP_SAMPLES;
  }

  /** Learns from an acknowledgement that made progress. */
  observe(sample: AckSample): void {
    this.backoff = 1;
    const rtt = sample.now - sample.sentAt;
    if (rtt < this.minRtt) this.minRtt = rtt;
    const prev = sample.previousAckAt;
    // A gap measures the receiver's pace only when the datagram was already
    // waiting at the receiver when the previous acknowledgement left it.
    if (prev === undefined || sample.newlyAcked !== 1 || sample.sentAt + this.minRtt / 2 > prev) {
      // The receiver was idle: it answered within one round trip, so it is at
      // least that fast. Without this, a sender pacing slower than the
      // receiver would never find out.
      if (!sample.sectorEnd && rtt < this.pace) this.pace += 0.125 * (rtt - this.pace);
      return;
    }
    const gap = sample.now - prev;
    const expected = this.pace + (sample.sectorEnd ? this.sectorExtra : 0);
    this.deviation += 0.25 * (Math.abs(gap - expected) - this.deviation);
    if (sample.sectorEnd) {
      // The first write is taken whole: flash chips differ by several times
      // (the spec's 40-70 ms typical erase, 300-400 ms worst, slower PUYA
      // parts), and until the sender knows, resends pile up behind it.
      const gain = this.sectorSamples++ === 0 ? 1 : 0.25;
      this.sectorExtra += gain * (Math.max(0, gap - this.pace) - this.sectorExtra);
    } else this.pace += 0.125 * (gap - this.pace);
    this.samples++;
  }

  /**
   * How long after it was sent a datagram has surely left the receiver's
   * queue (taken, dropped or lost): a round trip and `sectorWrites` sector
   * writes (as many as a full queue completes), with margin. Until a write
   * has been timed, each counts as the slowest the spec knows of. Before any
   * round trip is seen, the initial timeout.
   */
  handledWithinMs(sectorWrites: number): number {
    if (!Number.isFinite(this.minRtt)) return this.options.initialTimeoutMs;
    const write =
      this.sectorSamples > 0 ? this.sectorExtra : Math.max(this.sectorExtra, SLOWEST_SECTOR_WRITE_MS);
    return this.minRtt + sectorWrites * write + 4 * this.deviation + 2 * this.pace;
  }

  /** A timeout fired without progress: be more patient until the next progress. */
  timedOut(): void {
    this.backoff = Math.min(this.backoff * 2, 16);
  }

  /**
   * When to give up on the oldest unacknowledged datagram, as an absolute
   * time: its predicted acknowledgement, plus most of a beat and a jitter
   * margin (see LATE_FACTOR).
   */
  deadline(input: {
    now: number;
    lastAckAt: number | undefined;
    sentAt: number;
    sectorEnd: boolean;
  }): number {
    const { minTimeoutMs, maxTimeoutMs, initialTimeoutMs } = this.options;
    if (!this.warmedUp) {
      const at = input.sentAt + initialTimeoutMs * this.backoff;
      return Math.min(Math.max(at, input.now + minTimeoutMs), input.now + maxTimeoutMs);
    }
    const extra = input.sectorEnd ? this.sectorExtra : 0;
    const predicted = Math.max(
      input.lastAckAt === undefined ? 0 : input.lastAckAt + this.pace + extra,
      input.sentAt + this.minRtt + extra,
    );
    const wait = LATE_FACTOR * (this.pace + 4 * this.deviation + 3) * this.backoff;
    const at = predicted + wait;
    return Math.min(Math.max(at, input.now + minTimeoutMs), input.now + maxTimeoutMs);
  }
}
