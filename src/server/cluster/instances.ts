import { hostname } from "node:os";
import type { Logger } from "pino";
import type { Clock, Timer } from "../../net/clock.ts";
import { repeat } from "../../net/repeating-timer.ts";
import type { StatusView } from "../api/admin-views.ts";
import type { Storage } from "../storage/storage.ts";
import type { HeldLease } from "../storage/types.ts";

/** How often an instance writes its heartbeat. */
export const DEFAULT_HEARTBEAT_MS = 5000;
/** An instance is shown as gone after this many heartbeats missed. */
export const MISSED_HEARTBEATS = 3;
/** Rows of instances gone this long are deleted. */
const PRUNE_AFTER_MS = 24 * 3600 * 1000;

/**
 * Each server instance writes a heartbeat row (who, where, its load) to the
 * shared storage, so `mpota status` on any instance shows them all.
 */
export class InstanceHeartbeat {
  private timer: Timer | undefined;
  private readonly startedAt: number;

  constructor(
    private readonly o: {
      storage: Storage;
      id: string;
      version: string;
      clock: Clock;
      logger: Logger;
      intervalMs: number;
      http: () => string | null;
      pushes: () => number;
    },
  ) {
    this.startedAt = o.clock.now();
  }

  async start(): Promise<void> {
    await this.beat();
    this.timer = repeat(this.o.clock, this.o.intervalMs, () => {
      this.beat().catch((error: unknown) =>
        this.o.logger.warn({ err: (error as Error).message }, "heartbeat not stored"),
      );
    });
  }

  async stop(): Promise<void> {
    this.timer?.cancel();
    await this.o.storage.instances.remove(this.o.id).catch(() => undefined);
  }

  private async beat(): Promise<void> {
    const now = this.o.clock.now();
    const { jobs, rollouts } = await leasesByOwner(this.o.storage, now);
    await this.o.storage.instances.heartbeat({
      id: this.o.id,
      host: hostname(),
      pid: process.pid,
      version: this.o.version,
      startedAt: this.startedAt,
      heartbeatAt: now,
      http: this.o.http(),
      load: {
        pushes: this.o.pushes(),
        jobs: jobs.get(this.o.id)?.length ?? 0,
        rollouts: rollouts.get(this.o.id)?.length ?? 0,
      },
    });
    await this.o.storage.instances.prune(now - PRUNE_AFTER_MS);
  }
}

/** Held leases by owner; only leases are read, never the jobs (a rollout may have thousands). */
async function leasesByOwner(storage: Storage, now: number) {
  const byOwner = (leases: HeldLease[]) => {
    const out = new Map<string, string[]>();
    for (const { id, owner } of leases) {
      const ids = out.get(owner);
      if (ids) ids.push(id);
      else out.set(owner, [id]);
    }
    return out;
  };
  return {
    jobs: byOwner(await storage.jobs.leases(now)),
    rollouts: byOwner(await storage.rollouts.leases(now)),
  };
}

/** The instances sharing the storage, with the leases each holds. */
export async function statusView(
  storage: Storage,
  self: string,
  heartbeatMs: number,
  now: number,
): Promise<StatusView> {
  const { jobs, rollouts } = await leasesByOwner(storage, now);
  const instances = (await storage.instances.list()).map((record) => ({
    ...record,
    alive: record.heartbeatAt > now - MISSED_HEARTBEATS * heartbeatMs,
    leases: { jobs: jobs.get(record.id) ?? [], rollouts: rollouts.get(record.id) ?? [] },
  }));
  const live = new Set(instances.filter((i) => i.alive).map((i) => i.id));
  const orphanLeases = {
    jobs: [...jobs].flatMap(([owner, ids]) => (live.has(owner) ? [] : ids)),
    rollouts: [...rollouts].flatMap(([owner, ids]) => (live.has(owner) ? [] : ids)),
  };
  return { storage: storage.description, answeredBy: self, heartbeatMs, instances, orphanLeases };
}
