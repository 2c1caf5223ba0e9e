import type { Logger } from "pino";
import type { Clock, Timer } from "../../net/clock.ts";
import { StorageUnavailableError } from "../storage/storage.ts";

export interface DueSchedulerOptions {
  clock: Clock;
  /** Longest sleep between two looks at storage (other instances' jobs, missed wake-ups). */
  pollMs: number;
  logger: Logger;
  /** Takes what is due; resolves with how long to sleep before the next look (capped at pollMs). */
  runDue: () => Promise<number>;
}

/**
 * Wakes the job runner when something is due: at the time storage says,
 * at the latest every pollMs, and at once when kicked. One look at a time;
 * a kick during a look causes another right after it.
 */
export class DueScheduler {
  private timer: Timer | undefined;
  private timerAt = Number.POSITIVE_INFINITY;
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = true;
  /** Set while the database cannot be reached: the outage is logged once, not on every look. */
  private unreachableSince: number | undefined;

  constructor(private readonly o: DueSchedulerOptions) {}

  start(): void {
    this.stopped = false;
    this.kick(0);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.timer?.cancel();
    this.timer = undefined;
    await this.running;
  }

  /** Looks at due jobs after `delayMs`, or sooner if already planned. */
  kick(delayMs: number): void {
    if (this.stopped) return;
    const delay = Math.max(0, delayMs);
    const at = this.o.clock.now() + delay;
    if (this.timer && this.timerAt <= at) return;
    this.timer?.cancel();
    this.timerAt = at;
    this.timer = this.o.clock.setTimer(delay, () => {
      this.timer = undefined;
      this.timerAt = Number.POSITIVE_INFINITY;
      this.look();
    });
  }

  private look(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.o
      .runDue()
      .then(
        (sleepMs) => {
          if (this.unreachableSince !== undefined) {
            const seconds = (this.o.clock.now() - this.unreachableSince) / 1000;
            this.o.logger.warn({ seconds: Math.round(seconds * 10) / 10 }, "database reachable again");
            this.unreachableSince = undefined;
          }
          this.kick(Math.min(this.o.pollMs, sleepMs));
        },
        (error: unknown) => {
          if (error instanceof StorageUnavailableError) {
            if (this.unreachableSince === undefined) {
              this.unreachableSince = this.o.clock.now();
              this.o.logger.error(
                { err: error.message },
                "database unreachable; due work waits until it is back",
              );
            }
          } else {
            this.o.logger.error({ err: (error as Error).stack ?? String(error) }, "job scheduler failed");
          }
          this.kick(this.o.pollMs);
        },
      )
      .finally(() => {
        this.running = undefined;
        if (this.again) {
          this.again = false;
          this.kick(0);
        }
      });
  }
}
