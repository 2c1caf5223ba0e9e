import { secondsText } from "../jobs/job-advice.ts";
import { downgradeText, type FirmwareName, versionVerdict } from "../releases/downgrade-policy.ts";
import type {
  NewRolloutEvent,
  RolloutDevicePatch,
  RolloutDeviceSnapshot,
  RolloutDeviceState,
  RolloutGroupGate,
  RolloutPatch,
  RolloutRecord,
  RolloutState,
} from "../storage/rollout-store.ts";
import type { JobPhase } from "../storage/types.ts";

/** Job phases in which the device has not taken the command yet: the job can still be cancelled. */
export const CANCELLABLE_PHASES: readonly JobPhase[] = ["queued", "waiting", "retrying"];
/** Job phases of a device being updated right now (they hold a slot even for a sleepy device). */
export const PUSH_PHASES: readonly JobPhase[] = ["ready", "pushing", "verifying", "recovering"];

export interface StepInput {
  rollout: RolloutRecord;
  devices: readonly RolloutDeviceSnapshot[];
  now: number;
  /** The store's firmware by identity, for the version policy at each device's turn. */
  firmware: ReadonlyMap<string, FirmwareName>;
}

/** A device whose turn has come: the engine creates its job. */
export interface DeviceStart {
  deviceId: string;
  group: number;
  sleepy: boolean;
  fromFw: string;
  /** When its turn came (the step's time: its deadline counts from it). */
  turnAt: number;
  deadlineAt: number;
}

/** A job to cancel; `patch` and `event` are recorded only if the cancel succeeds (the device may just have taken the command). */
export interface JobCancel {
  deviceId: string;
  jobId: string;
  patch: RolloutDevicePatch;
  event: NewRolloutEvent | null;
}

export interface StepResult {
  /** Changes of the rollout itself (empty: none), with their events: stored only if no request changed the rollout meanwhile. */
  patch: RolloutPatch;
  stateEvents: NewRolloutEvent[];
  /** Changes of devices, with their events: outcomes that hold whatever the rollout's state. */
  devices: RolloutDevicePatch[];
  events: NewRolloutEvent[];
  cancel: JobCancel[];
  start: DeviceStart[];
}

/** How many devices of one group are in each stored state. */
export type StateCounts = Record<RolloutDeviceState, number>;

export function emptyStateCounts(): StateCounts {
  return { pending: 0, scheduled: 0, overdue: 0, done: 0, failed: 0, skipped: 0, cancelled: 0 };
}

export function countByGroup(
  groups: number,
  devices: ReadonlyArray<{ group: number; state: RolloutDeviceState }>,
): StateCounts[] {
  const out = Array.from({ length: groups }, emptyStateCounts);
  for (const d of devices) {
    const c = out[d.group];
    if (c) c[d.state]++;
  }
  return out;
}

const pct = (n: number) => `${Number.isInteger(n) ? n : n.toFixed(1)} %`;

export function groupName(rollout: RolloutRecord, index: number): string {
  const g = rollout.groups[index];
  return `Group ${index + 1} of ${rollout.groups.length}${g ? ` (${g.spec === "rest" ? "the rest" : g.spec.endsWith("%") ? g.spec.replace("%", " %") : `${g.spec} device${g.spec === "1" ? "" : "s"}`})` : ""}`;
}

export function isOpen(state: RolloutDeviceState): boolean {
  return state === "pending" || state === "scheduled" || state === "overdue";
}

/** Waivers that accept what happened so far in every started group (resuming after an error pause). */
export function waiveFailures(
  rollout: RolloutRecord,
  devices: ReadonlyArray<{ group: number; state: RolloutDeviceState }>,
): RolloutGroupGate[] {
  const counts = countByGroup(rollout.groups.length, devices);
  return rollout.gates.map((gate, g) => {
    if (g > rollout.currentGroup) return gate;
    const c = counts[g] as StateCounts;
    return {
      ...gate,
      waivedFailed: c.failed + c.overdue,
      waivedExecuted: c.done + c.failed + c.overdue,
    };
  });
}

/**
 * One look at a rollout, as a pure function of what storage holds and the
 * time: records the outcomes of finished jobs, fails devices past their
 * timeout, checks the groups' error and success thresholds, opens the next
 * group, and picks the devices whose turn has come within the concurrency
 * limit. The engine carries the result out (jobs created and cancelled,
 * changes stored); nothing here touches the outside, so every rule can be
 * checked in virtual time.
 */
export function planStep(input: StepInput): StepResult {
  const { rollout: r, now } = input;
  const result: StepResult = { patch: {}, stateEvents: [], devices: [], events: [], cancel: [], start: [] };
  const event = (
    kind: string,
    message: string,
    data: Record<string, unknown> | null = null,
  ): NewRolloutEvent => ({
    at: now,
    kind,
    message,
    data,
  });
  // A working copy: decisions later in the step see the outcomes recorded earlier in it.
  const work = new Map(input.devices.map((d) => [d.deviceId, { ...d }]));
  const stored = new Map(input.devices.map((d) => [d.deviceId, d]));
  const patched = new Map<string, RolloutDevicePatch>();
  const setDevice = (deviceId: string, patch: Omit<RolloutDevicePatch, "deviceId">) => {
    const entry = work.get(deviceId);
    if (entry) Object.assign(entry, patch);
    patched.set(deviceId, { ...patched.get(deviceId), ...patch, deviceId });
  };
  const cancelling = new Set<string>();
  const cancel = (
    d: RolloutDeviceSnapshot,
    patch: Omit<RolloutDevicePatch, "deviceId">,
    ev: NewRolloutEvent | null,
  ) => {
    if (!d.jobId || cancelling.has(d.deviceId)) return;
    cancelling.add(d.deviceId);
    result.cancel.push({
      deviceId: d.deviceId,
      jobId: d.jobId,
      patch: { ...patch, deviceId: d.deviceId },
      event: ev,
    });
    const entry = work.get(d.deviceId);
    if (entry) Object.assign(entry, patch);
  };

  let state: RolloutState = r.state;
  const setState = (next: RolloutState, patch: RolloutPatch, ev: NewRolloutEvent) => {
    state = next;
    Object.assign(result.patch, { state: next, ...patch });
    result.stateEvents.push(ev);
  };

  // 1. A scheduled rollout starts at its time.
  if (state === "scheduled") {
    if (r.startAt > now) return result;
    setState(
      "running",
      { startedAt: now },
      event(
        "started",
        `Rollout started: ${input.devices.length} device${input.devices.length === 1 ? "" : "s"} in ${r.groups.length} group${r.groups.length === 1 ? "" : "s"}.`,
      ),
    );
  }

  // 2. Outcomes of the devices' jobs, and timeouts.
  for (const d of input.devices) {
    if (d.state !== "scheduled" && d.state !== "overdue") continue;
    const job = d.job;
    if (!job) {
      setDevice(d.deviceId, {
        state: "failed",
        finishedAt: now,
        reason: `Its job ${d.jobId ?? "(none)"} is missing from storage.`,
      });
      continue;
    }
    if (job.phase === "succeeded") {
      setDevice(d.deviceId, { state: "done", finishedAt: job.finishedAt ?? now, reason: null });
      result.events.push(
        event("device-done", `${d.deviceId} verified on ${r.firmwareName} ${r.firmwareVersion}.`, {
          device: d.deviceId,
          job: d.jobId,
        }),
      );
    } else if (job.phase === "failed") {
      setDevice(d.deviceId, { state: "failed", finishedAt: job.finishedAt ?? now, reason: job.error });
      result.events.push(
        event("device-failed", `${d.deviceId} failed: ${job.error ?? "no reason given"}`, {
          device: d.deviceId,
          job: d.jobId,
        }),
      );
    } else if (job.phase === "cancelled") {
      // Taken back by a pause or an abort whose own patch was not stored (the server stopped
      // between the two): pending again, or cancelled. A job cancelled on request fails the
      // device whatever the rollout's state, or a resume would give it a new job the owner had
      // just called off.
      const taken = job.cancelledBy !== "request";
      if (state === "paused" && taken) {
        setDevice(d.deviceId, {
          state: "pending",
          jobId: null,
          turnAt: null,
          deadlineAt: null,
          reason: null,
        });
      } else if (state === "aborted" && taken) {
        setDevice(d.deviceId, {
          state: "cancelled",
          finishedAt: now,
          reason: "The rollout was aborted before the device took the command.",
        });
      } else {
        const reason = `Its job ${d.jobId} was cancelled outside the rollout.`;
        setDevice(d.deviceId, { state: "failed", finishedAt: now, reason });
        result.events.push(
          event("device-failed", `${d.deviceId} failed: ${reason}`, { device: d.deviceId, job: d.jobId }),
        );
      }
    } else if (d.state === "scheduled" && d.deadlineAt !== null && now >= d.deadlineAt) {
      const waited = r.policy.timeoutMs;
      const sleep = d.sleepy && d.device ? d.device.sleep : 0;
      const limit = `${secondsText(waited)} of its turn${sleep > 0 ? ` plus its sleep period of ${secondsText(sleep * 1000)}` : ""}`;
      if (CANCELLABLE_PHASES.includes(job.phase)) {
        // Paused or aborted: step 4 takes the command back without counting a failure.
        if (state !== "running") continue;
        const reason = `Timed out: the device did not take the command within ${limit} (its job ${d.jobId} was ${job.phase} and is cancelled).`;
        cancel(
          d,
          { state: "failed", finishedAt: now, reason },
          event("device-failed", `${d.deviceId} failed: ${reason}`, { device: d.deviceId, job: d.jobId }),
        );
      } else {
        const reason = `Timed out: not verified within ${limit}; its job ${d.jobId} is still ${job.phase} and may finish. Counted as failed until then.`;
        setDevice(d.deviceId, { state: "overdue", reason });
        result.events.push(
          event("device-overdue", `${d.deviceId}: ${reason}`, { device: d.deviceId, job: d.jobId }),
        );
      }
    }
  }

  // 3. Error thresholds (every started group), then the current group's success gate.
  let currentGroup = r.currentGroup;
  const gates = r.gates;
  if (state === "running") {
    const counts = countByGroup(r.groups.length, [...work.values()]);
    for (let g = 0; g <= currentGroup && state === "running"; g++) {
      const plan = r.groups[g];
      const c = counts[g];
      const gate = gates[g];
      if (!plan || !c || !gate) continue;
      const executed = c.done + c.failed + c.overdue - gate.waivedExecuted;
      const failed = c.failed + c.overdue - gate.waivedFailed;
      if (executed < plan.minExecuted || failed * 100 <= plan.errorThreshold * executed) continue;
      const latest = [...work.values()]
        .filter((d) => d.group === g && (d.state === "failed" || d.state === "overdue"))
        .sort((a, b) => (b.finishedAt ?? now) - (a.finishedAt ?? now))[0];
      const why = `${groupName(r, g)}: ${failed} of ${executed} finished device${executed === 1 ? "" : "s"} failed (${pct(Math.round((failed * 1000) / executed) / 10)}), above its error threshold of ${pct(plan.errorThreshold)} (counted from ${plan.minExecuted} finished).${latest ? ` Latest: ${latest.deviceId}: ${latest.reason ?? "failed"}` : ""}`;
      if (r.policy.onError === "abort") {
        setState(
          "aborted",
          { pauseKind: null, reason: `Aborted: ${why}`, finishedAt: now },
          event("aborted", `Aborted automatically. ${why}`, { group: g, failed, executed }),
        );
      } else {
        setState(
          "paused",
          {
            pauseKind: "errors",
            reason: `${why} Look at the failed devices (\`mpota rollout show ${r.id}\`); resume to go on anyway, or abort.`,
          },
          event("paused", `Paused automatically. ${why}`, { group: g, failed, executed }),
        );
      }
    }
    while (state === "running") {
      const g = currentGroup;
      const plan = r.groups[g];
      const c = counts[g];
      const gate = gates[g];
      if (!plan || !c || !gate) break;
      const eligible = plan.size - c.skipped;
      const needed = Math.ceil((plan.successThreshold * eligible) / 100);
      const settled = c.pending + c.scheduled + c.overdue === 0;
      const passed = c.done >= needed;
      if (!passed && !(settled && gate.proceed)) {
        if (settled) {
          const share = eligible > 0 ? Math.round((c.done * 1000) / eligible) / 10 : 100;
          const why = `${groupName(r, g)} finished with ${c.done} of ${eligible} device${eligible === 1 ? "" : "s"} verified (${pct(share)}), below its success threshold of ${pct(plan.successThreshold)}.`;
          setState(
            "paused",
            {
              pauseKind: "success",
              reason: `${why} Look at the failed devices (\`mpota rollout show ${r.id}\`); resume to go on anyway, or abort.`,
            },
            event("paused", `Paused automatically. ${why}`, { group: g, done: c.done, eligible }),
          );
        }
        break;
      }
      if (g === r.groups.length - 1) {
        const open = [...work.values()].filter((d) => isOpen(d.state)).length;
        if (open === 0) {
          const total = counts.reduce(
            (sum, k) => sum + k.done + k.failed + k.overdue + k.skipped + k.cancelled,
            0,
          );
          const done = counts.reduce((sum, k) => sum + k.done, 0);
          const failed = counts.reduce((sum, k) => sum + k.failed, 0);
          const skipped = counts.reduce((sum, k) => sum + k.skipped, 0);
          const summary =
            done === total
              ? `${total === 1 ? "The one device" : `All ${total} devices`} verified on ${r.firmwareName} ${r.firmwareVersion}.`
              : `${done} of ${total} devices verified on ${r.firmwareName} ${r.firmwareVersion}${failed > 0 ? `; ${failed} failed` : ""}${skipped > 0 ? `; ${skipped} skipped` : ""}.`;
          setState(
            "completed",
            { pauseKind: null, reason: summary, finishedAt: now },
            event("completed", summary, { done, failed, skipped }),
          );
        }
        break;
      }
      if (plan.approve && !gate.proceed) {
        const why = `${groupName(r, g)} reached its success threshold (${c.done} of ${eligible} verified); waiting for approval to start ${groupName(r, g + 1).toLowerCase()}.`;
        setState(
          "paused",
          { pauseKind: "approval", reason: `${why} Resume to approve: \`mpota rollout resume ${r.id}\`.` },
          event("paused", why, { group: g }),
        );
        break;
      }
      currentGroup = g + 1;
      result.patch.currentGroup = currentGroup;
      const next = r.groups[currentGroup];
      result.stateEvents.push(
        event(
          "group-started",
          `${groupName(r, currentGroup)} started: ${next?.size ?? 0} device${next?.size === 1 ? "" : "s"}.`,
          { group: currentGroup },
        ),
      );
    }
  }

  // 4. Paused or aborted: jobs the devices have not taken yet are cancelled (pending again, or cancelled).
  if (state === "paused" || state === "aborted") {
    for (const d of work.values()) {
      if (
        d.state === "scheduled" &&
        d.job &&
        CANCELLABLE_PHASES.includes(d.job.phase) &&
        !cancelling.has(d.deviceId)
      ) {
        const original = stored.get(d.deviceId) as RolloutDeviceSnapshot;
        if (state === "paused") {
          cancel(
            original,
            { state: "pending", jobId: null, turnAt: null, deadlineAt: null, sleepy: false, reason: null },
            null,
          );
        } else {
          cancel(
            original,
            {
              state: "cancelled",
              finishedAt: now,
              reason: "The rollout was aborted before the device took the command.",
            },
            null,
          );
        }
      }
      if (state === "aborted" && d.state === "pending") {
        setDevice(d.deviceId, {
          state: "cancelled",
          finishedAt: now,
          reason: "The rollout was aborted before the device's turn.",
        });
      }
    }
  }

  // 5. Running: the devices whose turn has come, within the concurrency limit.
  if (state === "running") {
    const target = { id: r.firmwareId, name: r.firmwareName, version: r.firmwareVersion };
    // A device holds a slot from its job's creation to its end. That includes a
    // sleeper waiting for its wake: its command is retained, so it may wake and
    // need a push at any moment, together with others; counting it keeps the
    // limit a hard bound on pushes at once.
    let inFlight = 0;
    for (const d of work.values()) if (d.state === "scheduled" || d.state === "overdue") inFlight++;
    let slots = r.policy.concurrency - inFlight;
    for (const d of input.devices) {
      const w = work.get(d.deviceId);
      if (w?.state !== "pending" || w.group > currentGroup) continue;
      const dev = d.device;
      if (!dev || dev.fw === null) {
        const reason = "The device is no longer known to the server (no state stored).";
        setDevice(d.deviceId, { state: "failed", finishedAt: now, reason });
        result.events.push(event("device-failed", `${d.deviceId} failed: ${reason}`, { device: d.deviceId }));
        continue;
      }
      const verdict = versionVerdict(dev.fw, input.firmware.get(dev.fw), target);
      if (verdict.kind === "already") {
        setDevice(d.deviceId, {
          state: "done",
          finishedAt: now,
          fromFw: dev.fw,
          reason: `Already ran ${r.firmwareName} ${r.firmwareVersion} when its turn came.`,
        });
        result.events.push(
          event("device-done", `${d.deviceId} already runs ${r.firmwareName} ${r.firmwareVersion}.`, {
            device: d.deviceId,
          }),
        );
        continue;
      }
      if (verdict.kind === "downgrade" && !r.policy.allowDowngrade) {
        const reason = `Skipped: ${downgradeText(d.deviceId, verdict.from, target)} (it was updated since the rollout was created); the rollout does not downgrade without allow-downgrade.`;
        setDevice(d.deviceId, { state: "skipped", finishedAt: now, fromFw: dev.fw, reason });
        result.events.push(event("device-skipped", reason, { device: d.deviceId }));
        continue;
      }
      const sleepy = dev.sleep > 0;
      if (slots <= 0) continue;
      slots--;
      result.start.push({
        deviceId: d.deviceId,
        group: d.group,
        sleepy,
        fromFw: dev.fw,
        turnAt: now,
        deadlineAt: now + r.policy.timeoutMs + (sleepy ? dev.sleep * 1000 : 0),
      });
    }
  }

  result.devices = [...patched.values()];
  return result;
}
