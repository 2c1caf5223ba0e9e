import { checkLease } from "./lease-check.ts";
import { bindNamed, setClause } from "./patch-columns.ts";
import * as rolloutRows from "./rollout-rows.ts";
import type {
  NewRollout,
  NewRolloutDevice,
  NewRolloutEvent,
  RolloutCreateResult,
  RolloutDeviceSnapshot,
  RolloutEvent,
  RolloutRecord,
  RolloutState,
  RolloutStore,
} from "./rollout-store.ts";
import type { SqliteDatabase as Db, SqlRow as Row } from "./sqlite-database.ts";
import type { HeldLease } from "./types.ts";

/** A change the lease holder makes: its rollout patch and device patches. */
type Update = Parameters<RolloutStore["update"]>[0];

const DEVICE_COLUMNS = rolloutRows.rolloutDeviceColumns((v) => (v ? 1 : 0));

export class SqliteRolloutStore implements RolloutStore {
  private readonly createTx: (
    rollout: NewRollout,
    devices: NewRolloutDevice[],
    event: NewRolloutEvent,
  ) => RolloutCreateResult;
  private readonly updateTx: (input: Update) => RolloutRecord | undefined;
  private readonly transitionTx: (
    input: Parameters<RolloutStore["transition"]>[0],
  ) => RolloutRecord | undefined;
  private readonly claimOpenTx: (input: Parameters<RolloutStore["claimOpen"]>[0]) => RolloutRecord[];

  constructor(private readonly db: Db) {
    const conflicts = db.prepare(`
      SELECT rd.device_id, r.id AS rollout_id, r.name AS rollout_name
      FROM rollout_devices rd JOIN rollouts r ON r.id = rd.rollout_id
      WHERE r.active AND rd.device_id IN (SELECT value FROM json_each(?))
      ORDER BY rd.device_id`);
    const insertRollout = db.prepare(`
      INSERT INTO rollouts (${rolloutRows.ROLLOUT_INSERT_COLUMNS}, updated_at)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
      RETURNING *`);
    const insertDevice = db.prepare(`
      INSERT INTO rollout_devices (rollout_id, device_id, group_index, position, state, from_fw, finished_at, reason)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?)`);
    this.createTx = db.transaction(
      (rollout: NewRollout, devices: NewRolloutDevice[], event: NewRolloutEvent): RolloutCreateResult => {
        const taken = conflicts.all(JSON.stringify(devices.map((d) => d.deviceId)));
        if (taken.length > 0) return { ok: false, conflicts: taken.map(rolloutRows.conflictFromRow) };
        const row = insertRollout.get(...rolloutRows.rolloutValues(rollout), rollout.createdAt) as Row;
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
        return { ok: true, rollout: rolloutRows.rolloutFromRow(row) };
      },
    );

    this.updateTx = db.transaction((input: Update) => {
      const current = db.prepare("SELECT state, lease_owner FROM rollouts WHERE id = ?").get(input.id);
      checkLease("Rollout", input.id, current, input.owner);
      if (input.expectState !== undefined && current?.state !== input.expectState) return undefined;
      this.patchDevices(input.id, input.devices ?? []);
      for (const event of input.events ?? []) this.appendEvent(input.id, event);
      return this.patchRollout(input.id, input.now, input.patch);
    });

    this.transitionTx = db.transaction((input: Parameters<RolloutStore["transition"]>[0]) => {
      const current = db.prepare("SELECT state FROM rollouts WHERE id = ?").get(input.id);
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
        .all(input.owner, input.now, input.limit);
      const take = db.prepare(
        "UPDATE rollouts SET lease_owner = ?, lease_expires_at = ? WHERE id = ? RETURNING *",
      );
      return rows.map((r) =>
        rolloutRows.rolloutFromRow(take.get(input.owner, input.now + input.leaseMs, r.id as string) as Row),
      );
    });
  }

  private appendEvent(rolloutId: string, event: NewRolloutEvent): void {
    this.db
      .prepare("INSERT INTO rollout_events (rollout_id, at, kind, message, data) VALUES (?, ?, ?, ?, ?)")
      .run(...rolloutRows.eventValues(rolloutId, event));
  }

  private patchRollout(id: string, now: number, patch: Update["patch"]): RolloutRecord {
    const params: Record<string, unknown> = { id, now };
    const sets = ["updated_at = @now", ...setClause(rolloutRows.ROLLOUT_COLUMNS, patch, bindNamed(params))];
    return rolloutRows.rolloutFromRow(
      this.db.prepare(`UPDATE rollouts SET ${sets.join(", ")} WHERE id = @id RETURNING *`).get(params) as Row,
    );
  }

  private patchDevices(rolloutId: string, patches: NonNullable<Update["devices"]>): void {
    for (const patch of patches) {
      const params: Record<string, unknown> = { rolloutId, deviceId: patch.deviceId };
      const sets = setClause(DEVICE_COLUMNS, patch, bindNamed(params));
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
    const row = this.db.prepare("SELECT * FROM rollouts WHERE id = ?").get(id);
    return row && rolloutRows.rolloutFromRow(row);
  }

  async list(filter: { active?: boolean; limit?: number } = {}): Promise<RolloutRecord[]> {
    const where = filter.active === undefined ? "" : filter.active ? "WHERE active" : "WHERE NOT active";
    return this.db
      .prepare(`SELECT * FROM rollouts ${where} ORDER BY created_at DESC, rowid DESC LIMIT ?`)
      .all(filter.limit ?? -1)
      .map(rolloutRows.rolloutFromRow);
  }

  async snapshot(id: string): Promise<RolloutDeviceSnapshot[]> {
    const rows = this.db
      .prepare(
        `SELECT rd.*, j.phase AS job_phase, j.error AS job_error, j.cancelled_by AS job_cancelled_by,
           j.finished_at AS job_finished_at,
           j.firmware_id AS job_firmware_id, json_extract(d.state, '$.fw') AS device_fw, json_extract(d.state, '$.app.id') AS device_app,
           json_extract(d.state, '$.sleep') AS device_sleep, d.last_seen AS device_last_seen
         FROM rollout_devices rd
         LEFT JOIN jobs j ON j.id = rd.job_id
         LEFT JOIN devices d ON d.id = rd.device_id
         WHERE rd.rollout_id = ? ORDER BY rd.position`,
      )
      .all(id);
    return rows.map(rolloutRows.snapshotFromRow);
  }

  async events(id: string, limit: number): Promise<RolloutEvent[]> {
    return this.db
      .prepare("SELECT * FROM rollout_events WHERE rollout_id = ? ORDER BY seq DESC LIMIT ?")
      .all(id, limit)
      .map(rolloutRows.eventFromRow);
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
      .get({ id: input.id, owner: input.owner, now: input.now, expires: input.now + input.leaseMs });
    return row && rolloutRows.rolloutFromRow(row);
  }

  async update(input: Update): Promise<RolloutRecord | undefined> {
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
      .all(now) as unknown as HeldLease[];
  }
}
