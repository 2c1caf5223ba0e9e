import type { Clock } from "../net/clock.ts";
import type { UdpChannel, UdpEndpoint } from "../net/udp-channel.ts";
import type { SignedPacket } from "../protocol/datagram.ts";
import type { PushTuning } from "./push-tuning.ts";

/** What to send. */
export interface PushSource {
  /**
   * Data packets (length > 0) in offset order, then the end packet (length 0),
   * which is sent tuning.endPackets times (3 with --compat) once every data packet is
   * acknowledged. Read lazily: large images are never held whole.
   */
  packets: AsyncIterable<SignedPacket>;
  /** Image size in bytes (for progress). */
  totalBytes: number;
}

export interface PushOptions {
  channel: UdpChannel;
  device: UdpEndpoint;
  clock: Clock;
  source: PushSource;
  tuning?: PushTuning;
  /** Give up when the first datagram is unanswered this long (ms). The receiver listens 60 s after boot. */
  waitMs?: number;
  /** Give up when no progress is made this long mid-transfer (ms). Below the receiver's PKT_WAIT_MS (10 s). */
  stallMs?: number;
  onEvent?: (event: PushEvent) => void;
  /** Sequence numbers start above this (after a block-size probe on the same channel). */
  firstSeq?: number;
}

export interface PushStats {
  /** Bytes of the image acknowledged. */
  ackedBytes: number;
  totalBytes: number;
  /** Datagrams sent, retransmissions and end packets included. */
  datagramsSent: number;
  /** Data datagrams sent more than once. */
  retransmits: number;
  /** Timeouts that sent the sender back to the first unacknowledged datagram. */
  timeouts: number;
  /** Acknowledgements that matched nothing outstanding (late, duplicated or foreign). */
  staleAcks: number;
  elapsedMs: number;
  /** The receiver's time per datagram as measured from its acknowledgements (ms). */
  paceMs: number;
  /** Datagrams the sender lets be in flight now (it grows from the initial window to the maximum). */
  window: number;
}

export type PushEvent =
  | { type: "waiting"; attempt: number; elapsedMs: number; unreachable: boolean }
  | { type: "started"; elapsedMs: number }
  | ({ type: "progress" } & PushStats)
  | { type: "finishing"; elapsedMs: number }
  | ({ type: "done" } & PushStats);

export type PushResult = PushStats;
