/** How the sender paces, windows and times out; the reference client's values and mpota's. */
export interface PushTuning {
  /** Largest number of datagrams in flight. The receiver buffers about 7 while busy. */
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
  /** Gap between the end packets. */
  endGapMs: number;
  /** Send interval as a fraction of the receiver's measured pace (below 1 keeps its queue from running dry). */
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
  endGapMs: 100,
  paceFactor: 0.9,
};
