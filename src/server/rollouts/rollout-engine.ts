import { shorten } from "../../protocol/mqtt-contract.ts";
import type { RolloutDetail, RolloutView } from "../api/rollout-api.ts";
import { RequestError } from "../base/request-error.ts";
import { ScheduledFeature } from "../base/scheduled-feature.ts";
import { DueScheduler } from "../jobs/job-scheduler.ts";
import { releaseOnStop } from "../jobs/stop-release.ts";
import type { FirmwareName } from "../releases/downgrade-policy.ts";
import type { ReleaseKind } from "../releases/release-kind.ts";
import type {
  NewRolloutEvent,
  RolloutDevicePatch,
  RolloutDeviceSnapshot,
  RolloutRecord,
  RolloutState,
} from "../storage/rollout-store.ts";
import { type FirmwareRecord, type JobRecord, LeaseLostError, type Storage } from "../storage/storage.ts";
import { createRollout } from "./rollout-creation.ts";
import { startDevice } from "./rollout-device-turn.ts";
import type { RolloutEngineOptions } from "./rollout-engine-options.ts";
import { groupName, planStep, waiveFailures } from "./rollout-step.ts";
import { rolloutDetail, rolloutView } from "./rollout-views.ts";

const ACTIVE: readonly RolloutState[] = ["scheduled", "running", "paused"];

/**
 * How long after a job ends the rollouts are looked at: the jobs that end
 * meanwhile (dozens a second in a large rollout) are recorded in one look,
 * rather than one look each over every device row.
 */
export const JOB_ENDED_LOOK_MS = 100;

/**
 * Drives rollouts: a feature with start() and stop(), over storage and the
 * job runner. Every look at a rollout (under its lease, so one instance at
 * a time drives it) records finished jobs, applies timeouts and
 * thresholds, opens groups and creates the jobs of devices whose turn has
 * come; the job runner does each update. Nothing lives only in memory: a
 * restarted server picks every rollout up where storage says it is.
 */
export class RolloutEngine extends ScheduledFeature {
  protected readonly scheduler: DueScheduler;

  constructor(private readonly o: RolloutEngineOptions) {
    super();
    this.scheduler = new DueScheduler({
      clock: o.clock,
      pollMs: o.pollMs,
      logger: o.logger,
      runDue: () => this.runDue(),
    });
  }

  private get now(): number {
    return this.o.clock.now();
  }

  /** The embedded broker forgets retained messages when it restarts: publishes the active rollouts' progress again. */
  async republish(): Promise<void> {
    for (const r of await this.o.storage.rollouts.list({ active: true })) {
      await this.publish(r, await this.o.storage.rollouts.snapshot(r.id));
    }
  }

  protected async releaseLeases(): Promise<void> {
    await releaseOnStop(() => this.o.storage.rollouts.releaseAll(this.o.owner), this.o.logger, "rollout");
  }

  /** Looks at every rollout at once (after a request, or in tests). */
  kick(): void {
    this.scheduler.kick(0);
  }

  /**
   * A job ended: its rollout (if any) has a free slot, which its next
   * device gets at the next look, soon rather than at the next poll. The
   * look finds nothing to do when the job was no rollout's, or when another
   * instance holds its rollout (that one's poll gives the slot away).
   */
  jobEnded(): void {
    this.scheduler.kick(JOB_ENDED_LOOK_MS);
  }

  // ---- requests -------------------------------------------------------------

  async create(request: Record<string, unknown>): Promise<RolloutView> {
    return this.reconcile(await createRollout(this.o, request));
  }

  /** Finds a rollout by id or name (the newest of that name). */
  async resolve(ref: unknown): Promise<RolloutRecord> {
    const text = typeof ref === "string" ? ref.trim() : "";
    if (text === "") throw new RequestError('The request needs "id": the rollout\'s id or name.');
    const byId = await this.o.storage.rollouts.get(text);
    if (byId) return byId;
    const byName = (await this.o.storage.rollouts.list()).find((r) => r.name === text);
    if (byName) return byName;
    throw new RequestError(`There is no rollout "${shorten(text)}". \`mpota rollout list\` shows them.`, {
      notFound: true,
    });
  }

  async list(filter: { active?: boolean; limit?: number }): Promise<RolloutView[]> {
    const rollouts = await this.o.storage.rollouts.list(filter);
    // Rollouts often share a release: each is read once per list, not once per rollout.
    const reads = new Map<string, Promise<FirmwareRecord | undefined>>();
    const releaseOf = (id: string) => {
      const read = reads.get(id) ?? this.o.storage.firmware.get(id);
      reads.set(id, read);
      return read;
    };
    return Promise.all(
      rollouts.map(async (r) =>
        this.withDelivery(r, rolloutView(r, await this.o.storage.rollouts.snapshot(r.id)), releaseOf),
      ),
    );
  }

  async show(ref: unknown, events: number): Promise<RolloutDetail> {
    const r = await this.resolve(ref);
    const [devices, log] = await Promise.all([
      this.o.storage.rollouts.snapshot(r.id),
      this.o.storage.rollouts.events(r.id, events),
    ]);
    return this.withDelivery(r, rolloutDetail(r, devices, log));
  }

  /**
   * The view with how the release travels (the CLI says "fetching" for a
   * release the devices fetch); the page's rollout events carry the same.
   */
  async withDelivery<T extends RolloutView>(
    r: RolloutRecord,
    view: T,
    releaseOf: (id: string) => Promise<FirmwareRecord | undefined> = (id) => this.o.storage.firmware.get(id),
  ): Promise<T> {
    const release = await releaseOf(r.firmwareId);
    return release === undefined ? view : { ...view, ...this.o.deliveryOf(release) };
  }

  /** Stops giving devices their turn; jobs the devices have not taken yet are taken back, pushes under way finish. */
  async pause(ref: unknown, reason?: string): Promise<RolloutView> {
    const r = await this.resolve(ref);
    if (r.state === "paused")
      throw new RequestError(`Rollout ${r.id} is already paused: ${r.reason ?? ""}`.trim());
    this.refuseEnded(r, "pause");
    const why = reason ? `Paused by hand: ${shorten(reason, 200)}` : "Paused by hand.";
    await this.change(
      r,
      ["scheduled", "running"],
      { state: "paused", pauseKind: "manual", reason: why },
      "paused",
      why,
    );
    return this.reconcile(r.id);
  }

  /** Goes on after a pause; what made it pause (failures, a group below its threshold, an approval) is accepted. */
  async resume(ref: unknown): Promise<RolloutView> {
    const r = await this.resolve(ref);
    if (r.state !== "paused") {
      this.refuseEnded(r, "resume");
      throw new RequestError(`Rollout ${r.id} is not paused (it is ${r.state}).`);
    }
    await this.queue.run(r.id, async () => {
      const current = (await this.o.storage.rollouts.get(r.id)) as RolloutRecord;
      let gates = current.gates;
      let what = "";
      if (current.pauseKind === "errors") {
        // The failures so far are accepted: they count neither against the error thresholds nor the success gate.
        gates = waiveFailures(current, await this.o.storage.rollouts.snapshot(r.id)).map((g, i) =>
          i === current.currentGroup ? { ...g, proceed: true } : g,
        );
        what = " The failures so far are accepted; the error thresholds count from here.";
      } else if (current.pauseKind === "success" || current.pauseKind === "approval") {
        gates = current.gates.map((g, i) => (i === current.currentGroup ? { ...g, proceed: true } : g));
        what =
          current.currentGroup < current.groups.length - 1
            ? ` ${groupName(current, current.currentGroup)} is let through; the next group starts.`
            : " The last group is accepted as it is.";
      }
      const next: RolloutState = current.startedAt === null ? "scheduled" : "running";
      await this.change(
        current,
        ["paused"],
        { state: next, pauseKind: null, reason: null, gates },
        "resumed",
        `Resumed by hand.${what}`,
        false,
      );
    });
    return this.reconcile(r.id);
  }

  /** Ends the rollout: devices whose turn has not come, and jobs not taken yet, are cancelled; pushes under way finish. */
  async abort(ref: unknown, reason?: string): Promise<RolloutView> {
    const r = await this.resolve(ref);
    this.refuseEnded(r, "abort");
    const why = reason ? `Aborted by hand: ${shorten(reason, 200)}` : "Aborted by hand.";
    await this.change(
      r,
      ACTIVE,
      { state: "aborted", pauseKind: null, reason: why, finishedAt: this.now },
      "aborted",
      why,
    );
    return this.reconcile(r.id);
  }

  private refuseEnded(r: RolloutRecord, what: string): void {
    if (r.state === "completed" || r.state === "aborted") {
      throw new RequestError(
        `Rollout ${r.id} has ended (${r.state}${r.reason ? `: ${r.reason.replace(/\.$/, "")}` : ""}); there is nothing to ${what}.`,
      );
    }
  }

  private async change(
    r: RolloutRecord,
    from: readonly RolloutState[],
    patch: Parameters<Storage["rollouts"]["transition"]>[0]["patch"],
    kind: string,
    message: string,
    queued = true,
  ): Promise<void> {
    const run = async () => {
      const changed = await this.o.storage.rollouts.transition({
        id: r.id,
        from,
        now: this.now,
        patch,
        event: { at: this.now, kind, message, data: null },
      });
      if (!changed) {
        const now = await this.o.storage.rollouts.get(r.id);
        throw new RequestError(
          `Rollout ${r.id} changed meanwhile (it is ${now?.state ?? "gone"}); look again and retry.`,
        );
      }
      this.o.logger.info({ rollout: r.id, state: changed.state }, `rollout ${kind}`);
    };
    if (queued) await this.queue.run(r.id, run);
    else await run();
  }

  /** Looks at one rollout now (if this instance can hold it) and returns its view. */
  private async reconcile(id: string): Promise<RolloutView> {
    await this.queue
      .run(id, async () => {
        const held = await this.o.storage.rollouts.claim({
          id,
          owner: this.o.owner,
          now: this.now,
          leaseMs: this.o.leaseMs,
        });
        if (held) await this.tick(held);
      })
      .catch((error: unknown) => {
        // Made (or changed) all the same: another instance took the rollout over and drives it.
        if (!(error instanceof LeaseLostError)) throw error;
        this.o.logger.warn({ rollout: id, err: error.message }, "rollout taken over by another instance");
      });
    this.kick();
    const r = (await this.o.storage.rollouts.get(id)) as RolloutRecord;
    return this.withDelivery(r, rolloutView(r, await this.o.storage.rollouts.snapshot(id)));
  }

  // ---- driving ---------------------------------------------------------------

  private async runDue(): Promise<number> {
    if (this.stopped) return this.o.pollMs;
    const claimed = await this.o.storage.rollouts.claimOpen({
      owner: this.o.owner,
      now: this.now,
      leaseMs: this.o.leaseMs,
      limit: 64,
    });
    for (const r of claimed) {
      if (this.stopped) break;
      await this.queue
        .run(r.id, () => this.tick(r))
        .catch((error: unknown) => {
          if (error instanceof LeaseLostError) {
            this.o.logger.warn(
              { rollout: r.id, err: error.message },
              "rollout taken over by another instance",
            );
            return;
          }
          this.o.logger.error(
            { rollout: r.id, err: (error as Error).stack ?? String(error) },
            "rollout step failed; it will be retried",
          );
        });
    }
    return this.o.pollMs;
  }

  /** One step of a rollout this instance holds. Runs in the rollout's queue. */
  private async tick(held: RolloutRecord): Promise<void> {
    if (this.stopped) return;
    const { storage } = this.o;
    const r = (await storage.rollouts.get(held.id)) ?? held;
    // The rollout's rows are read once a look: what it publishes after its changes is this read
    // with those changes laid over it (a second read cost as much again, every look, in a large rollout).
    const snapshot = await storage.rollouts.snapshot(r.id);
    const devices = runningOfRelease(
      this.o.library.kinds.of(await storage.firmware.get(r.firmwareId)),
      snapshot,
    );
    const names = new Map<string, FirmwareName>(
      (await storage.firmware.list()).map((f) => [f.id, { name: f.name, version: f.version }]),
    );
    const step = planStep({ rollout: r, devices, now: this.now, firmware: names });
    const patches: RolloutDevicePatch[] = [...step.devices];
    const events: NewRolloutEvent[] = [...step.events];
    /** The jobs this look cancelled or gave out, by device: as a fresh read would show them. */
    const jobs = new Map<string, JobRecord>();
    for (const c of step.cancel) {
      try {
        jobs.set(c.deviceId, await this.o.jobs.cancel(c.jobId, "rollout"));
      } catch (error) {
        if (!(error instanceof RequestError)) throw error;
        // The device took the command meanwhile: the push goes ahead, and its outcome is recorded next time.
        this.o.logger.debug({ rollout: r.id, job: c.jobId, reason: error.message }, "job not cancelled");
        continue;
      }
      patches.push(c.patch);
      if (c.event) events.push(c.event);
    }
    for (const s of step.start) {
      const started = await startDevice(this.o, r, s, this.now);
      patches.push(started.patch);
      events.push(started.event);
      if (started.job) jobs.set(s.deviceId, started.job);
    }
    const changed = patches.length > 0 || events.length > 0 || Object.keys(step.patch).length > 0;
    if (!changed) return;
    // Devices first: their outcomes hold whatever the rollout's state is by now.
    if (patches.length > 0 || events.length > 0) {
      await storage.rollouts.update({
        id: r.id,
        owner: this.o.owner,
        now: this.now,
        patch: {},
        devices: patches,
        events,
      });
    }
    if (Object.keys(step.patch).length > 0) {
      const updated = await storage.rollouts.update({
        id: r.id,
        owner: this.o.owner,
        now: this.now,
        expectState: r.state,
        patch: step.patch,
        events: step.stateEvents,
      });
      if (!updated)
        this.o.logger.info({ rollout: r.id }, "rollout changed by a request during its step; looking again");
      else if (updated.state !== r.state) {
        this.o.logger.info(
          { rollout: r.id, state: updated.state, reason: updated.reason },
          `rollout ${updated.state}`,
        );
      }
      this.kick();
    }
    const after = (await storage.rollouts.get(r.id)) as RolloutRecord;
    await this.publish(after, withChanges(snapshot, patches, jobs));
  }

  private async publish(r: RolloutRecord, devices: readonly RolloutDeviceSnapshot[]): Promise<void> {
    await this.o.link.publishJson(this.o.topics.rolloutProgress(r.id), rolloutView(r, devices), {
      retain: true,
    });
  }
}

/**
 * The devices as a rollout of this kind of release sees them: `fw` becomes
 * what they run of that kind (an app rollout compares apps, not firmware).
 */
function runningOfRelease(
  kind: ReleaseKind,
  devices: readonly RolloutDeviceSnapshot[],
): RolloutDeviceSnapshot[] {
  if (!kind.running) return [...devices];
  const running = kind.running;
  return devices.map((d) => {
    if (!d.device) return d;
    // Only the fields the kind reads: an app's id (the snapshot holds no more of the state).
    const seen = running({ fw: d.device.fw ?? "", ...(d.device.app ? { app: { id: d.device.app } } : {}) });
    return { ...d, device: { ...d.device, fw: seen.identity ?? "" } };
  });
}

/**
 * The rollout's devices after a look: the look's read with its device
 * patches and the jobs it cancelled or gave out laid over it, as a read
 * after the look's update shows them (bar jobs another part of the server
 * moved on meanwhile, which the next look publishes).
 */
function withChanges(
  devices: readonly RolloutDeviceSnapshot[],
  patches: readonly RolloutDevicePatch[],
  jobs: ReadonlyMap<string, JobRecord>,
): RolloutDeviceSnapshot[] {
  if (patches.length === 0 && jobs.size === 0) return [...devices];
  const byDevice = new Map<string, RolloutDevicePatch[]>();
  for (const p of patches) byDevice.set(p.deviceId, [...(byDevice.get(p.deviceId) ?? []), p]);
  return devices.map((d) => {
    const own = byDevice.get(d.deviceId);
    const job = jobs.get(d.deviceId);
    if (own === undefined && job === undefined) return d;
    const changed: RolloutDeviceSnapshot = { ...d };
    for (const { deviceId: _, ...fields } of own ?? []) Object.assign(changed, fields);
    if (job !== undefined && changed.jobId === job.id) {
      changed.job = {
        phase: job.phase,
        error: job.error,
        cancelledBy: job.cancelledBy,
        finishedAt: job.finishedAt,
        firmwareId: job.firmwareId,
      };
    } else if (changed.jobId !== d.jobId) {
      // Its job was taken off it (a device whose turn is given back): a read joins no job.
      changed.job = null;
    }
    return changed;
  });
}
