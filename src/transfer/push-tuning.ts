import { UsageError } from "../errors.ts";
import { END_PACKET_COUNT } from "../protocol/image-packets.ts";

/** How the sender paces, windows and times out; the reference client's values and mpota's. */
export interface PushTuning {
  /**
   * Largest number of datagrams in flight. While the receiver writes a
   * sector it takes nothing, so this many, and the one it was handling,
   * must fit its receive queue: 6 for the 7 the spec's model holds.
   */
  maxWindow: number;
  /** Starting window. */
  initialWindow: number;
  /** Retransmission timeout bounds (ms); the timeout adapts between them unless fixed. */
  minRtoMs: number;
  maxRtoMs: number;
  initialRtoMs: number;
  /** Keep the timeout at initialRtoMs (the reference client's 0.3 s). */
  fixedRto: boolean;
  /** Resend interval for the first datagram while the device is not answering yet. */
  firstRetryMs: number;
  /**
   * How many times the end packet goes out, and the gap between them. The
   * receiver never acknowledges it, so on a lossy link every copy may be
   * lost and the device stays in OTA mode (15 % loss: 1 push in 300 with 3
   * copies, 1 in 13,000 with 5).
   */
  endPackets: number;
  endGapMs: number;
  /**
   * Send interval as a multiple of the receiver's measured beat. Slightly
   * above 1 still outruns the receiver on average (its mean time per datagram
   * includes the sector writes) while keeping neighbours apart, so link
   * jitter reorders them less often.
   */
  paceFactor: number;
}

/** The reference client: one datagram in flight, fixed 0.3 s timeout, end packets 0.1 s apart. */
export const COMPAT_TUNING: PushTuning = {
  maxWindow: 1,
  initialWindow: 1,
  minRtoMs: 300,
  maxRtoMs: 300,
  initialRtoMs: 300,
  fixedRto: true,
  firstRetryMs: 300,
  endPackets: END_PACKET_COUNT,
  endGapMs: 100,
  paceFactor: 0,
};

/** mpota's default: a small adaptive window, never more in flight than the receiver can queue. */
export const DEFAULT_TUNING: PushTuning = {
  maxWindow: 6,
  initialWindow: 2,
  minRtoMs: 40,
  maxRtoMs: 1000,
  initialRtoMs: 300,
  fixedRto: false,
  firstRetryMs: 250,
  // In the same 200 ms as the reference client's three, still far apart
  // next to a burst of WiFi loss.
  endPackets: 5,
  endGapMs: 50,
  paceFactor: 1.05,
};

/** A window that a 4-datagram receive queue, the smallest the spec's evidence gives, holds. */
export const SMALL_WINDOW = 3;

/** The most `--window` takes: the spec's largest receive queue (16 datagrams) less the one being handled. */
export const MAX_WINDOW = 15;

/**
 * mpota's tuning with at most `window` datagrams in flight, for a receiver
 * that holds fewer than the model's 7 while it writes a sector (by code
 * reading, an overflow of that queue may hang yaota8266).
 */
export function tuningWithWindow(window: number, option = "--window"): PushTuning {
  if (!Number.isInteger(window) || window < 1 || window > MAX_WINDOW) {
    throw new UsageError(
      `${option} must be a whole number from 1 to ${MAX_WINDOW}: the datagrams in flight, which the device's receive queue must hold while it writes a sector (default ${DEFAULT_TUNING.maxWindow}, for a queue of 7).`,
    );
  }
  return {
    ...DEFAULT_TUNING,
    maxWindow: window,
    initialWindow: Math.min(DEFAULT_TUNING.initialWindow, window),
  };
}
