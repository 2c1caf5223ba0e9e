import type { Clock, Timer } from "../net/clock.ts";

interface Entry {
  at: number;
  seq: number;
  run: () => void;
  cancelled: boolean;
}

/**
 * Things the emulated device will do at given times, run strictly in time
 * order on one clock timer (so a real clock's rounding cannot reorder an
 * erase, a write and an ack). `clear()` forgets everything: a reset.
 */
export class Agenda {
  private readonly entries: Entry[] = [];
  private seq = 0;
  private timer: { handle: Timer; at: number } | undefined;

  constructor(private readonly clock: Clock) {}

  /** Runs `run` at `at` (clock time); returns a function that cancels it. */
  at(at: number, run: () => void): () => void {
    const entry: Entry = { at, seq: this.seq++, run, cancelled: false };
    let i = this.entries.length;
    while (i > 0 && (this.entries[i - 1] as Entry).at > at) i--;
    this.entries.splice(i, 0, entry);
    this.arm();
    return () => {
      entry.cancelled = true;
    };
  }

  clear(): void {
    for (const e of this.entries) e.cancelled = true;
    this.entries.length = 0;
    this.timer?.handle.cancel();
    this.timer = undefined;
  }

  private arm(): void {
    while (this.entries.length > 0 && (this.entries[0] as Entry).cancelled) this.entries.shift();
    const head = this.entries[0];
    if (!head) {
      this.timer?.handle.cancel();
      this.timer = undefined;
      return;
    }
    if (this.timer && this.timer.at <= head.at) return;
    this.timer?.handle.cancel();
    const at = head.at;
    this.timer = { at, handle: this.clock.setTimer(Math.max(0, at - this.clock.now()), () => this.fire()) };
  }

  private fire(): void {
    this.timer = undefined;
    const now = this.clock.now();
    for (;;) {
      const head = this.entries[0];
      if (!head || head.at > now) break;
      this.entries.shift();
      if (!head.cancelled) head.run();
    }
    this.arm();
  }
}
