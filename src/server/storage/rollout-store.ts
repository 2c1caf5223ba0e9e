import type { HeldLease, JobCanceller, JobPhase } from "./types.ts";

/**
 * What the server keeps about rollouts and device tags, as part of the
 * {@link Storage} interface. Same rules as the rest of storage: every
 * method is atomic, and rollouts are driven by the holder of their lease,
 * so several server instances can share one store.
 */

// ---- device tags ----------------------------------------------------------

export interface DeviceTagStore {
  /** Replaces a device's tags (an empty list removes them all). */
  set(deviceId: string, tags: readonly string[]): Promise<string[]>;
  /** A device's tags, sorted. */
  get(deviceId: string): Promise<string[]>;
  /** Every device carrying `tag`, sorted by id. */
  devicesWith(tag: string): Promise<string[]>;
  /** Tags of every tagged device. */
  all(): Promise<Map<string, string[]>>;
}

// ---- rollouts -------------------------------------------------------------

/**
 * Where a rollout is. Active (a device can be in only one active rollout):
 * scheduled, running, paused. Ended: completed, aborted.
 */
export type RolloutState = "scheduled" | "running" | "paused" | "completed" | "aborted";

export const ACTIVE_ROLLOUT_STATES: readonly RolloutState[] = ["scheduled", "running", "paused"];

/** Why a rollout is paused: by hand, an error threshold crossed, a group's success threshold not reached, or a group waiting for approval. */
export type PauseKind = "manual" | "errors" | "success" | "approval";

/** Which devices a rollout is for. Exactly one kind. */
export type RolloutSelector =
  | { kind: "devices"; devices: string[] }
  | { kind: "tag"; tag: string }
  | { kind: "line"; line: string };

/** One group as planned at creation: its members are fixed then. */
export interface RolloutGroupPlan {
  /** How it was asked for: "1", "10%", "rest". */
  spec: string;
  size: number;
  /** Share (0-100) of the group that must be verified before the next group starts. */
  successThreshold: number;
  /** Share (0-100) of failures among the executed devices above which the rollout stops. */
  errorThreshold: number;
  /** The error threshold applies once at least this many devices of the group have finished. */
  minExecuted: number;
  /** After this group succeeds, wait for a person's approval before the next one. */
  approve: boolean;
}

/** What was let through for a group by resuming a paused rollout. */
export interface RolloutGroupGate {
  /** The next group may start even though this one is below its success threshold or waits for approval. */
  proceed: boolean;
  /** Failures and executed devices already accepted: the error threshold counts only what came after. */
  waivedFailed: number;
  waivedExecuted: number;
}

export interface RolloutPolicy {
  /** Tries per device (the job's limit). */
  maxAttempts: number;
  /** A device that has not finished this long after its turn began counts as failed (sleepy devices: plus their sleep period). */
  timeoutMs: number;
  /** Devices of the rollout being updated at once (sleepy devices count from the moment they take the command). */
  concurrency: number;
  allowDowngrade: boolean;
  /** An app rollout replaces apps of another name (absent: it leaves such boards out). */
  replaceApp?: boolean;
  /** What crossing an error threshold does. */
  onError: "pause" | "abort";
}

export interface RolloutRecord {
  id: string;
  name: string | null;
  firmwareId: string;
  firmwareName: string;
  firmwareVersion: string;
  firmwareSize: number;
  selector: RolloutSelector;
  groups: RolloutGroupPlan[];
  gates: RolloutGroupGate[];
  policy: RolloutPolicy;
  state: RolloutState;
  pauseKind: PauseKind | null;
  /** Why it is paused, aborted or completed, in words. */
  reason: string | null;
  /** Index of the newest group that has started (groups before it stay open for their stragglers). */
  currentGroup: number;
  /** When it starts (scheduled). */
  startAt: number;
  createdAt: number;
  updatedAt: number;
  startedAt: number | null;
  finishedAt: number | null;
  leaseOwner: string | null;
  leaseExpiresAt: number | null;
}

export type NewRollout = Omit<
  RolloutRecord,
  "updatedAt" | "startedAt" | "finishedAt" | "leaseOwner" | "leaseExpiresAt" | "pauseKind" | "reason"
>;

/**
 * Where one device of a rollout is.
 * - pending: its turn has not come (its group has not started, or no slot was free);
 * - scheduled: it has a job (jobId);
 * - overdue: its timeout passed while its job was past the point of cancelling (being pushed or verified);
 *   counted as failed unless the job still succeeds;
 * - done: verified on the target (or already ran it);
 * - failed, skipped (not updated on purpose: a newer firmware and no allow-downgrade), cancelled (aborted).
 */
export type RolloutDeviceState =
  | "pending"
  | "scheduled"
  | "overdue"
  | "done"
  | "failed"
  | "skipped"
  | "cancelled";

export interface RolloutDeviceRecord {
  rolloutId: string;
  deviceId: string;
  group: number;
  /** Order within the rollout. */
  position: number;
  state: RolloutDeviceState;
  jobId: string | null;
  /** The firmware the device ran when its turn came (or at creation). */
  fromFw: string | null;
  /** Whether the device slept when its turn came (it takes the command at its next wake). */
  sleepy: boolean;
  turnAt: number | null;
  deadlineAt: number | null;
  finishedAt: number | null;
  reason: string | null;
}

export type NewRolloutDevice = Pick<RolloutDeviceRecord, "deviceId" | "group" | "position" | "fromFw"> & {
  state: "pending" | "done";
  reason: string | null;
  finishedAt: number | null;
};

/** A device of a rollout with what the engine needs to decide: its job and its last report. */
export interface RolloutDeviceSnapshot extends RolloutDeviceRecord {
  job: {
    phase: JobPhase;
    error: string | null;
    cancelledBy: JobCanceller | null;
    finishedAt: number | null;
    firmwareId: string;
  } | null;
  /** `app`: the app release it reports (contract v3: its manifest's SHA-256), for a rollout of an app. */
  device: { fw: string | null; app: string | null; sleep: number; lastSeen: number } | null;
}

export type RolloutDevicePatch = { deviceId: string } & Partial<
  Pick<
    RolloutDeviceRecord,
    "state" | "jobId" | "fromFw" | "sleepy" | "turnAt" | "deadlineAt" | "finishedAt" | "reason"
  >
>;

export type RolloutPatch = Partial<
  Pick<
    RolloutRecord,
    "state" | "pauseKind" | "reason" | "currentGroup" | "gates" | "startedAt" | "finishedAt"
  >
>;

export interface RolloutEvent {
  seq: number;
  rolloutId: string;
  at: number;
  /** A stable word: created, started, group-started, device-done, device-failed, paused, resumed, aborted, completed, ... */
  kind: string;
  message: string;
  data: Record<string, unknown> | null;
}

export type NewRolloutEvent = Omit<RolloutEvent, "seq" | "rolloutId">;

/** A device the new rollout wanted that an active rollout already has. */
export interface RolloutConflict {
  deviceId: string;
  rolloutId: string;
  rolloutName: string | null;
}

export type RolloutCreateResult =
  | { ok: true; rollout: RolloutRecord }
  | { ok: false; conflicts: RolloutConflict[] };

export interface RolloutStore {
  /**
   * Stores a rollout with its devices, unless one of them is in another
   * active rollout (checked in the same transaction).
   */
  create(
    rollout: NewRollout,
    devices: NewRolloutDevice[],
    event: NewRolloutEvent,
  ): Promise<RolloutCreateResult>;
  get(id: string): Promise<RolloutRecord | undefined>;
  /** Newest first. */
  list(filter?: { active?: boolean; limit?: number }): Promise<RolloutRecord[]>;
  /** The rollout's devices in order, with their jobs and last reports. */
  snapshot(id: string): Promise<RolloutDeviceSnapshot[]>;
  /** Newest first. */
  events(id: string, limit: number): Promise<RolloutEvent[]>;
  /**
   * Leases rollouts that need driving (active, or ended with devices still
   * being updated) whose lease is free, expired or the owner's.
   */
  claimOpen(input: { owner: string; now: number; leaseMs: number; limit: number }): Promise<RolloutRecord[]>;
  /** Leases one rollout if free, expired or already the owner's. */
  claim(input: {
    id: string;
    owner: string;
    now: number;
    leaseMs: number;
  }): Promise<RolloutRecord | undefined>;
  /**
   * Changes a rollout the owner holds, its devices, and appends events, in
   * one transaction. With `expectState`, nothing changes (undefined is
   * returned) when the state is another one by now (a request changed it).
   * Throws LeaseLostError when the owner does not hold the lease.
   */
  update(input: {
    id: string;
    owner: string;
    now: number;
    expectState?: RolloutState;
    patch: RolloutPatch;
    devices?: RolloutDevicePatch[];
    events?: NewRolloutEvent[];
  }): Promise<RolloutRecord | undefined>;
  /**
   * A request's state change (pause, resume, abort), made whoever holds the
   * lease: only when the state is one of `from`. Returns the changed
   * rollout, or undefined (with nothing changed) when it was not.
   */
  transition(input: {
    id: string;
    from: readonly RolloutState[];
    now: number;
    patch: RolloutPatch;
    event: NewRolloutEvent;
  }): Promise<RolloutRecord | undefined>;
  release(input: { id: string; owner: string }): Promise<void>;
  releaseAll(owner: string): Promise<number>;
  /** The leases held at `now` (not expired). */
  leases(now: number): Promise<HeldLease[]>;
}
