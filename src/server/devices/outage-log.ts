import type { Clock } from "../../net/clock.ts";

/**
 * Counts the device messages an outage (a full disk, an unreachable
 * database) touches, so the log has one line when it begins and one when it
 * ends, not one per message: thousands of devices report meanwhile. An
 * outage that begins again within a minute of the last line is not logged
 * again (a message that needed no write can end an outage early).
 */
export class OutageLog {
  private outage: { since: number; count: number } | null = null;
  private loggedAt = Number.NEGATIVE_INFINITY;

  constructor(private readonly clock: Clock) {}

  /** A message met the outage; true when it is the first of a new outage, whose line is to be logged now. */
  hit(): boolean {
    const now = this.clock.now();
    if (this.outage !== null) {
      this.outage.count++;
      return false;
    }
    this.outage = { since: now, count: 1 };
    if (now - this.loggedAt < 60_000) return false;
    this.loggedAt = now;
    return true;
  }

  /** A message went through: the outage that ended with it (how many messages it touched, how long), if any. */
  ended(): { count: number; seconds: number } | undefined {
    if (this.outage === null) return undefined;
    const { since, count } = this.outage;
    this.outage = null;
    return { count, seconds: Math.round((this.clock.now() - since) / 1000) };
  }
}
