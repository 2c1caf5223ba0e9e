import type { Logger } from "pino";
import type { Clock } from "../../net/clock.ts";
import { KeyedQueue } from "../base/keyed-queue.ts";
import { SourceLog } from "../base/source-log.ts";

/** How many devices the server registers, and how fast new ones (docs/limits.md). */
export interface DeviceLimits {
  /** Device ids in the registry at most: a state or status from one more id is dropped. */
  maxDevices: number;
  /** New ids registered a minute at most: a burst of this many, then refilled evenly over the minute. */
  newPerMinute: number;
}

export const DEFAULT_DEVICE_LIMITS: DeviceLimits = {
  // 10,000 devices' rows are ~30 MB of database; a LAN fleet is far smaller.
  maxDevices: 10_000,
  // A fleet of hundreds registers at once when the server first starts (the broker replays their states).
  newPerMinute: 600,
};

export interface NewDeviceGateOptions {
  limits: DeviceLimits;
  /** Devices registered now (the registry's count). */
  count: () => Promise<number>;
  /** Whether the id has a credential (`mpota devices add`): the admin let it in, so the rate does not hold it back. */
  provisioned: (id: string) => Promise<boolean>;
  clock: Clock;
  logger: Logger;
}

/**
 * Lets a device id the registry does not know in, within the limits: at
 * most `maxDevices` ids, at most `newPerMinute` new ones a minute unless
 * the id was provisioned (a fleet of thousands that an admin added
 * registers at once when it first reports; on the embedded broker only
 * provisioned devices can publish at all). The inbox
 * cannot tell who published a message (any client the broker lets publish
 * there), so refusals are logged once a minute per limit, with how many
 * were not logged. Each new id reserves a place before it is written (one
 * reservation at a time, the registry counted again when the count is older
 * than 5 s or near the cap), so one instance never registers more than the
 * cap, and ids far below it are written in parallel (instances sharing a
 * database may each add a few over, what the others added in 5 s).
 */
export class NewDeviceGate {
  private readonly one = new KeyedQueue();
  private readonly refusals = new SourceLog();
  private tokens: number;
  private refilledAt: number;
  /** New ids waiting for their turn: each will take a token if it is registered. */
  private pending = 0;
  /** When the registry was last found full: further new ids are refused without asking it again for a while. */
  private fullAt = Number.NEGATIVE_INFINITY;
  /** The registry's count when last read, with the places reserved since; and ids being written now. */
  private places: { count: number; at: number } | undefined;
  private writing = 0;

  constructor(private readonly o: NewDeviceGateOptions) {
    this.tokens = o.limits.newPerMinute;
    this.refilledAt = o.clock.now();
  }

  /** Runs `register` for the new device `id` if the limits let it in; undefined (and logged) when not. */
  async admit<T>(id: string, kind: string, register: () => Promise<T>): Promise<T | undefined> {
    // Refused at once when over the rate or known full, so a flood of new ids never waits in memory.
    const full = this.knownFull();
    if (full) return this.refuse(id, kind, full);
    const overRate = this.rateRefusal();
    if (overRate && !(await this.o.provisioned(id))) return this.refuse(id, kind, overRate);
    // A provisioned id let in over the rate takes no token: it does not hold back the next ones.
    const token = overRate ? 0 : 1;
    this.pending += token;
    try {
      const refusal = await this.one.run("new", () => this.reserve());
      if (refusal) return this.refuse(id, kind, refusal);
      this.writing++;
      try {
        const registered = await register();
        // Only an id the registry took counts (a write that failed, on a full disk, does not).
        this.tokens -= token;
        return registered;
      } catch (error) {
        if (this.places) this.places.count--;
        throw error;
      } finally {
        this.writing--;
      }
    } finally {
      this.pending -= token;
    }
  }

  private refuse(id: string, kind: string, refusal: { limit: string; reason: string }): undefined {
    const notLogged = this.refusals.due(refusal.limit);
    if (notLogged !== undefined)
      this.o.logger.warn(
        { device: id, kind, limit: refusal.limit, notLogged },
        `new device refused: ${refusal.reason} (logged once per limit per minute)`,
      );
    return undefined;
  }

  private rateRefusal(): { limit: string; reason: string } | undefined {
    const { newPerMinute } = this.o.limits;
    const now = this.o.clock.now();
    this.tokens = Math.min(newPerMinute, this.tokens + ((now - this.refilledAt) * newPerMinute) / 60_000);
    this.refilledAt = now;
    if (this.tokens - this.pending >= 1) return undefined;
    return {
      limit: "new-devices-per-minute",
      reason: `more than ${newPerMinute} new device ids a minute (--new-devices-per-minute); the device is registered when it reports again`,
    };
  }

  /** The registry was full a moment ago (10 s): refused without counting it again. */
  private knownFull(): { limit: string; reason: string } | undefined {
    return this.o.clock.now() - this.fullAt < 10_000 ? this.fullRefusal() : undefined;
  }

  /** Takes a place for one more id (run one at a time), or says the registry is full. */
  private async reserve(): Promise<{ limit: string; reason: string } | undefined> {
    const { maxDevices } = this.o.limits;
    const now = this.o.clock.now();
    if (!this.places || now - this.places.at > 5000 || this.places.count >= maxDevices - 100) {
      // Ids being written may or may not be in the count yet: counted as taken, so never over the
      // cap. Taken before the count is read: a write that finishes while the count runs (and
      // leaves `writing`) may be missing from what the count saw, and was let in one too many.
      const writing = this.writing;
      this.places = { count: (await this.o.count()) + writing, at: now };
    }
    if (this.places.count < maxDevices) {
      this.places.count++;
      return undefined;
    }
    this.fullAt = now;
    return this.fullRefusal();
  }

  private fullRefusal(): { limit: string; reason: string } {
    const { maxDevices } = this.o.limits;
    return {
      limit: "max-devices",
      reason: `the server registers at most ${maxDevices} devices (--max-devices); states from ids it does not know are dropped. If the fleet is this large, raise the limit`,
    };
  }
}
