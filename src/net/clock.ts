/**
 * Time as the transfer code and the emulator see it. Production uses the
 * system clock; tests use {@link VirtualClock} so hours of modelled device
 * time run in milliseconds, deterministically.
 */
export interface Timer {
  cancel(): void;
}

export interface Clock {
  /** Milliseconds, monotonic. */
  now(): number;
  /** Runs `fn` after `ms` milliseconds. */
  setTimer(ms: number, fn: () => void): Timer;
  /** Resolves after `ms` milliseconds. */
  sleep(ms: number): Promise<void>;
}

export const systemClock: Clock = {
  now: () => performance.now(),
  setTimer(ms, fn) {
    const handle = setTimeout(fn, Math.max(0, ms));
    return { cancel: () => clearTimeout(handle) };
  },
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms))),
};

interface PendingTimer {
  at: number;
  seq: number;
  fn: () => void;
  cancelled: boolean;
}

/**
 * A clock that only moves when asked. `run(promise)` advances it from timer
 * to timer, letting promise chains settle between timers, until the promise
 * settles: async code written against {@link Clock} runs unchanged. Real
 * I/O (files, sockets) must not be pending meanwhile: the clock cannot see it
 * and would jump past it.
 */
export class VirtualClock implements Clock {
  private time = 0;
  private seq = 0;
  private readonly timers: PendingTimer[] = [];

  constructor(start = 0) {
    this.time = start;
  }

  now(): number {
    return this.time;
  }

  setTimer(ms: number, fn: () => void): Timer {
    const timer: PendingTimer = { at: this.time + Math.max(0, ms), seq: this.seq++, fn, cancelled: false };
    // Keep sorted by (at, seq): insertion from the back is cheap for the usual near-future timers.
    let i = this.timers.length;
    while (i > 0) {
      const prev = this.timers[i - 1] as PendingTimer;
      if (prev.at < timer.at || (prev.at === timer.at && prev.seq < timer.seq)) break;
      i--;
    }
    this.timers.splice(i, 0, timer);
    return {
      cancel: () => {
        timer.cancelled = true;
      },
    };
  }

  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.setTimer(ms, resolve));
  }

  /** Number of timers still pending. */
  get pending(): number {
    return this.timers.filter((t) => !t.cancelled).length;
  }

  /** Fires every timer due at or before `now + ms`, in order, settling promises in between. */
  async advance(ms: number): Promise<void> {
    const until = this.time + ms;
    for (;;) {
      await settle();
      const next = this.popDue(until);
      if (!next) break;
      this.time = next.at;
      next.fn();
    }
    this.time = until;
    await settle();
  }

  /**
   * Advances time until `promise` settles and returns its result. Throws if no
   * timer is left while the promise is still pending (a deadlock in the code
   * under test), or if more than `limitMs` of virtual time passes.
   */
  async run<T>(promise: Promise<T>, limitMs = 24 * 3600_000): Promise<T> {
    let done = false;
    let result: { ok: true; value: T } | { ok: false; error: unknown } | undefined;
    promise.then(
      (value) => {
        done = true;
        result = { ok: true, value };
      },
      (error: unknown) => {
        done = true;
        result = { ok: false, error };
      },
    );
    const deadline = this.time + limitMs;
    for (;;) {
      await settle();
      if (done) break;
      const next = this.popDue(deadline);
      if (!next) {
        throw new Error(
          this.pending === 0
            ? "VirtualClock.run: the promise can never settle (no timers left)"
            : `VirtualClock.run: still pending after ${limitMs} ms of virtual time`,
        );
      }
      this.time = next.at;
      next.fn();
    }
    const r = result as { ok: true; value: T } | { ok: false; error: unknown };
    if (!r.ok) throw r.error;
    return r.value;
  }

  private popDue(until: number): PendingTimer | undefined {
    while (this.timers.length > 0) {
      const first = this.timers[0] as PendingTimer;
      if (first.cancelled) {
        this.timers.shift();
        continue;
      }
      if (first.at > until) return undefined;
      this.timers.shift();
      return first;
    }
    return undefined;
  }
}

/** Lets every queued microtask and immediate run. */
function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
