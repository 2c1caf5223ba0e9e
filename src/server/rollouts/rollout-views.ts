import type {
  RolloutCounts,
  RolloutDetail,
  RolloutDeviceStatus,
  RolloutDeviceView,
  RolloutEventView,
  RolloutGroupView,
  RolloutView,
} from "../api/rollout-api.ts";
import type { RolloutDeviceSnapshot, RolloutEvent, RolloutRecord } from "../storage/rollout-store.ts";
import { PUSH_PHASES } from "./rollout-step.ts";

/** Rollouts as the API shows them: pure functions, one source for the bridge, the CLI and any other client. */

export function emptyCounts(): RolloutCounts {
  return {
    total: 0,
    pending: 0,
    scheduled: 0,
    pushing: 0,
    verifying: 0,
    done: 0,
    failed: 0,
    overdue: 0,
    skipped: 0,
    cancelled: 0,
  };
}

/** Where a device is, for people: the stored state, split by its job's phase while it has one. */
export function deviceStatus(d: RolloutDeviceSnapshot): RolloutDeviceStatus {
  if (d.state !== "scheduled") return d.state;
  const phase = d.job?.phase;
  if (phase === "verifying") return "verifying";
  if (phase !== undefined && PUSH_PHASES.includes(phase)) return "pushing";
  return "scheduled";
}

export function rolloutView(r: RolloutRecord, devices: readonly RolloutDeviceSnapshot[]): RolloutView {
  const counts = emptyCounts();
  const groupCounts = r.groups.map(() => emptyCounts());
  for (const d of devices) {
    const status = deviceStatus(d);
    counts[status]++;
    counts.total++;
    const g = groupCounts[d.group];
    if (g) {
      g[status]++;
      g.total++;
    }
  }
  const groups: RolloutGroupView[] = r.groups.map((g, index) => {
    const c = groupCounts[index] ?? emptyCounts();
    const open = c.pending + c.scheduled + c.pushing + c.verifying + c.overdue;
    const started = index <= r.currentGroup && r.startedAt !== null;
    return {
      index,
      spec: g.spec,
      size: g.size,
      successThreshold: g.successThreshold,
      errorThreshold: g.errorThreshold,
      minExecuted: g.minExecuted,
      approve: g.approve,
      state: open === 0 && (started || r.finishedAt !== null) ? "finished" : started ? "running" : "waiting",
      counts: c,
    };
  });
  return {
    id: r.id,
    name: r.name,
    firmware: { id: r.firmwareId, name: r.firmwareName, version: r.firmwareVersion, size: r.firmwareSize },
    selector: r.selector,
    state: r.state,
    pauseKind: r.pauseKind,
    reason: r.reason,
    currentGroup: r.currentGroup,
    policy: {
      maxAttempts: r.policy.maxAttempts,
      timeout: r.policy.timeoutMs / 1000,
      concurrency: r.policy.concurrency,
      allowDowngrade: r.policy.allowDowngrade,
      ...(r.policy.replaceApp ? { replaceApp: true } : {}),
      onError: r.policy.onError,
    },
    startAt: r.startAt,
    createdAt: r.createdAt,
    updatedAt: r.updatedAt,
    startedAt: r.startedAt,
    finishedAt: r.finishedAt,
    groups,
    counts,
  };
}

export function rolloutDeviceView(d: RolloutDeviceSnapshot): RolloutDeviceView {
  return {
    device: d.deviceId,
    group: d.group,
    status: deviceStatus(d),
    job: d.jobId,
    jobState: d.job?.phase ?? null,
    fromFw: d.fromFw,
    sleepy: d.sleepy,
    turnAt: d.turnAt,
    deadlineAt: d.deadlineAt,
    finishedAt: d.finishedAt,
    reason: d.reason,
  };
}

export function rolloutEventView(e: RolloutEvent): RolloutEventView {
  return { at: e.at, kind: e.kind, message: e.message, data: e.data };
}

export function rolloutDetail(
  r: RolloutRecord,
  devices: readonly RolloutDeviceSnapshot[],
  events: readonly RolloutEvent[],
): RolloutDetail {
  return {
    ...rolloutView(r, devices),
    devices: devices.map(rolloutDeviceView),
    events: events.map(rolloutEventView),
  };
}
