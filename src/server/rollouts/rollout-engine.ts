import { randomBytes } from "node:crypto";
import type { Logger } from "pino";
import type { Clock } from "../../net/clock.ts";
import { shorten } from "../../protocol/mqtt-contract.ts";
import type { RolloutDetail, RolloutView } from "../api/rollout-api.ts";
import type { Topics } from "../api/topics.ts";
import { KeyedQueue } from "../base/keyed-queue.ts";
import { RequestError } from "../base/request-error.ts";
import type { JobCreateOptions } from "../jobs/job-request.ts";
import { DueScheduler } from "../jobs/job-scheduler.ts";
import { releaseOnStop } from "../jobs/stop-release.ts";
import type { MqttLink } from "../mqtt/mqtt-link.ts";
import type { FirmwareName } from "../releases/downgrade-policy.ts";
import { FirmwareIntegrityError } from "../releases/firmware-files.ts";
import type { FirmwareLibrary } from "../releases/firmware-library.ts";
import type {
  NewRolloutEvent,
  RolloutDevicePatch,
  RolloutDeviceSnapshot,
  RolloutRecord,
  RolloutState,
} from "../storage/rollout-store.ts";
import { type JobRecord, LeaseLostError, type Storage } from "../storage/storage.ts";
import { type Candidate, planRollout } from "./rollout-plan.ts";
import { parseRolloutRequest } from "./rollout-request.ts";
import { type DeviceStart, groupName, planStep, waiveFailures } from "./rollout-step.ts";
import { rolloutDetail, rolloutView } from "./rollout-views.ts";

/** What a rollout needs of the job runner: it creates and cancels the per-device jobs, and nothing else. */
export interface RolloutJobs {
  create(deviceId: string, firmwareRef: string, options: JobCreateOptions): Promise<JobRecord>;
  cancel(jobId: string): Promise<JobRecord>;
}

export interface RolloutEngineOptions {
  storage: Storage;
  library: FirmwareLibrary;
  jobs: RolloutJobs;
  link: MqttLink;
  topics: Topics;
  /** Wall clock (times are stored). */
  clock: Clock;
  logger: Logger;
  /** This instance's name in leases. */
  owner: string;
  leaseMs: number;
  /** How often open rollouts are looked at. */
  pollMs: number;
  /** Tries per device when a rollout does not say (the server's default). */
  maxAttempts: number;
  /** Why this server cannot push (no signing key), or undefined when it can. */
  refusal?: string;
}

const ACTIVE: readonly RolloutState[] = ["scheduled", "running", "paused"];

/**
 * Drives rollouts: a feature with start() and stop(), over storage and the
 * job runner. Every look at a rollout (under its lease, so one instance at
 * a time drives it) records finished jobs, applies timeouts and
 * thresholds, opens groups and creates the jobs of devices whose turn has
 * come; the job runner does each update. Nothing lives only in memory: a
 * restarted server picks every rollout up where storage says it is.
 */
export class RolloutEngine {
  private readonly queue = new KeyedQueue();
  private readonly scheduler: DueScheduler;
  private stopped = true;

  constructor(private readonly o: RolloutEngineOptions) {
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

  async start(): Promise<void> {
    this.stopped = false;
    // The embedded broker forgets retained messages when it restarts: publish the active rollouts' progress again.
    await this.republish();
    this.scheduler.start();
  }

  async republish(): Promise<void> {
    for (const r of await this.o.storage.rollouts.list({ active: true })) {
      await this.publish(r, await this.o.storage.rollouts.snapshot(r.id));
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.scheduler.stop();
    await this.queue.idle();
    await releaseOnStop(() => this.o.storage.rollouts.releaseAll(this.o.owner), this.o.logger, "rollout");
  }

  /** Looks at every rollout at once (after a request, or in tests). */
  kick(): void {
    this.scheduler.kick(0);
  }

  // ---- requests -------------------------------------------------------------

  async create(request: Record<string, unknown>): Promise<RolloutView> {
    if (this.o.refusal) throw new RequestError(this.o.refusal);
    const input = parseRolloutRequest(request);
    const firmware = await this.o.library.resolve(input.firmware);
    try {
      await this.o.library.readImage(firmware.id);
    } catch (error) {
      if (error instanceof FirmwareIntegrityError) throw new RequestError(error.message);
      throw error;
    }
    const store = await this.o.storage.firmware.list();
    const names = new Map<string, FirmwareName>(
      store.map((f) => [f.id, { name: f.name, version: f.version }]),
    );
    const known = new Map(
      (await this.o.storage.devices.list()).flatMap((d) =>
        d.state ? [[d.id, { id: d.id, fw: d.state.fw, sleep: d.state.sleep ?? 0 } as Candidate]] : [],
      ),
    );
    let candidates: Candidate[];
    const sel = input.selector;
    if (sel.kind === "devices") {
      const unknown = sel.devices.filter((id) => !known.has(id));
      if (unknown.length > 0) {
        throw new RequestError(
          `${
            unknown.length === 1
              ? `No device "${shorten(unknown[0] as string)}" has reported its state`
              : `No devices ${unknown
                  .slice(0, 5)
                  .map((u) => `"${shorten(u)}"`)
                  .join(
                    ", ",
                  )}${unknown.length > 5 ? ` and ${unknown.length - 5} more` : ""} have reported their state`
          } to this server. Check the ids (\`mpota devices\` lists the known ones).`,
        );
      }
      candidates = sel.devices.map((id) => known.get(id) as Candidate);
    } else if (sel.kind === "tag") {
      candidates = (await this.o.storage.tags.devicesWith(sel.tag)).flatMap((id) => known.get(id) ?? []);
      if (candidates.length === 0) {
        throw new RequestError(
          `No device that reported its state carries the tag "${sel.tag}". Tag devices with \`mpota rollout tag DEVICE ${sel.tag}\` (bridge request device/tags).`,
        );
      }
    } else {
      candidates = [...known.values()].filter((c) => names.get(c.fw)?.name === sel.line);
      if (candidates.length === 0) {
        throw new RequestError(
          `No device runs a firmware of the line "${shorten(sel.line)}" (a firmware in the store with that name). \`mpota firmware list\` shows the lines and how many devices run each.`,
        );
      }
    }
    const now = this.now;
    const target = { id: firmware.id, name: firmware.name, version: firmware.version };
    const plan = planRollout(input, target, candidates, names, now);
    const id = `r-${randomBytes(5).toString("hex")}`;
    const groups = plan.groups.map((g) => g.size).join(" + ");
    const result = await this.o.storage.rollouts.create(
      {
        id,
        name: input.name,
        firmwareId: firmware.id,
        firmwareName: firmware.name,
        firmwareVersion: firmware.version,
        firmwareSize: firmware.size,
        selector: input.selector,
        groups: plan.groups,
        gates: plan.groups.map(() => ({ proceed: false, waivedFailed: 0, waivedExecuted: 0 })),
        policy: {
          maxAttempts: input.retries !== undefined ? input.retries + 1 : this.o.maxAttempts,
          timeoutMs: input.timeoutMs,
          concurrency: input.concurrency,
          allowDowngrade: input.allowDowngrade,
          onError: input.onError,
        },
        state: "scheduled",
        currentGroup: 0,
        startAt: input.startAt ?? now,
        createdAt: now,
      },
      plan.devices,
      {
        at: now,
        kind: "created",
        message: `Rollout of ${firmware.name} ${firmware.version} to ${plan.devices.length} device${plan.devices.length === 1 ? "" : "s"} created: groups of ${groups}${plan.already > 0 ? `; ${plan.already} already on it` : ""}${input.startAt !== undefined && input.startAt > now ? `; starts ${new Date(input.startAt).toISOString()}` : ""}.`,
        data: { devices: plan.devices.length, groups: plan.groups.map((g) => g.size), already: plan.already },
      },
    );
    if (!result.ok) {
      const byRollout = new Map<string, string[]>();
      for (const c of result.conflicts) {
        const key = `${c.rolloutId}${c.rolloutName ? ` ("${c.rolloutName}")` : ""}`;
        byRollout.set(key, [...(byRollout.get(key) ?? []), c.deviceId]);
      }
      const parts = [...byRollout.entries()].map(
        ([rollout, devices]) =>
          `${devices.slice(0, 5).join(", ")}${devices.length > 5 ? ` and ${devices.length - 5} more` : ""} ${devices.length === 1 ? "is" : "are"} in active rollout ${rollout}`,
      );
      const first = result.conflicts[0]?.rolloutId;
      throw new RequestError(
        `Refused: a device can be in only one active rollout, and ${parts.join("; ")}. Wait for it to end, abort it (\`mpota rollout abort ${first}\`), or leave those devices out.`,
      );
    }
    this.o.logger.info(
      { rollout: id, firmware: firmware.id, devices: plan.devices.length, groups: plan.groups.length },
      "rollout created",
    );
    return this.reconcile(id);
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
    return Promise.all(
      rollouts.map(async (r) => rolloutView(r, await this.o.storage.rollouts.snapshot(r.id))),
    );
  }

  async show(ref: unknown, events: number): Promise<RolloutDetail> {
    const r = await this.resolve(ref);
    const [devices, log] = await Promise.all([
      this.o.storage.rollouts.snapshot(r.id),
      this.o.storage.rollouts.events(r.id, events),
    ]);
    return rolloutDetail(r, devices, log);
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
        `Rollout ${r.id} has ended (${r.state}${r.reason ? `: ${r.reason}` : ""}); there is nothing to ${what}.`,
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
    return rolloutView(r, await this.o.storage.rollouts.snapshot(id));
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
    const devices = await storage.rollouts.snapshot(r.id);
    const names = new Map<string, FirmwareName>(
      (await storage.firmware.list()).map((f) => [f.id, { name: f.name, version: f.version }]),
    );
    const step = planStep({ rollout: r, devices, now: this.now, firmware: names });
    const patches: RolloutDevicePatch[] = [...step.devices];
    const events: NewRolloutEvent[] = [...step.events];
    for (const c of step.cancel) {
      try {
        await this.o.jobs.cancel(c.jobId);
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
      const started = await this.startDevice(r, s);
      patches.push(started.patch);
      events.push(started.event);
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
    await this.publish(after, await storage.rollouts.snapshot(r.id));
  }

  /** Gives a device its turn: a job of its own (or the job it already has for the same firmware). */
  private async startDevice(
    r: RolloutRecord,
    s: DeviceStart,
  ): Promise<{ patch: RolloutDevicePatch; event: NewRolloutEvent }> {
    const now = this.now;
    const group = s.group;
    const scheduled = (job: JobRecord, message: string) => ({
      patch: {
        deviceId: s.deviceId,
        state: "scheduled" as const,
        jobId: job.id,
        turnAt: s.turnAt,
        deadlineAt: s.deadlineAt,
        sleepy: s.sleepy,
        fromFw: s.fromFw,
        reason: null,
      },
      event: { at: now, kind: "device-turn", message, data: { device: s.deviceId, job: job.id, group } },
    });
    const failed = (reason: string) => ({
      patch: { deviceId: s.deviceId, state: "failed" as const, finishedAt: now, fromFw: s.fromFw, reason },
      event: {
        at: now,
        kind: "device-failed",
        message: `${s.deviceId} failed: ${reason}`,
        data: { device: s.deviceId },
      },
    });
    const active = await this.o.storage.jobs.activeForDevice(s.deviceId);
    if (active) {
      if (active.firmwareId === r.firmwareId) {
        return scheduled(
          active,
          `${s.deviceId}: its turn; it already had job ${active.id} to the same firmware, which the rollout follows.`,
        );
      }
      return failed(
        `It has job ${active.id} (${active.phase}) to ${active.firmwareName} ${active.firmwareVersion}, not this rollout's firmware. Cancel that job (\`mpota jobs cancel ${active.id}\`) or let it finish; the device was not updated by this rollout.`,
      );
    }
    try {
      const job = await this.o.jobs.create(s.deviceId, r.firmwareId, {
        maxAttempts: r.policy.maxAttempts,
        origin: `rollout ${r.id}, ${groupName(r, group).toLowerCase()}`,
        rollout: r.id,
        allowDowngrade: r.policy.allowDowngrade,
      });
      return scheduled(
        job,
        `${s.deviceId}: its turn; job ${job.id}${s.sleepy ? " (sleepy: it takes the command at its next wake)" : ""}.`,
      );
    } catch (error) {
      if (!(error instanceof RequestError)) throw error;
      // Another instance gave the device its turn at the same moment (this one's lease ran out
      // mid-step): follow that job rather than fail the device.
      const raced = await this.o.storage.jobs.activeForDevice(s.deviceId);
      if (raced?.firmwareId === r.firmwareId)
        return scheduled(raced, `${s.deviceId}: its turn; job ${raced.id}.`);
      return failed(error.message);
    }
  }

  private async publish(r: RolloutRecord, devices: readonly RolloutDeviceSnapshot[]): Promise<void> {
    await this.o.link.publishJson(this.o.topics.rolloutProgress(r.id), rolloutView(r, devices), {
      retain: true,
    });
  }
}
