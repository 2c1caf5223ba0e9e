import { checkLease } from "./lease-check.ts";
import { bindPositional, setClause } from "./patch-columns.ts";
import type { PostgresDb, Sql } from "./postgres-connection.ts";
import * as rolloutRows from "./rollout-rows.ts";
import type {
  NewRollout,
  NewRolloutDevice,
  NewRolloutEvent,
  RolloutCreateResult,
  RolloutDevicePatch,
  RolloutDeviceSnapshot,
  RolloutEvent,
  RolloutPatch,
  RolloutRecord,
  RolloutState,
  RolloutStore,
} from "./rollout-store.ts";
import type { HeldLease } from "./types.ts";

type Db = PostgresDb;
type Row = Record<string, unknown>;

/** Advisory lock held while a rollout is created: two instances cannot both take one device. */
const ROLLOUT_CREATE_LOCK = "7885925493162996335"; // "mpota-ro" as a big-endian int64

const DEVICE_COLUMNS = rolloutRows.rolloutDeviceColumns((v) => v);

async function appendEvent(sql: Sql, rolloutId: string, event: NewRolloutEvent): Promise<void> {
  await sql.run(
    "INSERT INTO rollout_events (rollout_id, at, kind, message, data) VALUES ($1, $2, $3, $4, $5)",
    rolloutRows.eventValues(rolloutId, event),
  );
}

async function patchRollout(sql: Sql, id: string, now: number, patch: RolloutPatch): Promise<RolloutRecord> {
  const params: unknown[] = [id, now];
  const sets = ["updated_at = $2", ...setClause(rolloutRows.ROLLOUT_COLUMNS, patch, bindPositional(params))];
  return rolloutRows.rolloutFromRow(
    (await sql.one(`UPDATE rollouts SET ${sets.join(", ")} WHERE id = $1 RETURNING *`, params)) as Row,
  );
}

async function patchDevices(
  sql: Sql,
  rolloutId: string,
  patches: readonly RolloutDevicePatch[],
): Promise<void> {
  for (const patch of patches) {
    const params: unknown[] = [rolloutId, patch.deviceId];
    const sets = setClause(DEVICE_COLUMNS, patch, bindPositional(params));
    if (sets.length === 0) continue;
    await sql.run(
      `UPDATE rollout_devices SET ${sets.join(", ")} WHERE rollout_id = $1 AND device_id = $2`,
      params,
    );
  }
}

export class PostgresRolloutStore implements RolloutStore {
  constructor(private readonly db: Db) {}

  async create(
    rollout: NewRollout,
    devices: NewRolloutDevice[],
    event: NewRolloutEvent,
  ): Promise<RolloutCreateResult> {
    return this.db.tx("creating a rollout", async (sql) => {
      // Rollout creations take turns, so the conflict check below sees every
      // rollout created before this one commits.
      await sql.run(`SELECT pg_advisory_xact_lock(${ROLLOUT_CREATE_LOCK})`);
      const taken = await sql.rows(
        `SELECT rd.device_id, r.id AS rollout_id, r.name AS rollout_name
         FROM rollout_devices rd JOIN rollouts r ON r.id = rd.rollout_id
         WHERE r.active AND rd.device_id = ANY($1::text[])
         ORDER BY rd.device_id`,
        [devices.map((d) => d.deviceId)],
      );
      if (taken.length > 0) {
        return {
          ok: false,
          conflicts: taken.map(rolloutRows.conflictFromRow),
        };
      }
      const row = (await sql.one(
        `INSERT INTO rollouts (${rolloutRows.ROLLOUT_INSERT_COLUMNS}, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14)
         RETURNING *`,
        rolloutRows.rolloutValues(rollout),
      )) as Row;
      if (devices.length > 0) {
        await sql.run(
          `INSERT INTO rollout_devices (rollout_id, device_id, group_index, position, state, from_fw, finished_at, reason)
           SELECT $1, * FROM unnest($2::text[], $3::int[], $4::int[], $5::text[], $6::text[], $7::bigint[], $8::text[])`,
          [
            rollout.id,
            devices.map((d) => d.deviceId),
            devices.map((d) => d.group),
            devices.map((d) => d.position),
            devices.map((d) => d.state),
            devices.map((d) => d.fromFw),
            devices.map((d) => d.finishedAt),
            devices.map((d) => d.reason),
          ],
        );
      }
      await appendEvent(sql, rollout.id, event);
      return { ok: true, rollout: rolloutRows.rolloutFromRow(row) };
    });
  }

  async get(id: string): Promise<RolloutRecord | undefined> {
    const row = await this.db.sql("reading a rollout", (sql) =>
      sql.one("SELECT * FROM rollouts WHERE id = $1", [id]),
    );
    return row && rolloutRows.rolloutFromRow(row);
  }

  async list(filter: { active?: boolean; limit?: number } = {}): Promise<RolloutRecord[]> {
    const where = filter.active === undefined ? "" : filter.active ? "WHERE active" : "WHERE NOT active";
    return (
      await this.db.sql("listing rollouts", (sql) =>
        sql.rows(`SELECT * FROM rollouts ${where} ORDER BY created_at DESC, ord DESC LIMIT $1`, [
          filter.limit ?? null,
        ]),
      )
    ).map(rolloutRows.rolloutFromRow);
  }

  async snapshot(id: string): Promise<RolloutDeviceSnapshot[]> {
    const rows = await this.db.sql("reading a rollout's devices", (sql) =>
      sql.rows(
        `SELECT rd.*, j.phase AS job_phase, j.error AS job_error, j.cancelled_by AS job_cancelled_by,
           j.finished_at AS job_finished_at,
           j.firmware_id AS job_firmware_id, d.state::json ->> 'fw' AS device_fw, d.state::json -> 'app' ->> 'id' AS device_app,
           CASE WHEN json_typeof(d.state::json -> 'sleep') = 'number'
             THEN (d.state::json ->> 'sleep')::double precision END AS device_sleep,
           d.last_seen AS device_last_seen
         FROM rollout_devices rd
         LEFT JOIN jobs j ON j.id = rd.job_id
         LEFT JOIN devices d ON d.id = rd.device_id
         WHERE rd.rollout_id = $1 ORDER BY rd.position`,
        [id],
      ),
    );
    return rows.map(rolloutRows.snapshotFromRow);
  }

  async events(id: string, limit: number): Promise<RolloutEvent[]> {
    return (
      await this.db.sql("reading rollout events", (sql) =>
        sql.rows("SELECT * FROM rollout_events WHERE rollout_id = $1 ORDER BY seq DESC LIMIT $2", [
          id,
          limit,
        ]),
      )
    ).map(rolloutRows.eventFromRow);
  }

  async claimOpen(input: Parameters<RolloutStore["claimOpen"]>[0]): Promise<RolloutRecord[]> {
    const rows = await this.db.tx("claiming rollouts", (sql) =>
      sql.rows(
        `UPDATE rollouts SET lease_owner = $1, lease_expires_at = $2
         WHERE id IN (
           SELECT r.id FROM rollouts r
           WHERE (r.active OR EXISTS (SELECT 1 FROM rollout_devices rd
                   WHERE rd.rollout_id = r.id AND rd.state IN ('scheduled', 'overdue')))
             AND (r.lease_owner IS NULL OR r.lease_owner = $1 OR r.lease_expires_at <= $3)
           ORDER BY r.created_at LIMIT $4
           FOR NO KEY UPDATE OF r SKIP LOCKED)
         AND (lease_owner IS NULL OR lease_owner = $1 OR lease_expires_at <= $3)
         RETURNING *`,
        [input.owner, input.now + input.leaseMs, input.now, input.limit],
      ),
    );
    return rows.map(rolloutRows.rolloutFromRow).sort((a, b) => a.createdAt - b.createdAt);
  }

  async claim(input: Parameters<RolloutStore["claim"]>[0]): Promise<RolloutRecord | undefined> {
    const row = await this.db.sql("claiming a rollout", (sql) =>
      sql.one(
        `UPDATE rollouts SET lease_owner = $2, lease_expires_at = $4
         WHERE id = $1 AND (lease_owner IS NULL OR lease_owner = $2 OR lease_expires_at <= $3)
         RETURNING *`,
        [input.id, input.owner, input.now, input.now + input.leaseMs],
      ),
    );
    return row && rolloutRows.rolloutFromRow(row);
  }

  async update(input: Parameters<RolloutStore["update"]>[0]): Promise<RolloutRecord | undefined> {
    return this.db.tx("changing a rollout", async (sql) => {
      const current = await sql.one(
        "SELECT state, lease_owner FROM rollouts WHERE id = $1 FOR NO KEY UPDATE",
        [input.id],
      );
      checkLease("Rollout", input.id, current, input.owner);
      if (input.expectState !== undefined && current?.state !== input.expectState) return undefined;
      await patchDevices(sql, input.id, input.devices ?? []);
      for (const event of input.events ?? []) await appendEvent(sql, input.id, event);
      return patchRollout(sql, input.id, input.now, input.patch);
    });
  }

  async transition(input: Parameters<RolloutStore["transition"]>[0]): Promise<RolloutRecord | undefined> {
    return this.db.tx("changing a rollout's state", async (sql) => {
      const current = await sql.one("SELECT state FROM rollouts WHERE id = $1 FOR NO KEY UPDATE", [input.id]);
      if (!current || !input.from.includes(current.state as RolloutState)) return undefined;
      await appendEvent(sql, input.id, input.event);
      return patchRollout(sql, input.id, input.now, input.patch);
    });
  }

  async release(input: { id: string; owner: string }): Promise<void> {
    await this.db.sql("releasing a rollout lease", (sql) =>
      sql.run(
        "UPDATE rollouts SET lease_owner = NULL, lease_expires_at = NULL WHERE id = $1 AND lease_owner = $2",
        [input.id, input.owner],
      ),
    );
  }

  async releaseAll(owner: string): Promise<number> {
    return this.db.sql("releasing rollout leases", (sql) =>
      sql.run("UPDATE rollouts SET lease_owner = NULL, lease_expires_at = NULL WHERE lease_owner = $1", [
        owner,
      ]),
    );
  }

  async leases(now: number): Promise<HeldLease[]> {
    return this.db.sql("reading rollout leases", (sql) =>
      sql.rows<HeldLease>(
        "SELECT id, lease_owner AS owner FROM rollouts WHERE lease_owner IS NOT NULL AND lease_expires_at > $1 ORDER BY created_at, id",
        [now],
      ),
    );
  }
}
