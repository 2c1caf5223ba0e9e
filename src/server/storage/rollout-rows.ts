import { asIs, type PatchColumns } from "./patch-columns.ts";
import type {
  NewRollout,
  NewRolloutEvent,
  PauseKind,
  RolloutConflict,
  RolloutDevicePatch,
  RolloutDeviceRecord,
  RolloutDeviceSnapshot,
  RolloutDeviceState,
  RolloutEvent,
  RolloutPatch,
  RolloutRecord,
  RolloutState,
} from "./rollout-store.ts";
import type { JobCanceller, JobPhase } from "./types.ts";

/**
 * The rows of the rollout tables as records and back, for both backends.
 * SQLite gives `sleepy` as 0/1, PostgreSQL as a boolean.
 */

type Row = Record<string, unknown>;

export function rolloutFromRow(row: Row): RolloutRecord {
  return {
    id: row.id as string,
    name: row.name as string | null,
    firmwareId: row.firmware_id as string,
    firmwareName: row.firmware_name as string,
    firmwareVersion: row.firmware_version as string,
    firmwareSize: row.firmware_size as number,
    selector: JSON.parse(row.selector as string),
    groups: JSON.parse(row.groups as string),
    gates: JSON.parse(row.gates as string),
    policy: JSON.parse(row.policy as string),
    state: row.state as RolloutState,
    pauseKind: row.pause_kind as PauseKind | null,
    reason: row.reason as string | null,
    currentGroup: row.current_group as number,
    startAt: row.start_at as number,
    createdAt: row.created_at as number,
    updatedAt: row.updated_at as number,
    startedAt: row.started_at as number | null,
    finishedAt: row.finished_at as number | null,
    leaseOwner: row.lease_owner as string | null,
    leaseExpiresAt: row.lease_expires_at as number | null,
  };
}

/** A new rollout's values for `INSERT INTO rollouts (ROLLOUT_INSERT_COLUMNS)`, created_at last. */
export const ROLLOUT_INSERT_COLUMNS =
  "id, name, firmware_id, firmware_name, firmware_version, firmware_size, selector, groups, gates, policy, state, current_group, start_at, created_at";

export function rolloutValues(rollout: NewRollout): Array<string | number | null> {
  return [
    rollout.id,
    rollout.name,
    rollout.firmwareId,
    rollout.firmwareName,
    rollout.firmwareVersion,
    rollout.firmwareSize,
    JSON.stringify(rollout.selector),
    JSON.stringify(rollout.groups),
    JSON.stringify(rollout.gates),
    JSON.stringify(rollout.policy),
    rollout.state,
    rollout.currentGroup,
    rollout.startAt,
    rollout.createdAt,
  ];
}

export function rolloutDeviceFromRow(row: Row): RolloutDeviceRecord {
  return {
    rolloutId: row.rollout_id as string,
    deviceId: row.device_id as string,
    group: row.group_index as number,
    position: row.position as number,
    state: row.state as RolloutDeviceState,
    jobId: row.job_id as string | null,
    fromFw: row.from_fw as string | null,
    sleepy: row.sleepy === 1 || row.sleepy === true,
    turnAt: row.turn_at as number | null,
    deadlineAt: row.deadline_at as number | null,
    finishedAt: row.finished_at as number | null,
    reason: row.reason as string | null,
  };
}

export function snapshotFromRow(row: Row): RolloutDeviceSnapshot {
  return {
    ...rolloutDeviceFromRow(row),
    job:
      row.job_phase === null || row.job_phase === undefined
        ? null
        : {
            phase: row.job_phase as JobPhase,
            error: row.job_error as string | null,
            cancelledBy: (row.job_cancelled_by ?? null) as JobCanceller | null,
            finishedAt: row.job_finished_at as number | null,
            firmwareId: row.job_firmware_id as string,
          },
    device:
      row.device_last_seen === null || row.device_last_seen === undefined
        ? null
        : {
            fw: (row.device_fw as string | null) ?? null,
            app: (row.device_app as string | null) ?? null,
            sleep: typeof row.device_sleep === "number" ? row.device_sleep : 0,
            lastSeen: row.device_last_seen as number,
          },
  };
}

export function eventFromRow(row: Row): RolloutEvent {
  return {
    seq: row.seq as number,
    rolloutId: row.rollout_id as string,
    at: row.at as number,
    kind: row.kind as string,
    message: row.message as string,
    data: row.data === null ? null : JSON.parse(row.data as string),
  };
}

/** An event's values for `INSERT INTO rollout_events (rollout_id, at, kind, message, data)`. */
export function eventValues(rolloutId: string, event: NewRolloutEvent): Array<string | number | null> {
  return [
    rolloutId,
    event.at,
    event.kind,
    event.message,
    event.data === null ? null : JSON.stringify(event.data),
  ];
}

export function conflictFromRow(row: Row): RolloutConflict {
  return {
    deviceId: row.device_id as string,
    rolloutId: row.rollout_id as string,
    rolloutName: row.rollout_name as string | null,
  };
}

/** Column and encoding of each patchable rollout field. */
export const ROLLOUT_COLUMNS: PatchColumns<keyof RolloutPatch> = {
  state: ["state", asIs],
  pauseKind: ["pause_kind", asIs],
  reason: ["reason", asIs],
  currentGroup: ["current_group", asIs],
  gates: ["gates", (v) => JSON.stringify(v)],
  startedAt: ["started_at", asIs],
  finishedAt: ["finished_at", asIs],
};

/** Column and encoding of each patchable rollout-device field; `flag` encodes `sleepy`. */
export function rolloutDeviceColumns(
  flag: (v: boolean) => unknown,
): PatchColumns<Exclude<keyof RolloutDevicePatch, "deviceId">> {
  return {
    state: ["state", asIs],
    jobId: ["job_id", asIs],
    fromFw: ["from_fw", asIs],
    sleepy: ["sleepy", flag],
    turnAt: ["turn_at", asIs],
    deadlineAt: ["deadline_at", asIs],
    finishedAt: ["finished_at", asIs],
    reason: ["reason", asIs],
  };
}

/** Tag rows (device_id, tag), sorted by device, grouped by device. */
export function tagsByDevice(rows: readonly Row[]): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const r of rows) {
    const id = r.device_id as string;
    const list = out.get(id) ?? [];
    list.push(r.tag as string);
    out.set(id, list);
  }
  return out;
}
