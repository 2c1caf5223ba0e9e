/** Every duration of a job's life cycle, in ms. Tests shrink them to run in seconds. */
export interface JobTimings {
  /** After a ready ack, before the first datagram: the device resets into OTA mode (~2.5 s with RTC magic). */
  bootDelayMs: number;
  /** How long the first push after an ack resends its first datagram (the receiver listens 60 s after boot). */
  firstAnswerMs: number;
  /** The same for a push again to a device thought to sit in OTA mode (a full receiver cycle: 60 s + reboot). */
  repushAnswerMs: number;
  /** After a push, how long to wait for the device's state before pushing again. */
  verifyTimeoutMs: number;
  /**
   * After a broken-off push: the receiver's PKT_WAIT (10 s) and IDLE_REBOOT (60 s), each checked on a 1 s
   * tick, then boot8266's GPIO wait (3 s) before it finds the half-written app and starts a fresh receiver.
   */
  receiverResetMs: number;
  /** Backoff between tries: base, doubled per try, capped. */
  retryBaseMs: number;
  retryMaxMs: number;
  /** Give up waiting for the device to take the command after this long; 0: wait for ever (sleepy devices). */
  ackTimeoutMs: number;
  /** Lease on a job; renewed while a push runs. */
  leaseMs: number;
  /** How often storage is checked for due jobs (jobs of other instances, timeouts). */
  pollMs: number;
  /** Progress messages during a push, at most this often. */
  progressIntervalMs: number;
  /**
   * How long a job's retained progress message stays on the broker after the
   * job ended; then it is cleared (the job's record stays in storage), so the
   * broker's retained messages do not grow with every job ever run.
   */
  progressKeptMs: number;
}

export const DEFAULT_JOB_TIMINGS: JobTimings = {
  bootDelayMs: 3000,
  firstAnswerMs: 57_000,
  repushAnswerMs: 70_000,
  verifyTimeoutMs: 90_000,
  receiverResetMs: 80_000,
  retryBaseMs: 10_000,
  retryMaxMs: 300_000,
  ackTimeoutMs: 0,
  leaseMs: 30_000,
  pollMs: 1000,
  progressIntervalMs: 500,
  progressKeptMs: 24 * 3600_000,
};

export const DEFAULT_MAX_ATTEMPTS = 5;
export const DEFAULT_MAX_CONCURRENT_PUSHES = 8;
/** The most pushes one server sends at once (`serve --max-pushes`). */
export const MAX_CONCURRENT_PUSHES = 256;
