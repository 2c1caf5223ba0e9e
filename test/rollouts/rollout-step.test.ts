import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { planStep, waiveFailures } from "../../src/server/rollouts/rollout-step.ts";
import type {
  RolloutDeviceSnapshot,
  RolloutGroupPlan,
  RolloutRecord,
} from "../../src/server/storage/rollout-store.ts";
import type { JobCanceller, JobPhase } from "../../src/server/storage/types.ts";

// The engine's decisions as a pure function of storage and time: minutes and
// hours of a rollout's life are checked here without waiting for them.

const FW_OLD = "a".repeat(32);
const FW_NEW = "b".repeat(32);
const FW_NEWER = "c".repeat(32);
const FIRMWARE = new Map([
  [FW_OLD, { name: "sensor", version: "1.0" }],
  [FW_NEW, { name: "sensor", version: "2.0" }],
  [FW_NEWER, { name: "sensor", version: "3.0" }],
]);
const T0 = 1_700_000_000_000;

const group = (size: number, extra: Partial<RolloutGroupPlan> = {}): RolloutGroupPlan => ({
  spec: String(size),
  size,
  successThreshold: 100,
  errorThreshold: 20,
  minExecuted: Math.min(size, 5),
  approve: false,
  ...extra,
});

function rollout(groups: RolloutGroupPlan[], extra: Partial<RolloutRecord> = {}): RolloutRecord {
  return {
    id: "r-test",
    name: null,
    firmwareId: FW_NEW,
    firmwareName: "sensor",
    firmwareVersion: "2.0",
    firmwareSize: 1000,
    selector: { kind: "tag", tag: "t" },
    groups,
    gates: groups.map(() => ({ proceed: false, waivedFailed: 0, waivedExecuted: 0 })),
    policy: { maxAttempts: 3, timeoutMs: 60_000, concurrency: 10, allowDowngrade: false, onError: "pause" },
    state: "running",
    pauseKind: null,
    reason: null,
    currentGroup: 0,
    startAt: T0,
    createdAt: T0,
    updatedAt: T0,
    startedAt: T0,
    finishedAt: null,
    leaseOwner: "me",
    leaseExpiresAt: T0 + 1000,
    ...extra,
  };
}

let position = 0;
function device(
  id: string,
  g: number,
  state: RolloutDeviceSnapshot["state"] = "pending",
  o: {
    phase?: JobPhase;
    sleep?: number;
    fw?: string;
    deadlineAt?: number;
    sleepy?: boolean;
    error?: string;
    cancelledBy?: JobCanceller;
  } = {},
): RolloutDeviceSnapshot {
  return {
    rolloutId: "r-test",
    deviceId: id,
    group: g,
    position: position++,
    state,
    jobId: o.phase ? `j-${id}` : null,
    fromFw: FW_OLD,
    sleepy: o.sleepy ?? false,
    turnAt: o.phase ? T0 : null,
    deadlineAt: o.deadlineAt ?? (o.phase ? T0 + 60_000 : null),
    finishedAt: null,
    reason: null,
    job: o.phase
      ? {
          phase: o.phase,
          error: o.error ?? null,
          cancelledBy: o.cancelledBy ?? null,
          finishedAt: T0 + 5000,
          firmwareId: FW_NEW,
        }
      : null,
    device: { fw: o.fw ?? FW_OLD, app: null, sleep: o.sleep ?? 0, lastSeen: T0 },
  };
}

const step = (r: RolloutRecord, devices: RolloutDeviceSnapshot[], now = T0 + 10_000) =>
  planStep({ rollout: r, devices, now, firmware: FIRMWARE });

const statesOf = (result: ReturnType<typeof planStep>) =>
  Object.fromEntries(result.devices.map((d) => [d.deviceId, d.state]));

describe("a rollout's step", () => {
  it("a scheduled rollout waits for its time, then starts and gives the canary its turn", () => {
    const r = rollout([group(1), group(2)], { state: "scheduled", startedAt: null, startAt: T0 + 60_000 });
    const devices = [device("c", 0), device("x", 1), device("y", 1)];
    const early = step(r, devices, T0 + 59_999);
    assert.deepEqual([early.patch, early.start], [{}, []]);
    const due = step(r, devices, T0 + 60_000);
    assert.deepEqual(due.patch, { state: "running", startedAt: T0 + 60_000 });
    assert.deepEqual(
      due.stateEvents.map((e) => e.message),
      ["Rollout started: 3 devices in 2 groups."],
    );
    assert.deepEqual(
      due.start.map((s) => [s.deviceId, s.group, s.deadlineAt]),
      [["c", 0, T0 + 60_000 + 60_000]],
    );
  });

  it("opens the next group only when the current one reached its success threshold", () => {
    const r = rollout([group(1), group(2)]);
    const waiting = step(r, [
      device("c", 0, "scheduled", { phase: "pushing" }),
      device("x", 1),
      device("y", 1),
    ]);
    assert.deepEqual([waiting.patch, waiting.start], [{}, []]);
    const done = step(r, [
      device("c", 0, "scheduled", { phase: "succeeded" }),
      device("x", 1),
      device("y", 1),
    ]);
    assert.deepEqual(statesOf(done), { c: "done" });
    assert.deepEqual(done.patch, { currentGroup: 1 });
    assert.deepEqual(
      done.stateEvents.map((e) => e.message),
      ["Group 2 of 2 (2 devices) started: 2 devices."],
    );
    assert.deepEqual(
      done.start.map((s) => s.deviceId),
      ["x", "y"],
    );
  });

  it("a success threshold below 100 % lets the next group start while stragglers finish", () => {
    const r = rollout([group(4, { successThreshold: 75, errorThreshold: 50 }), group(1)]);
    const devices = [
      device("a", 0, "done"),
      device("b", 0, "done"),
      device("c", 0, "scheduled", { phase: "succeeded" }),
      device("d", 0, "scheduled", { phase: "waiting", sleepy: true, sleep: 3600 }),
      device("e", 1),
    ];
    const result = step(r, devices);
    assert.equal(result.patch.currentGroup, 1);
    assert.deepEqual(
      result.start.map((s) => s.deviceId),
      ["e"],
    );
  });

  it("the error threshold fires once the minimum number of devices finished, above (not at) its share", () => {
    const r = rollout([group(10, { errorThreshold: 20, minExecuted: 5 }), group(10)]);
    const base = (failed: number, done: number) => [
      ...Array.from({ length: failed }, (_, i) => device(`f${i}`, 0, "failed")),
      ...Array.from({ length: done }, (_, i) => device(`d${i}`, 0, "done")),
      ...Array.from({ length: 10 - failed - done }, (_, i) =>
        device(`p${i}`, 0, "scheduled", { phase: "pushing" }),
      ),
    ];
    // Two early failures: not enough finished devices yet to judge.
    assert.equal(step(r, base(2, 2)).patch.state, undefined);
    // 1 of 5 = 20 %: at the threshold, not above it.
    assert.equal(step(r, base(1, 4)).patch.state, undefined);
    // 2 of 5 = 40 %.
    const paused = step(r, base(2, 3));
    assert.equal(paused.patch.state, "paused");
    assert.equal(paused.patch.pauseKind, "errors");
    assert.match(
      paused.patch.reason ?? "",
      /^Group 1 of 2 \(10 devices\): 2 of 5 finished devices failed \(40 %\), above its error threshold of 20 % \(counted from 5 finished\)\./,
    );
    assert.deepEqual(paused.start, []);
  });

  it("crossing the error threshold aborts when the rollout says so, and cancels what devices have not taken", () => {
    const r = rollout([group(3, { minExecuted: 1, errorThreshold: 0 })], {
      policy: { maxAttempts: 3, timeoutMs: 60_000, concurrency: 10, allowDowngrade: false, onError: "abort" },
    });
    const result = step(r, [
      device("a", 0, "scheduled", { phase: "failed", error: "Device a declined." }),
      device("b", 0, "scheduled", { phase: "waiting" }),
      device("c", 0, "scheduled", { phase: "pushing" }),
    ]);
    assert.equal(result.patch.state, "aborted");
    assert.match(result.patch.reason ?? "", /^Aborted: Group 1 of 1 .*Latest: a: Device a declined\.$/);
    assert.deepEqual(
      result.cancel.map((c) => [c.jobId, c.patch.state]),
      [["j-b", "cancelled"]],
    );
    assert.deepEqual(statesOf(result), { a: "failed" });
  });

  it("a device past its timeout fails: its job is cancelled if not taken, else it is overdue until it finishes", () => {
    const r = rollout([group(3, { errorThreshold: 100 })]);
    const now = T0 + 60_000;
    const result = step(
      r,
      [
        device("silent", 0, "scheduled", { phase: "waiting", deadlineAt: now }),
        device("slow", 0, "scheduled", { phase: "verifying", deadlineAt: now }),
        device("fine", 0, "scheduled", { phase: "pushing", deadlineAt: now + 1 }),
      ],
      now,
    );
    assert.deepEqual(
      result.cancel.map((c) => [c.deviceId, c.patch.state]),
      [["silent", "failed"]],
    );
    assert.match(
      result.cancel[0]?.patch.reason ?? "",
      /^Timed out: the device did not take the command within 60 s of its turn \(its job j-silent was waiting and is cancelled\)\.$/,
    );
    assert.deepEqual(statesOf(result), { slow: "overdue" });
    // An overdue device that still succeeds is done after all.
    const later = step(r, [device("slow", 0, "overdue", { phase: "succeeded" })], now + 5000);
    assert.deepEqual(statesOf(later), { slow: "done" });
  });

  it("sleepy devices get their sleep period on top of the timeout, and hold a slot from their command on", () => {
    const r = rollout([group(5)], {
      policy: { maxAttempts: 3, timeoutMs: 60_000, concurrency: 2, allowDowngrade: false, onError: "pause" },
    });
    const result = step(r, [
      device("awake1", 0),
      device("sleepy1", 0, "pending", { sleep: 3600 }),
      device("awake2", 0),
      device("sleepy2", 0, "pending", { sleep: 600 }),
    ]);
    const now = T0 + 10_000;
    assert.deepEqual(
      result.start.map((s) => [s.deviceId, s.sleepy, s.deadlineAt]),
      [
        ["awake1", false, now + 60_000],
        ["sleepy1", true, now + 60_000 + 3_600_000],
      ],
    );
    // Two sleepers waiting for their wake fill a limit of 2: they may wake together and both need a push.
    const asleep = step(r, [
      device("sleepy1", 0, "scheduled", { phase: "waiting", sleepy: true, sleep: 3600 }),
      device("sleepy2", 0, "scheduled", { phase: "waiting", sleepy: true, sleep: 600 }),
      device("awake2", 0),
    ]);
    assert.deepEqual(asleep.start, []);
    // When one of them is done, its slot goes to the next device.
    const freed = step(r, [
      device("sleepy1", 0, "scheduled", { phase: "pushing", sleepy: true, sleep: 3600 }),
      device("sleepy2", 0, "scheduled", { phase: "succeeded", fw: FW_NEW, sleepy: true, sleep: 600 }),
      device("awake2", 0),
    ]);
    assert.deepEqual(
      freed.start.map((s) => s.deviceId),
      ["awake2"],
    );
  });

  it("applies the version policy when a device's turn comes", () => {
    const r = rollout([group(3)]);
    const result = step(r, [
      device("there", 0, "pending", { fw: FW_NEW }),
      device("newer", 0, "pending", { fw: FW_NEWER }),
      device("older", 0),
    ]);
    assert.deepEqual(statesOf(result), { there: "done", newer: "skipped" });
    assert.match(
      result.devices.find((d) => d.deviceId === "newer")?.reason ?? "",
      /^Skipped: newer runs sensor 3\.0, newer than 2\.0 .*does not downgrade without allow-downgrade\.$/,
    );
    assert.deepEqual(
      result.start.map((s) => s.deviceId),
      ["older"],
    );
    const allowed = step(
      rollout([group(1)], {
        policy: { maxAttempts: 3, timeoutMs: 60_000, concurrency: 1, allowDowngrade: true, onError: "pause" },
      }),
      [device("newer", 0, "pending", { fw: FW_NEWER })],
    );
    assert.deepEqual(
      allowed.start.map((s) => s.deviceId),
      ["newer"],
    );
  });

  it("pauses for approval after a group that asks for it, and below the success threshold once the group is over", () => {
    const approval = step(rollout([group(1, { approve: true }), group(1)]), [
      device("c", 0, "done"),
      device("x", 1),
    ]);
    assert.equal(approval.patch.state, "paused");
    assert.equal(approval.patch.pauseKind, "approval");
    assert.match(approval.patch.reason ?? "", /waiting for approval to start group 2 of 2 \(1 device\)/);
    const below = step(rollout([group(4, { successThreshold: 100, errorThreshold: 50 }), group(1)]), [
      device("a", 0, "done"),
      device("b", 0, "done"),
      device("c", 0, "done"),
      device("d", 0, "failed"),
      device("x", 1),
    ]);
    assert.equal(below.patch.state, "paused");
    assert.equal(below.patch.pauseKind, "success");
    assert.match(
      below.patch.reason ?? "",
      /^Group 1 of 2 \(4 devices\) finished with 3 of 4 devices verified \(75 %\), below its success threshold of 100 %\./,
    );
    // Resumed: the group is let through.
    const r = rollout([group(4, { successThreshold: 100, errorThreshold: 50 }), group(1)]);
    r.gates[0] = { proceed: true, waivedFailed: 0, waivedExecuted: 0 };
    const through = step(r, [
      device("a", 0, "done"),
      device("b", 0, "done"),
      device("c", 0, "done"),
      device("d", 0, "failed"),
      device("x", 1),
    ]);
    assert.equal(through.patch.currentGroup, 1);
  });

  it("after resuming from an error pause, only new failures count against the threshold", () => {
    const r = rollout([group(5, { errorThreshold: 20, minExecuted: 2 })]);
    const devices = [device("a", 0, "failed"), device("b", 0, "failed"), device("c", 0), device("d", 0)];
    const e = device("e", 0, "scheduled", { phase: "waiting", sleepy: true, sleep: 3600 });
    r.gates = waiveFailures(r, devices);
    assert.deepEqual(r.gates, [{ proceed: false, waivedFailed: 2, waivedExecuted: 2 }]);
    const calm = step(r, [...devices.slice(0, 2), device("c", 0, "done"), device("d", 0, "done"), e]);
    assert.equal(calm.patch.state, undefined);
    const again = step(r, [...devices.slice(0, 2), device("c", 0, "done"), device("d", 0, "failed"), e]);
    assert.equal(again.patch.state, "paused");
    assert.match(again.patch.reason ?? "", /1 of 2 finished devices failed \(50 %\)/);
  });

  it("paused: commands not taken yet are withdrawn and the devices wait again; nothing new starts", () => {
    const r = rollout([group(3)], { state: "paused", pauseKind: "manual" });
    const result = step(r, [
      device("a", 0, "scheduled", { phase: "waiting" }),
      device("b", 0, "scheduled", { phase: "pushing" }),
      device("c", 0),
    ]);
    assert.deepEqual(
      result.cancel.map((c) => [c.deviceId, c.patch.state, c.patch.jobId]),
      [["a", "pending", null]],
    );
    assert.deepEqual(result.start, []);
    assert.deepEqual(result.patch, {});
  });

  it("aborted: a job cancelled on request fails its device; one the rollout took back is cancelled", () => {
    const r = rollout([group(3)], { state: "aborted", reason: "Aborted by hand." });
    const result = step(r, [
      device("owner", 0, "scheduled", { phase: "cancelled", cancelledBy: "request" }),
      device("taken", 0, "scheduled", { phase: "cancelled", cancelledBy: "rollout" }),
    ]);
    assert.deepEqual(statesOf(result), { owner: "failed", taken: "cancelled" });
  });

  it("paused: a job cancelled on request fails its device; one the rollout took back waits again", () => {
    const r = rollout([group(3)], { state: "paused", pauseKind: "manual" });
    const result = step(r, [
      device("owner", 0, "scheduled", { phase: "cancelled", cancelledBy: "request" }),
      device("taken", 0, "scheduled", { phase: "cancelled", cancelledBy: "rollout" }),
      device("old", 0, "scheduled", { phase: "cancelled" }),
    ]);
    assert.deepEqual(statesOf(result), { owner: "failed", taken: "pending", old: "pending" });
    assert.equal(
      result.devices.find((d) => d.deviceId === "owner")?.reason,
      "Its job j-owner was cancelled outside the rollout.",
    );
    assert.deepEqual(
      result.events.map((e) => [e.kind, e.data?.device]),
      [["device-failed", "owner"]],
    );
  });

  it("completes when the last group passed and no device is open, with a summary", () => {
    const r = rollout([group(1), group(3, { successThreshold: 50, errorThreshold: 50 })], {
      currentGroup: 1,
    });
    const result = step(r, [
      device("c", 0, "done"),
      device("x", 1, "scheduled", { phase: "succeeded" }),
      device("y", 1, "failed"),
      device("z", 1, "skipped"),
    ]);
    assert.equal(result.patch.state, "completed");
    assert.equal(result.patch.reason, "2 of 4 devices verified on sensor 2.0; 1 failed; 1 skipped.");
    assert.equal(result.patch.finishedAt, T0 + 10_000);
  });

  it("a rollout of one device completes saying so in the singular", () => {
    const r = rollout([group(1)]);
    const result = step(r, [device("c", 0, "scheduled", { phase: "succeeded" })]);
    assert.equal(result.patch.state, "completed");
    assert.equal(result.patch.reason, "The one device verified on sensor 2.0.");
  });
});
