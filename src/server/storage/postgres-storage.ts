import type { DeviceState, DeviceStatus } from "../mqtt/contract.ts";
import { PostgresDb, type PostgresPoolOptions, type Sql } from "./postgres-connection.ts";
import { PostgresAuditStore, PostgresCredentialStore } from "./postgres-credential-store.ts";
import { migratePostgres, POSTGRES_MIGRATIONS, postgresSchemaVersion } from "./postgres-migrations.ts";
import { PostgresDeviceTagStore, PostgresRolloutStore } from "./postgres-rollout-store.ts";
import type { DeviceTagStore, RolloutStore } from "./rollout-store.ts";
import type { Migration } from "./sqlite-migrations.ts";
import {
  type AuditStore,
  type CredentialStore,
  type DeviceRecord,
  type DeviceStateEntry,
  type DeviceStore,
  type FirmwareAddResult,
  type FirmwareRecord,
  type FirmwareStore,
  type HeldLease,
  type ImageStore,
  type InstanceRecord,
  type InstanceStore,
  type JobCreateResult,
  type JobListFilter,
  type JobPatch,
  type JobPhase,
  type JobRecord,
  type JobStep,
  type JobStore,
  LeaseLostError,
  type NewJob,
  type NewJobStep,
  type SettingStore,
  type Storage,
  StorageError,
} from "./storage.ts";

type Row = Record<string, unknown>;
type Db = PostgresDb;

export interface PostgresStorageOptions extends PostgresPoolOptions {
  /** How long to keep trying while the database is unreachable at start (default 10 s). */
  startRetryMs?: number;
  /** The schema (tests give a list with a broken migration). */
  migrations?: readonly Migration[];
}

export const DEFAULT_START_RETRY_MS = 10_000;

/**
 * Connects to the PostgreSQL database at `url` (retrying for a bounded time
 * while it is unreachable), applies pending migrations, and returns the
 * storage. Several instances may share the database: every change is a
 * transaction, and jobs and rollouts are leased with row locks
 * (`FOR NO KEY UPDATE SKIP LOCKED`) so no two instances hold one at a time.
 */
export async function openPostgresStorage(
  url: string,
  options: PostgresStorageOptions = {},
): Promise<Storage> {
  const db = PostgresDb.create(url, options);
  try {
    const client = await db.connectAtStart(options.startRetryMs ?? DEFAULT_START_RETRY_MS);
    try {
      await migratePostgres(client, db.target.label, options.migrations ?? POSTGRES_MIGRATIONS);
    } catch (error) {
      client.release(true);
      throw error instanceof StorageError ? error : db.wrap(error, "migrating the schema");
    }
    client.release();
  } catch (error) {
    await db.close();
    throw error;
  }
  return new PostgresStorage(db);
}

/** What `mpota db status` shows of a PostgreSQL database; nothing is changed. */
export async function postgresStatus(
  url: string,
  options: PostgresStorageOptions = {},
): Promise<{ description: string; version: number }> {
  const db = PostgresDb.create(url, options);
  try {
    const client = await db.connectAtStart(options.startRetryMs ?? DEFAULT_START_RETRY_MS);
    try {
      return { description: describe(db), version: await postgresSchemaVersion(client) };
    } catch (error) {
      throw db.wrap(error, "reading the schema version");
    } finally {
      client.release();
    }
  } finally {
    await db.close();
  }
}

/** `mpota db migrate`: applies pending migrations; returns the ones applied. */
export async function migratePostgresDatabase(
  url: string,
  options: PostgresStorageOptions = {},
): Promise<{ description: string; applied: Migration[]; version: number }> {
  const db = PostgresDb.create(url, options);
  try {
    const client = await db.connectAtStart(options.startRetryMs ?? DEFAULT_START_RETRY_MS);
    try {
      const applied = await migratePostgres(
        client,
        db.target.label,
        options.migrations ?? POSTGRES_MIGRATIONS,
      );
      return { description: describe(db), applied, version: await postgresSchemaVersion(client) };
    } catch (error) {
      throw error instanceof StorageError ? error : db.wrap(error, "migrating the schema");
    } finally {
      client.release();
    }
  } finally {
    await db.close();
  }
}

function describe(db: Db): string {
  return `PostgreSQL ${db.target.label}`;
}

class PostgresStorage implements Storage {
  readonly devices: DeviceStore;
  readonly firmware: FirmwareStore;
  readonly jobs: JobStore;
  readonly tags: DeviceTagStore;
  readonly rollouts: RolloutStore;
  readonly instances: InstanceStore;
  readonly settings: SettingStore;
  readonly credentials: CredentialStore;
  readonly audit: AuditStore;
  readonly images: ImageStore;
  readonly description: string;

  constructor(private readonly db: Db) {
    this.description = describe(db);
    this.devices = new PostgresDeviceStore(db);
    this.firmware = new PostgresFirmwareStore(db);
    this.jobs = new PostgresJobStore(db);
    this.tags = new PostgresDeviceTagStore(db);
    this.rollouts = new PostgresRolloutStore(db);
    this.instances = new PostgresInstanceStore(db);
    this.settings = new PostgresSettingStore(db);
    this.credentials = new PostgresCredentialStore(db);
    this.audit = new PostgresAuditStore(db);
    this.images = new PostgresImageStore(db);
  }

  async close(): Promise<void> {
    await this.db.close();
  }
}

// ---- devices ------------------------------------------------------------

function deviceFromRow(row: Row): DeviceRecord {
  return {
    id: row.id as string,
    state: row.state === null ? null : (JSON.parse(row.state as string) as DeviceState),
    status: row.status as DeviceStatus | null,
    statusAt: row.status_at as number | null,
    firstSeen: row.first_seen as number,
    lastSeen: row.last_seen as number,
    lastStateAt: row.last_state_at as number | null,
    nextWakeAt: row.next_wake_at as number | null,
    stateDigest: row.state_digest as string | null,
  };
}

class PostgresDeviceStore implements DeviceStore {
  constructor(private readonly db: Db) {}

  async recordState(input: Parameters<DeviceStore["recordState"]>[0]): Promise<DeviceRecord> {
    return this.db.tx("recording a device state", async (sql) => {
      const state = JSON.stringify(input.state);
      const row = (await sql.one(
        `INSERT INTO devices (id, state, first_seen, last_seen, last_state_at, next_wake_at, state_digest)
         VALUES ($1, $2, $3, $3, $3, $4, $5)
         ON CONFLICT (id) DO UPDATE SET state = excluded.state, last_seen = excluded.last_seen,
           last_state_at = excluded.last_state_at, next_wake_at = excluded.next_wake_at,
           state_digest = excluded.state_digest
         RETURNING *`,
        [input.id, state, input.at, input.nextWakeAt, input.digest],
      )) as Row;
      await sql.run("INSERT INTO device_states (device_id, at, state) VALUES ($1, $2, $3)", [
        input.id,
        input.at,
        state,
      ]);
      await sql.run(
        `DELETE FROM device_states WHERE device_id = $1 AND seq <= (
           SELECT seq FROM device_states WHERE device_id = $1 ORDER BY seq DESC LIMIT 1 OFFSET $2)`,
        [input.id, Math.max(1, input.historyLimit)],
      );
      return deviceFromRow(row);
    });
  }

  async recordStatus(input: Parameters<DeviceStore["recordStatus"]>[0]): Promise<DeviceRecord> {
    return this.db.sql("recording a device status", async (sql) =>
      deviceFromRow(
        (await sql.one(
          `INSERT INTO devices (id, status, status_at, first_seen, last_seen, next_wake_at)
           VALUES ($1, $2, $3, $3, $3, $4)
           ON CONFLICT (id) DO UPDATE SET status = excluded.status, status_at = excluded.status_at,
             last_seen = excluded.last_seen, next_wake_at = excluded.next_wake_at
           RETURNING *`,
          [input.id, input.status, input.at, input.nextWakeAt],
        )) as Row,
      ),
    );
  }

  async get(id: string): Promise<DeviceRecord | undefined> {
    const row = await this.db.sql("reading a device", (sql) =>
      sql.one("SELECT * FROM devices WHERE id = $1", [id]),
    );
    return row && deviceFromRow(row);
  }

  async list(): Promise<DeviceRecord[]> {
    return (await this.db.sql("listing devices", (sql) => sql.rows("SELECT * FROM devices ORDER BY id"))).map(
      deviceFromRow,
    );
  }

  async page(after: string | undefined, limit: number): Promise<DeviceRecord[]> {
    const rows = await this.db.sql("listing devices", (sql) =>
      sql.rows("SELECT * FROM devices WHERE id > $1 ORDER BY id LIMIT $2", [after ?? "", limit]),
    );
    return rows.map(deviceFromRow);
  }

  async count(): Promise<number> {
    const row = await this.db.sql("counting devices", (sql) =>
      sql.one("SELECT count(*)::int AS n FROM devices"),
    );
    return Number(row?.n ?? 0);
  }

  async history(id: string, limit: number): Promise<DeviceStateEntry[]> {
    const rows = await this.db.sql("reading a device's history", (sql) =>
      sql.rows("SELECT * FROM device_states WHERE device_id = $1 ORDER BY seq DESC LIMIT $2", [id, limit]),
    );
    return rows.map((r) => ({
      deviceId: r.device_id as string,
      at: r.at as number,
      state: JSON.parse(r.state as string),
    }));
  }
}

// ---- firmware -----------------------------------------------------------

function firmwareFromRow(row: Row): FirmwareRecord {
  return {
    id: row.id as string,
    name: row.name as string,
    version: row.version as string,
    size: row.size as number,
    notes: row.notes as string | null,
    addedAt: row.added_at as number,
    micropython: row.micropython as string | null,
    build: row.build as string | null,
    checks: JSON.parse(row.checks as string),
  };
}

class PostgresFirmwareStore implements FirmwareStore {
  constructor(private readonly db: Db) {}

  async add(record: FirmwareRecord): Promise<FirmwareAddResult> {
    return this.db.tx("adding firmware", async (sql) => {
      // Inserting first makes the check race-free between instances: a
      // conflicting insert waits for the other transaction, then does nothing.
      for (;;) {
        const inserted = await sql.run(
          `INSERT INTO firmware (id, name, version, size, notes, added_at, micropython, build, checks)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING`,
          [
            record.id,
            record.name,
            record.version,
            record.size,
            record.notes,
            record.addedAt,
            record.micropython,
            record.build,
            JSON.stringify(record.checks),
          ],
        );
        if (inserted > 0) return { ok: true, record };
        const same = await sql.one("SELECT * FROM firmware WHERE id = $1", [record.id]);
        if (same) return { ok: false, conflict: "identity", existing: firmwareFromRow(same) };
        const named = await sql.one("SELECT * FROM firmware WHERE name = $1 AND version = $2", [
          record.name,
          record.version,
        ]);
        if (named) return { ok: false, conflict: "name-version", existing: firmwareFromRow(named) };
        // The conflicting row was removed in the meantime: try again.
      }
    });
  }

  async get(id: string): Promise<FirmwareRecord | undefined> {
    const row = await this.db.sql("reading firmware", (sql) =>
      sql.one("SELECT * FROM firmware WHERE id = $1", [id]),
    );
    return row && firmwareFromRow(row);
  }

  async findByName(name: string, version?: string): Promise<FirmwareRecord[]> {
    const rows = await this.db.sql("finding firmware", (sql) =>
      version === undefined
        ? sql.rows("SELECT * FROM firmware WHERE name = $1 ORDER BY added_at DESC, ord DESC", [name])
        : sql.rows("SELECT * FROM firmware WHERE name = $1 AND version = $2", [name, version]),
    );
    return rows.map(firmwareFromRow);
  }

  async list(): Promise<FirmwareRecord[]> {
    return (
      await this.db.sql("listing firmware", (sql) =>
        sql.rows("SELECT * FROM firmware ORDER BY added_at DESC, ord DESC"),
      )
    ).map(firmwareFromRow);
  }

  async remove(id: string): Promise<boolean> {
    return (
      (await this.db.sql("removing firmware", (sql) => sql.run("DELETE FROM firmware WHERE id = $1", [id]))) >
      0
    );
  }
}

// ---- jobs ---------------------------------------------------------------

function jobFromRow(row: Row): JobRecord {
  return {
    id: row.id as string,
    deviceId: row.device_id as string,
    firmwareId: row.firmware_id as string,
    firmwareName: row.firmware_name as string,
    firmwareVersion: row.firmware_version as string,
    firmwareSize: row.firmware_size as number,
    phase: row.phase as JobPhase,
    attempt: row.attempt as number,
    maxAttempts: row.max_attempts as number,
    retryMode: row.retry_mode as JobRecord["retryMode"],
    targetIp: row.target_ip as string | null,
    targetPort: row.target_port as number | null,
    dueAt: row.due_at as number | null,
    error: row.error as string | null,
    createdAt: row.created_at as number,
    updatedAt: row.updated_at as number,
    finishedAt: row.finished_at as number | null,
    ackedAt: row.acked_at as number | null,
    pushedAt: row.pushed_at as number | null,
    leaseOwner: row.lease_owner as string | null,
    leaseExpiresAt: row.lease_expires_at as number | null,
    progress: {
      bytes: row.progress_bytes as number,
      total: row.progress_total as number,
      rate: row.progress_rate as number,
      retransmits: row.progress_retransmits as number,
    },
  };
}

function stepFromRow(row: Row): JobStep {
  return {
    seq: row.seq as number,
    jobId: row.job_id as string,
    at: row.at as number,
    kind: row.kind as string,
    message: row.message as string,
    data: row.data === null ? null : JSON.parse(row.data as string),
  };
}

/** Column for each patchable field. */
const PATCH_COLUMNS: Record<Exclude<keyof JobPatch, "progress">, string> = {
  phase: "phase",
  attempt: "attempt",
  retryMode: "retry_mode",
  targetIp: "target_ip",
  targetPort: "target_port",
  dueAt: "due_at",
  error: "error",
  finishedAt: "finished_at",
  ackedAt: "acked_at",
  pushedAt: "pushed_at",
};

/** The order claimDue hands jobs out in (RETURNING keeps no order). */
function byDue(a: JobRecord, b: JobRecord): number {
  return (a.dueAt ?? 0) - (b.dueAt ?? 0) || a.createdAt - b.createdAt;
}

async function appendStep(sql: Sql, jobId: string, step: NewJobStep): Promise<void> {
  await sql.run("INSERT INTO job_steps (job_id, at, kind, message, data) VALUES ($1, $2, $3, $4, $5)", [
    jobId,
    step.at,
    step.kind,
    step.message,
    step.data === null ? null : JSON.stringify(step.data),
  ]);
}

class PostgresJobStore implements JobStore {
  constructor(private readonly db: Db) {}

  async create(job: NewJob, step: NewJobStep): Promise<JobCreateResult> {
    return this.db.tx("creating a job", async (sql) => {
      // The partial unique index (one active job per device) decides between
      // instances creating jobs for one device at once: the second insert
      // waits for the first transaction, then does nothing.
      for (;;) {
        const row = await sql.one(
          `INSERT INTO jobs (id, device_id, firmware_id, firmware_name, firmware_version, firmware_size, phase,
             attempt, max_attempts, due_at, created_at, updated_at, progress_total)
           VALUES ($1, $2, $3, $4, $5, $6, 'queued', 0, $7, $8, $8, $8, $6)
           ON CONFLICT (device_id) WHERE active DO NOTHING
           RETURNING *`,
          [
            job.id,
            job.deviceId,
            job.firmwareId,
            job.firmwareName,
            job.firmwareVersion,
            job.firmwareSize,
            job.maxAttempts,
            job.createdAt,
          ],
        );
        if (row) {
          await appendStep(sql, job.id, step);
          return { ok: true, job: jobFromRow(row) };
        }
        const active = await sql.one("SELECT * FROM jobs WHERE device_id = $1 AND active", [job.deviceId]);
        if (active) return { ok: false, active: jobFromRow(active) };
        // The active job ended in the meantime: try again.
      }
    });
  }

  async get(id: string): Promise<JobRecord | undefined> {
    const row = await this.db.sql("reading a job", (sql) =>
      sql.one("SELECT * FROM jobs WHERE id = $1", [id]),
    );
    return row && jobFromRow(row);
  }

  async list(filter: JobListFilter = {}): Promise<JobRecord[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    if (filter.deviceId !== undefined) {
      params.push(filter.deviceId);
      where.push(`device_id = $${params.length}`);
    }
    if (filter.active !== undefined) where.push(filter.active ? "active" : "NOT active");
    params.push(filter.limit ?? null);
    const text = `SELECT * FROM jobs ${where.length > 0 ? `WHERE ${where.join(" AND ")}` : ""}
      ORDER BY created_at DESC, ord DESC LIMIT $${params.length}`;
    return (await this.db.sql("listing jobs", (sql) => sql.rows(text, params))).map(jobFromRow);
  }

  async activeForDevice(deviceId: string): Promise<JobRecord | undefined> {
    const row = await this.db.sql("reading a device's job", (sql) =>
      sql.one("SELECT * FROM jobs WHERE device_id = $1 AND active", [deviceId]),
    );
    return row && jobFromRow(row);
  }

  async steps(jobId: string): Promise<JobStep[]> {
    return (
      await this.db.sql("reading a job's steps", (sql) =>
        sql.rows("SELECT * FROM job_steps WHERE job_id = $1 ORDER BY seq", [jobId]),
      )
    ).map(stepFromRow);
  }

  async nextDueAt(): Promise<number | null> {
    const row = await this.db.sql("reading the next due job", (sql) =>
      sql.one(
        "SELECT MIN(GREATEST(due_at, COALESCE(lease_expires_at, 0))) AS due FROM jobs WHERE active AND due_at IS NOT NULL",
      ),
    );
    return (row?.due as number | null | undefined) ?? null;
  }

  async claimDue(input: Parameters<JobStore["claimDue"]>[0]): Promise<JobRecord[]> {
    const phases = input.phases ?? [];
    const params: unknown[] = [input.owner, input.now + input.leaseMs, input.now, input.limit];
    let phaseFilter = "";
    if (phases.length > 0) {
      params.push(phases);
      phaseFilter = "AND phase = ANY($5::text[])";
    }
    // Rows another instance is claiming right now are skipped, not waited
    // for; a row whose lease was taken meanwhile fails the re-checked WHERE.
    const rows = await this.db.tx("claiming due jobs", (sql) =>
      sql.rows(
        `UPDATE jobs SET lease_owner = $1, lease_expires_at = $2
         WHERE id IN (
           SELECT id FROM jobs WHERE active AND due_at IS NOT NULL AND due_at <= $3
             AND (lease_owner IS NULL OR lease_expires_at <= $3) ${phaseFilter}
           ORDER BY due_at, created_at LIMIT $4
           FOR NO KEY UPDATE SKIP LOCKED)
         AND active AND (lease_owner IS NULL OR lease_expires_at <= $3)
         RETURNING *`,
        params,
      ),
    );
    return rows.map(jobFromRow).sort(byDue);
  }

  async claim(input: Parameters<JobStore["claim"]>[0]): Promise<JobRecord | undefined> {
    const row = await this.db.sql("claiming a job", (sql) =>
      sql.one(
        `UPDATE jobs SET lease_owner = $2, lease_expires_at = $4
         WHERE id = $1 AND active AND (lease_owner IS NULL OR lease_owner = $2 OR lease_expires_at <= $3)
         RETURNING *`,
        [input.id, input.owner, input.now, input.now + input.leaseMs],
      ),
    );
    return row && jobFromRow(row);
  }

  async renew(input: Parameters<JobStore["renew"]>[0]): Promise<boolean> {
    const changed = await this.db.sql("renewing a job lease", (sql) =>
      sql.run("UPDATE jobs SET lease_expires_at = $1 WHERE id = $2 AND lease_owner = $3", [
        input.now + input.leaseMs,
        input.id,
        input.owner,
      ]),
    );
    return changed > 0;
  }

  async update(input: Parameters<JobStore["update"]>[0]): Promise<JobRecord> {
    return this.db.tx("changing a job", async (sql) => {
      const current = await sql.one("SELECT lease_owner FROM jobs WHERE id = $1 FOR NO KEY UPDATE", [
        input.id,
      ]);
      if (!current) throw new StorageError(`Job ${input.id} does not exist.`);
      if (current.lease_owner !== input.owner) {
        throw new LeaseLostError(
          `Job ${input.id} is held by ${current.lease_owner ?? "nobody"}, not ${input.owner}; the change was not made.`,
        );
      }
      const params: unknown[] = [input.id, input.now];
      const sets: string[] = ["updated_at = $2"];
      for (const [key, column] of Object.entries(PATCH_COLUMNS)) {
        const value = input.patch[key as keyof typeof PATCH_COLUMNS];
        if (value === undefined) continue;
        params.push(value);
        sets.push(`${column} = $${params.length}`);
      }
      const progress = input.patch.progress;
      if (progress) {
        params.push(progress.bytes, progress.total, progress.rate, progress.retransmits);
        const n = params.length;
        sets.push(
          `progress_bytes = $${n - 3}, progress_total = $${n - 2}, progress_rate = $${n - 1}, progress_retransmits = $${n}`,
        );
      }
      if (input.release) sets.push("lease_owner = NULL, lease_expires_at = NULL");
      const row = (await sql.one(
        `UPDATE jobs SET ${sets.join(", ")} WHERE id = $1 RETURNING *`,
        params,
      )) as Row;
      for (const step of input.steps ?? []) await appendStep(sql, input.id, step);
      return jobFromRow(row);
    });
  }

  async release(input: { id: string; owner: string }): Promise<void> {
    await this.db.sql("releasing a job lease", (sql) =>
      sql.run(
        "UPDATE jobs SET lease_owner = NULL, lease_expires_at = NULL WHERE id = $1 AND lease_owner = $2",
        [input.id, input.owner],
      ),
    );
  }

  async releaseAll(owner: string): Promise<number> {
    return this.db.sql("releasing job leases", (sql) =>
      sql.run("UPDATE jobs SET lease_owner = NULL, lease_expires_at = NULL WHERE lease_owner = $1", [owner]),
    );
  }

  async leases(now: number): Promise<HeldLease[]> {
    return this.db.sql("reading job leases", (sql) =>
      sql.rows<HeldLease>(
        "SELECT id, lease_owner AS owner FROM jobs WHERE lease_owner IS NOT NULL AND lease_expires_at > $1 ORDER BY created_at, id",
        [now],
      ),
    );
  }

  async addStep(jobId: string, step: NewJobStep): Promise<void> {
    await this.db.sql("adding a job step", (sql) => appendStep(sql, jobId, step));
  }
}

// ---- instances, settings, images ----------------------------------------

function instanceFromRow(row: Row): InstanceRecord {
  return {
    id: row.id as string,
    host: row.host as string,
    pid: row.pid as number,
    version: row.version as string,
    startedAt: row.started_at as number,
    heartbeatAt: row.heartbeat_at as number,
    http: row.http as string | null,
    load: JSON.parse(row.load as string),
  };
}

class PostgresInstanceStore implements InstanceStore {
  constructor(private readonly db: Db) {}

  async heartbeat(record: InstanceRecord): Promise<void> {
    await this.db.sql("recording an instance heartbeat", (sql) =>
      sql.run(
        `INSERT INTO instances (id, host, pid, version, started_at, heartbeat_at, http, load)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (id) DO UPDATE SET host = excluded.host, pid = excluded.pid, version = excluded.version,
           started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at, http = excluded.http,
           load = excluded.load`,
        [
          record.id,
          record.host,
          record.pid,
          record.version,
          record.startedAt,
          record.heartbeatAt,
          record.http,
          JSON.stringify(record.load),
        ],
      ),
    );
  }

  async list(): Promise<InstanceRecord[]> {
    return (
      await this.db.sql("listing instances", (sql) =>
        sql.rows("SELECT * FROM instances ORDER BY started_at, id"),
      )
    ).map(instanceFromRow);
  }

  async remove(id: string): Promise<void> {
    await this.db.sql("removing an instance", (sql) => sql.run("DELETE FROM instances WHERE id = $1", [id]));
  }

  async prune(before: number): Promise<number> {
    return this.db.sql("pruning instances", (sql) =>
      sql.run("DELETE FROM instances WHERE heartbeat_at < $1", [before]),
    );
  }
}

class PostgresSettingStore implements SettingStore {
  constructor(private readonly db: Db) {}

  async get(key: string): Promise<string | undefined> {
    const row = await this.db.sql("reading a setting", (sql) =>
      sql.one("SELECT value FROM settings WHERE key = $1", [key]),
    );
    return row?.value as string | undefined;
  }

  async putIfAbsent(key: string, value: string): Promise<string> {
    // DO UPDATE (to the same value) returns the existing row, DO NOTHING would not.
    const row = await this.db.sql("storing a setting", (sql) =>
      sql.one(
        `INSERT INTO settings (key, value) VALUES ($1, $2)
         ON CONFLICT (key) DO UPDATE SET value = settings.value RETURNING value`,
        [key, value],
      ),
    );
    return row?.value as string;
  }
}

class PostgresImageStore implements ImageStore {
  constructor(private readonly db: Db) {}

  async put(id: string, bytes: Uint8Array): Promise<void> {
    await this.db.sql("storing a firmware image", (sql) =>
      sql.run("INSERT INTO firmware_images (id, bytes) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING", [
        id,
        Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength),
      ]),
    );
  }

  async get(id: string): Promise<Uint8Array | undefined> {
    const row = await this.db.sql("reading a firmware image", (sql) =>
      sql.one("SELECT bytes FROM firmware_images WHERE id = $1", [id]),
    );
    if (!row) return undefined;
    const bytes = row.bytes as Buffer;
    return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  async remove(id: string): Promise<void> {
    await this.db.sql("removing a firmware image", (sql) =>
      sql.run("DELETE FROM firmware_images WHERE id = $1", [id]),
    );
  }
}
