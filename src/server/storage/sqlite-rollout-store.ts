import type Database from "better-sqlite3";
import type {
  DeviceTagStore,
  NewRollout,
  NewRolloutDevice,
  NewRolloutEvent,
  PauseKind,
  RolloutConflict,
  RolloutCreateResult,
  RolloutDevicePatch,
  RolloutDeviceRecord,
  RolloutDeviceSnapshot,
  RolloutDeviceState,
  RolloutEvent,
  RolloutPatch,
  RolloutRecord,
  RolloutState,
  RolloutStore,
} from "./rollout-store.ts";
import { type HeldLease, type JobPhase, LeaseLostError, StorageError } from "./storage.ts";

type Db = Database.Database;
type Row = Record<string, unknown>;

// ---- device tags ----------------------------------------------------------

export class SqliteDeviceTagStore implements DeviceTagStore {
  private readonly setTx: (deviceId: string, tags: readonly string[]) => void;

  constructor(private readonly db: Db) {
    const clear = db.prepare("DELETE FROM device_tags WHERE device_id = ?");
    const insert = db.prepare("INSERT OR IGNORE INTO device_tags (device_id, tag) VALUES (?, ?)");
    this.setTx = db.transaction((deviceId: string, tags: readonly string[]) => {
      clear.run(deviceId);
      for (const tag of tags) insert.run(deviceId, tag);
    });
  }

  async set(deviceId: string, tags: readonly string[]): Promise<string[]> {
    this.setTx(deviceId, tags);
    return this.get(deviceId);
  }

  async get(deviceId: string): Promise<string[]> {
    return (
      this.db.prepare("SELECT tag FROM device_tags WHERE device_id = ? ORDER BY tag").all(deviceId) as Row[]
    ).map((r) => r.tag as string);
  }

  async devicesWith(tag: string): Promise<string[]> {
    return (
      this.db.prepare("SELECT device_id FROM device_tags WHERE tag = ? ORDER BY device_id").all(tag) as Row[]
    ).map((r) => r.device_id as string);
  }

  async all(): Promise<Map<string, string[]>> {
    const out = new Map<string, string[]>();
    for (const r of this.db
      .prepare("SELECT device_id, tag FROM device_tags ORDER BY device_id, tag")
      .all() as Row[]) {
      const id = r.device_id as string;
      const list = out.get(id) ?? [];
      list.push(r.tag as string);
      out.set(id, list);
    }
    return out;
  }
}

// ---- rollouts -------------------------------------------------------------

function rolloutFromRow(row: Row): RolloutRecord {
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

function rolloutDeviceFromRow(row: Row): RolloutDeviceRecord {
  return {
    rolloutId: row.rollout_id as string,
    deviceId: row.device_id as string,
    group: row.group_index as number,
    position: row.position as number,
    state: row.state as RolloutDeviceState,
    jobId: row.job_id as string | null,
    fromFw: row.from_fw as string | null,
    sleepy: row.sleepy === 1,
    turnAt: row.turn_at as number | null,
    deadlineAt: row.deadline_at as number | null,
    finishedAt: row.finished_at as number | null,
    reason: row.reason as string | null,
  };
}

function snapshotFromRow(row: Row): RolloutDeviceSnapshot {
  return {
    ...rolloutDeviceFromRow(row),
    job:
      row.job_phase === null || row.job_phase === undefined
        ? null
        : {
            phase: row.job_phase as JobPhase,
            error: row.job_error as string | null,
            finishedAt: row.job_finished_at as number | null,
            firmwareId: row.job_firmware_id as string,
          },
    device:
      row.device_last_seen === null || row.device_last_seen === undefined
        ? null
        : {
            fw: (row.device_fw as string | null) ?? null,
            sleep: typeof row.device_sleep === "number" ? row.device_sleep : 0,
            lastSeen: row.device_last_seen as number,
          },
  };
}

function eventFromRow(row: Row): RolloutEvent {
  return {
    seq: row.seq as number,
    rolloutId: row.rollout_id as string,
    at: row.at as number,
    kind: row.kind as string,
    message: row.message as string,
    data: row.data === null ? null : JSON.parse(row.data as string),
  };
}

/** Column and encoding of each patchable rollout field. */
const ROLLOUT_COLUMNS: Record<keyof RolloutPatch, [string, (v: never) => unknown]> = {
  state: ["state", (v) => v],
  pauseKind: ["pause_kind", (v) => v],
  reason: ["reason", (v) => v],
  currentGroup: ["current_group", (v) => v],
  gates: ["gates", (v) => JSON.stringify(v)],
  startedAt: ["started_at", (v) => v],
  finishedAt: ["finished_at", (v) => v],
};

const DEVICE_COLUMNS: Record<
  Exclude<keyof RolloutDevicePatch, "deviceId">,
  [string, (v: never) => unknown]
> = {
  state: ["state", (v) => v],
  jobId: ["job_id", (v) => v],
  fromFw: ["from_fw", (v) => v],
  sleepy: ["sleepy", (v: boolean) => (v ? 1 : 0)],
  turnAt: ["turn_at", (v) => v],
  deadlineAt: ["deadline_at", (v) => v],
  finishedAt: ["finished_at", (v) => v],
  reason: ["reason", (v) => v],
};

function setClause(
  columns: Record<string, [string, (v: never) => unknown]>,
  patch: Record<string, unknown>,
  params: Record<string, unknown>,
): string[] {
  const sets: string[] = [];
  for (const [key, [column, encode]] of Object.entries(columns)) {
    const value = patch[key];
    if (value === undefined) continue;
    sets.push(`${column} = @${key}`);
    params[key] = value === null ? null : encode(value as never);
  }
  return sets;
}

export class SqliteRolloutStore implements RolloutStore {
  private readonly createTx: (
    rollout: NewRollout,
    devices: NewRolloutDevice[],
    event: NewRolloutEvent,
  ) => RolloutCreateResult;
  private readonly updateTx: (input: Parameters<RolloutStore["update"]>[0]) => RolloutRecord | undefined;
  private readonly transitionTx: (
    input: Parameters<RolloutStore["transition"]>[0],
  ) => RolloutRecord | undefined;
  private readonly claimOpenTx: (input: Parameters<RolloutStore["claimOpen"]>[0]) => RolloutRecord[];
  private readonly insertEvent: Database.Statement;

  constructor(private readonly db: Db) {
    this.insertEvent = db.prepare(
      "INSERT INTO rollout_events (rollout_id, at, kind, message, data) VALUES (?, ?, ?, ?, ?)",
    );
    const conflicts = db.prepare(`
      SELECT rd.device_id, r.id AS rollout_id, r.name AS rollout_name
      FROM rollout_devices rd JOIN rollouts r ON r.id = rd.rollout_id
      WHERE r.active AND rd.device_id IN (SELECT value FROM json_each(?))
      ORDER BY rd.device_id`);
    const insertRollout = db.prepare(`
      INSERT INTO rollouts (id, name, firmware_id, firmware_name, firmware_version, firmware_size, selector, groups,
        gates, policy, state, current_group, start_at, created_at, updated_at)
      VALUES (@id, @name, @firmwareId, @firmwareName, @firmwareVersion, @firmwareSize, @selector, @groups,
        @gates, @policy, @state, @currentGroup, @startAt, @createdAt, @createdAt)
      RETURNING *`);
    const insertDevice = db.prepare(`
      INSERT INTO rollout_devices (rollout_id, device_id, group_index, position, state, from_fw, finished_at, reason)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?)`);
    this.createTx = db.transaction(
      (rollout: NewRollout, devices: NewRolloutDevice[], event: NewRolloutEvent): RolloutCreateResult => {
        const taken = conflicts.all(JSON.stringify(devices.map((d) => d.deviceId))) as Row[];
        if (taken.length > 0) {
          return {
            ok: false,
            conflicts: taken.map(
              (r): RolloutConflict => ({
                deviceId: r.device_id as string,
                rolloutId: r.rollout_id as string,
                rolloutName: r.rollout_name as string | null,
              }),
            ),
          };
        }
        const row = insertRollout.get({
          ...rollout,
          selector: JSON.stringify(rollout.selector),
          groups: JSON.stringify(rollout.groups),
          gates: JSON.stringify(rollout.gates),
          policy: JSON.stringify(rollout.policy),
        }) as Row;
        for (const d of devices) {
          insertDevice.run(
            rollout.id,
            d.deviceId,
            d.group,
            d.position,
            d.state,
            d.fromFw,
            d.finishedAt,
            d.reason,
          );
        }
        this.appendEvent(rollout.id, event);
        return { ok: true, rollout: rolloutFromRow(row) };
      },
    );

    this.updateTx = db.transaction((input: Parameters<RolloutStore["update"]>[0]) => {
      const current = db.prepare("SELECT state, lease_owner FROM rollouts WHERE id = ?").get(input.id) as
        | Row
        | undefined;
      if (!current) throw new StorageError(`Rollout ${input.id} does not exist.`);
      if (current.lease_owner !== input.owner) {
        throw new LeaseLostError(
          `Rollout ${input.id} is held by ${current.lease_owner ?? "nobody"}, not ${input.owner}; the change was not made.`,
        );
      }
      if (input.expectState !== undefined && current.state !== input.expectState) return undefined;
      this.patchDevices(input.id, input.devices ?? []);
      for (const event of input.events ?? []) this.appendEvent(input.id, event);
      return this.patchRollout(input.id, input.now, input.patch);
    });

    this.transitionTx = db.transaction((input: Parameters<RolloutStore["transition"]>[0]) => {
      const current = db.prepare("SELECT state FROM rollouts WHERE id = ?").get(input.id) as Row | undefined;
      if (!current || !input.from.includes(current.state as RolloutState)) return undefined;
      this.appendEvent(input.id, input.event);
      return this.patchRollout(input.id, input.now, input.patch);
    });

    this.claimOpenTx = db.transaction((input: Parameters<RolloutStore["claimOpen"]>[0]) => {
      const rows = db
        .prepare(
          `SELECT r.id FROM rollouts r
           WHERE (r.active OR EXISTS (SELECT 1 FROM rollout_devices rd
                   WHERE rd.rollout_id = r.id AND rd.state IN ('scheduled', 'overdue')))
             AND (r.lease_owner IS NULL OR r.lease_owner = ? OR r.lease_expires_at <= ?)
           ORDER BY r.created_at LIMIT ?`,
        )
        .all(input.owner, input.now, input.limit) as Row[];
      const take = db.prepare(
        "UPDATE rollouts SET lease_owner = ?, lease_expires_at = ? WHERE id = ? RETURNING *",
      );
      return rows.map((r) => rolloutFromRow(take.get(input.owner, input.now + input.leaseMs, r.id) as Row));
    });
  }

  private appendEvent(rolloutId: string, event: NewRolloutEvent): void {
    this.insertEvent.run(
      rolloutId,
      event.at,
      event.kind,
      event.message,
      event.data === null ? null : JSON.stringify(event.data),
    );
  }

  private patchRollout(id: string, now: number, patch: RolloutPatch): RolloutRecord {
    const params: Record<string, unknown> = { id, now };
    const sets = ["updated_at = @now", ...setClause(ROLLOUT_COLUMNS, patch, params)];
    return rolloutFromRow(
      this.db.prepare(`UPDATE rollouts SET ${sets.join(", ")} WHERE id = @id RETURNING *`).get(params) as Row,
    );
  }

  private patchDevices(rolloutId: string, patches: RolloutDevicePatch[]): void {
    for (const patch of patches) {
      const params: Record<string, unknown> = { rolloutId, deviceId: patch.deviceId };
      const sets = setClause(DEVICE_COLUMNS, patch, params);
      if (sets.length === 0) continue;
      this.db
        .prepare(
          `UPDATE rollout_devices SET ${sets.join(", ")} WHERE rollout_id = @rolloutId AND device_id = @deviceId`,
        )
        .run(params);
    }
  }

  async create(
    rollout: NewRollout,
    devices: NewRolloutDevice[],
    event: NewRolloutEvent,
  ): Promise<RolloutCreateResult> {
    return this.createTx(rollout, devices, event);
  }

  async get(id: string): Promise<RolloutRecord | undefined> {
    const row = this.db.prepare("SELECT * FROM rollouts WHERE id = ?").get(id) as Row | undefined;
    return row && rolloutFromRow(row);
  }

  async list(filter: { active?: boolean; limit?: number } = {}): Promise<RolloutRecord[]> {
    const where = filter.active === undefined ? "" : filter.active ? "WHERE active" : "WHERE NOT active";
    return (
      this.db
        .prepare(`SELECT * FROM rollouts ${where} ORDER BY created_at DESC, rowid DESC LIMIT ?`)
        .all(filter.limit ?? -1) as Row[]
    ).map(rolloutFromRow);
  }

  async snapshot(id: string): Promise<RolloutDeviceSnapshot[]> {
    const rows = this.db
      .prepare(
        `SELECT rd.*, j.phase AS job_phase, j.error AS job_error, j.finished_at AS job_finished_at,
           j.firmware_id AS job_firmware_id, json_extract(d.state, '$.fw') AS device_fw,
           json_extract(d.state, '$.sleep') AS device_sleep, d.last_seen AS device_last_seen
         FROM rollout_devices rd
         LEFT JOIN jobs j ON j.id = rd.job_id
         LEFT JOIN devices d ON d.id = rd.device_id
         WHERE rd.rollout_id = ? ORDER BY rd.position`,
      )
      .all(id) as Row[];
    return rows.map(snapshotFromRow);
  }

  async events(id: string, limit: number): Promise<RolloutEvent[]> {
    return (
      this.db
        .prepare("SELECT * FROM rollout_events WHERE rollout_id = ? ORDER BY seq DESC LIMIT ?")
        .all(id, limit) as Row[]
    ).map(eventFromRow);
  }

  async claimOpen(input: Parameters<RolloutStore["claimOpen"]>[0]): Promise<RolloutRecord[]> {
    return this.claimOpenTx(input);
  }

  async claim(input: Parameters<RolloutStore["claim"]>[0]): Promise<RolloutRecord | undefined> {
    const row = this.db
      .prepare(
        `UPDATE rollouts SET lease_owner = @owner, lease_expires_at = @expires
         WHERE id = @id AND (lease_owner IS NULL OR lease_owner = @owner OR lease_expires_at <= @now)
         RETURNING *`,
      )
      .get({ id: input.id, owner: input.owner, now: input.now, expires: input.now + input.leaseMs }) as
      | Row
      | undefined;
    return row && rolloutFromRow(row);
  }

  async update(input: Parameters<RolloutStore["update"]>[0]): Promise<RolloutRecord | undefined> {
    return this.updateTx(input);
  }

  async transition(input: Parameters<RolloutStore["transition"]>[0]): Promise<RolloutRecord | undefined> {
    return this.transitionTx(input);
  }

  async release(input: { id: string; owner: string }): Promise<void> {
    this.db
      .prepare(
        "UPDATE rollouts SET lease_owner = NULL, lease_expires_at = NULL WHERE id = ? AND lease_owner = ?",
      )
      .run(input.id, input.owner);
  }

  async releaseAll(owner: string): Promise<number> {
    return this.db
      .prepare("UPDATE rollouts SET lease_owner = NULL, lease_expires_at = NULL WHERE lease_owner = ?")
      .run(owner).changes;
  }

  async leases(now: number): Promise<HeldLease[]> {
    return this.db
      .prepare(
        "SELECT id, lease_owner AS owner FROM rollouts WHERE lease_owner IS NOT NULL AND lease_expires_at > ? ORDER BY created_at, id",
      )
      .all(now) as HeldLease[];
  }
}
