import { existsSync, mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import Database from "better-sqlite3";
import type { DeviceState, DeviceStatus } from "../mqtt/contract.ts";
import type { DeviceTagStore, RolloutStore } from "./rollout-store.ts";
import { SqliteAuditStore, SqliteCredentialStore } from "./sqlite-credential-store.ts";
import { SQLITE_MIGRATIONS, SQLITE_SCHEMA_VERSION } from "./sqlite-migrations.ts";
import { SqliteDeviceTagStore, SqliteRolloutStore } from "./sqlite-rollout-store.ts";
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
  SchemaTooNewError,
  type SettingStore,
  type Storage,
  StorageError,
} from "./storage.ts";

type Db = Database.Database;
type Row = Record<string, unknown>;

export const SQLITE_FILE_NAME = "mpota.db";

/**
 * Opens (or creates) `<dataDir>/mpota.db`: WAL journal, full fsync, foreign
 * keys, and every pending migration applied in one transaction each. A
 * database written by a newer mpota is refused, never touched.
 */
export async function openSqliteStorage(dataDir: string): Promise<Storage> {
  const dir = resolve(dataDir);
  try {
    mkdirSync(dir, { recursive: true });
  } catch (error) {
    throw new StorageError(
      `Cannot create the data directory ${dir}: ${(error as Error).message}. Pass --data DIR with a writable directory.`,
    );
  }
  const path = join(dir, SQLITE_FILE_NAME);
  let db: Db;
  try {
    db = new Database(path, { timeout: 5000 });
    db.pragma("journal_mode = WAL");
    db.pragma("synchronous = FULL");
    db.pragma("foreign_keys = ON");
  } catch (error) {
    throw new StorageError(
      `Cannot open the database ${path}: ${(error as Error).message}. If the file is damaged, move it away (the firmware files next to it stay usable) and start again.`,
      { cause: error },
    );
  }
  try {
    migrate(db, path);
  } catch (error) {
    db.close();
    throw error;
  }
  return new SqliteStorage(db, path);
}

/**
 * The schema version of `<dataDir>/mpota.db` without creating or changing
 * anything (0 when there is no database yet), and the file's path.
 */
export function sqliteSchemaVersion(dataDir: string): { path: string; version: number } {
  const path = join(resolve(dataDir), SQLITE_FILE_NAME);
  if (!existsSync(path)) return { path, version: 0 };
  let db: Db;
  try {
    db = new Database(path, { readonly: true, fileMustExist: true });
  } catch (error) {
    throw new StorageError(
      `Cannot open the database ${path}: ${(error as Error).message}. Check the --data directory.`,
      { cause: error },
    );
  }
  try {
    return { path, version: db.pragma("user_version", { simple: true }) as number };
  } catch (error) {
    throw new StorageError(
      `Cannot read the database ${path}: ${(error as Error).message}. If the file is damaged, move it away and start again.`,
      { cause: error },
    );
  } finally {
    db.close();
  }
}

function migrate(db: Db, path: string): void {
  const current = db.pragma("user_version", { simple: true }) as number;
  if (current > SQLITE_SCHEMA_VERSION) {
    throw new SchemaTooNewError(
      `The database ${path} has schema version ${current}, but this mpota knows only up to version ${SQLITE_SCHEMA_VERSION}: a newer mpota wrote it. Upgrade mpota, or start this one with another --data directory. The database was not changed.`,
    );
  }
  for (const migration of SQLITE_MIGRATIONS) {
    if (migration.version <= current) continue;
    try {
      db.transaction(() => {
        db.exec(migration.sql);
        db.pragma(`user_version = ${migration.version}`);
      })();
    } catch (error) {
      throw new StorageError(
        `Migration ${migration.version} (${migration.description}) of ${path} failed and was rolled back: ${(error as Error).message}. Please report this; the database is unchanged at version ${db.pragma("user_version", { simple: true })}.`,
        { cause: error },
      );
    }
  }
}

class SqliteStorage implements Storage {
  readonly devices: DeviceStore;
  readonly firmware: FirmwareStore;
  readonly jobs: JobStore;
  readonly tags: DeviceTagStore;
  readonly rollouts: RolloutStore;
  readonly instances: InstanceStore;
  readonly settings: SettingStore;
  readonly credentials: CredentialStore;
  readonly audit: AuditStore;
  /** Images stay in the data directory's files: one machine, one directory. */
  readonly images: ImageStore | null = null;
  readonly description: string;
  private closed = false;

  constructor(
    private readonly db: Db,
    path: string,
  ) {
    this.description = `SQLite ${path}`;
    this.devices = new SqliteDeviceStore(db);
    this.firmware = new SqliteFirmwareStore(db);
    this.jobs = new SqliteJobStore(db);
    this.tags = new SqliteDeviceTagStore(db);
    this.rollouts = new SqliteRolloutStore(db);
    this.instances = new SqliteInstanceStore(db);
    this.settings = new SqliteSettingStore(db);
    this.credentials = new SqliteCredentialStore(db);
    this.audit = new SqliteAuditStore(db);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.db.close();
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

class SqliteDeviceStore implements DeviceStore {
  private readonly insertState: (input: Parameters<DeviceStore["recordState"]>[0]) => Row;
  private readonly upsertStatus: (input: Parameters<DeviceStore["recordStatus"]>[0]) => Row;

  constructor(private readonly db: Db) {
    const upsertDeviceState = db.prepare(`
      INSERT INTO devices (id, state, first_seen, last_seen, last_state_at, next_wake_at, state_digest)
      VALUES (@id, @state, @at, @at, @at, @nextWakeAt, @digest)
      ON CONFLICT (id) DO UPDATE SET state = excluded.state, last_seen = excluded.last_seen,
        last_state_at = excluded.last_state_at, next_wake_at = excluded.next_wake_at, state_digest = excluded.state_digest
      RETURNING *`);
    const addHistory = db.prepare("INSERT INTO device_states (device_id, at, state) VALUES (?, ?, ?)");
    const trimHistory = db.prepare(`
      DELETE FROM device_states WHERE device_id = @id AND seq <= (
        SELECT seq FROM device_states WHERE device_id = @id ORDER BY seq DESC LIMIT 1 OFFSET @keep)`);
    this.insertState = db.transaction((input: Parameters<DeviceStore["recordState"]>[0]) => {
      const state = JSON.stringify(input.state);
      const row = upsertDeviceState.get({
        id: input.id,
        state,
        at: input.at,
        nextWakeAt: input.nextWakeAt,
        digest: input.digest,
      }) as Row;
      addHistory.run(input.id, input.at, state);
      trimHistory.run({ id: input.id, keep: Math.max(1, input.historyLimit) });
      return row;
    });
    const upsertStatus = db.prepare(`
      INSERT INTO devices (id, status, status_at, first_seen, last_seen, next_wake_at)
      VALUES (@id, @status, @at, @at, @at, @nextWakeAt)
      ON CONFLICT (id) DO UPDATE SET status = excluded.status, status_at = excluded.status_at,
        last_seen = excluded.last_seen, next_wake_at = excluded.next_wake_at
      RETURNING *`);
    this.upsertStatus = (input) => upsertStatus.get(input) as Row;
  }

  async recordState(input: Parameters<DeviceStore["recordState"]>[0]): Promise<DeviceRecord> {
    return deviceFromRow(this.insertState(input));
  }

  async recordStatus(input: Parameters<DeviceStore["recordStatus"]>[0]): Promise<DeviceRecord> {
    return deviceFromRow(this.upsertStatus(input));
  }

  async get(id: string): Promise<DeviceRecord | undefined> {
    const row = this.db.prepare("SELECT * FROM devices WHERE id = ?").get(id) as Row | undefined;
    return row && deviceFromRow(row);
  }

  async list(): Promise<DeviceRecord[]> {
    return (this.db.prepare("SELECT * FROM devices ORDER BY id").all() as Row[]).map(deviceFromRow);
  }

  async page(after: string | undefined, limit: number): Promise<DeviceRecord[]> {
    const rows = this.db
      .prepare("SELECT * FROM devices WHERE id > ? ORDER BY id LIMIT ?")
      .all(after ?? "", limit) as Row[];
    return rows.map(deviceFromRow);
  }

  async count(): Promise<number> {
    return (this.db.prepare("SELECT count(*) AS n FROM devices").get() as { n: number }).n;
  }

  async history(id: string, limit: number): Promise<DeviceStateEntry[]> {
    const rows = this.db
      .prepare("SELECT * FROM device_states WHERE device_id = ? ORDER BY seq DESC LIMIT ?")
      .all(id, limit) as Row[];
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

class SqliteFirmwareStore implements FirmwareStore {
  private readonly addTx: (record: FirmwareRecord) => FirmwareAddResult;

  constructor(private readonly db: Db) {
    const byId = db.prepare("SELECT * FROM firmware WHERE id = ?");
    const byNameVersion = db.prepare("SELECT * FROM firmware WHERE name = ? AND version = ?");
    const insert = db.prepare(`
      INSERT INTO firmware (id, name, version, size, notes, added_at, micropython, build, checks)
      VALUES (@id, @name, @version, @size, @notes, @addedAt, @micropython, @build, @checks)`);
    this.addTx = db.transaction((record: FirmwareRecord): FirmwareAddResult => {
      const same = byId.get(record.id) as Row | undefined;
      if (same) return { ok: false, conflict: "identity", existing: firmwareFromRow(same) };
      const named = byNameVersion.get(record.name, record.version) as Row | undefined;
      if (named) return { ok: false, conflict: "name-version", existing: firmwareFromRow(named) };
      insert.run({ ...record, checks: JSON.stringify(record.checks) });
      return { ok: true, record };
    });
  }

  async add(record: FirmwareRecord): Promise<FirmwareAddResult> {
    return this.addTx(record);
  }

  async get(id: string): Promise<FirmwareRecord | undefined> {
    const row = this.db.prepare("SELECT * FROM firmware WHERE id = ?").get(id) as Row | undefined;
    return row && firmwareFromRow(row);
  }

  async findByName(name: string, version?: string): Promise<FirmwareRecord[]> {
    const rows =
      version === undefined
        ? this.db
            .prepare("SELECT * FROM firmware WHERE name = ? ORDER BY added_at DESC, rowid DESC")
            .all(name)
        : this.db.prepare("SELECT * FROM firmware WHERE name = ? AND version = ?").all(name, version);
    return (rows as Row[]).map(firmwareFromRow);
  }

  async list(): Promise<FirmwareRecord[]> {
    return (this.db.prepare("SELECT * FROM firmware ORDER BY added_at DESC, rowid DESC").all() as Row[]).map(
      firmwareFromRow,
    );
  }

  async remove(id: string): Promise<boolean> {
    return this.db.prepare("DELETE FROM firmware WHERE id = ?").run(id).changes > 0;
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

class SqliteJobStore implements JobStore {
  private readonly createTx: (job: NewJob, step: NewJobStep) => JobCreateResult;
  private readonly claimDueTx: (input: Parameters<JobStore["claimDue"]>[0]) => JobRecord[];
  private readonly updateTx: (input: Parameters<JobStore["update"]>[0]) => JobRecord;
  private readonly insertStep: Database.Statement;

  constructor(private readonly db: Db) {
    this.insertStep = db.prepare(
      "INSERT INTO job_steps (job_id, at, kind, message, data) VALUES (?, ?, ?, ?, ?)",
    );
    const activeFor = db.prepare("SELECT * FROM jobs WHERE device_id = ? AND active");
    const insertJob = db.prepare(`
      INSERT INTO jobs (id, device_id, firmware_id, firmware_name, firmware_version, firmware_size, phase, attempt,
        max_attempts, due_at, created_at, updated_at, progress_total)
      VALUES (@id, @deviceId, @firmwareId, @firmwareName, @firmwareVersion, @firmwareSize, 'queued', 0,
        @maxAttempts, @createdAt, @createdAt, @createdAt, @firmwareSize)
      RETURNING *`);
    this.createTx = db.transaction((job: NewJob, step: NewJobStep): JobCreateResult => {
      const active = activeFor.get(job.deviceId) as Row | undefined;
      if (active) return { ok: false, active: jobFromRow(active) };
      const row = insertJob.get(job) as Row;
      this.appendStep(job.id, step);
      return { ok: true, job: jobFromRow(row) };
    });

    this.claimDueTx = db.transaction((input: Parameters<JobStore["claimDue"]>[0]) => {
      const phases = input.phases ?? [];
      const phaseFilter = phases.length > 0 ? `AND phase IN (${phases.map(() => "?").join(", ")})` : "";
      const rows = db
        .prepare(
          `SELECT id FROM jobs WHERE active AND due_at IS NOT NULL AND due_at <= ?
           AND (lease_owner IS NULL OR lease_expires_at <= ?) ${phaseFilter}
           ORDER BY due_at, created_at LIMIT ?`,
        )
        .all(input.now, input.now, ...phases, input.limit) as Row[];
      const take = db.prepare(
        "UPDATE jobs SET lease_owner = ?, lease_expires_at = ? WHERE id = ? RETURNING *",
      );
      return rows.map((r) => jobFromRow(take.get(input.owner, input.now + input.leaseMs, r.id) as Row));
    });

    this.updateTx = db.transaction((input: Parameters<JobStore["update"]>[0]) => {
      const current = db
        .prepare("SELECT lease_owner, lease_expires_at FROM jobs WHERE id = ?")
        .get(input.id) as Row | undefined;
      if (!current) throw new StorageError(`Job ${input.id} does not exist.`);
      if (current.lease_owner !== input.owner) {
        throw new LeaseLostError(
          `Job ${input.id} is held by ${current.lease_owner ?? "nobody"}, not ${input.owner}; the change was not made.`,
        );
      }
      const sets: string[] = ["updated_at = @now"];
      const params: Record<string, unknown> = { id: input.id, now: input.now };
      for (const [key, column] of Object.entries(PATCH_COLUMNS)) {
        const value = input.patch[key as keyof typeof PATCH_COLUMNS];
        if (value === undefined) continue;
        sets.push(`${column} = @${key}`);
        params[key] = value;
      }
      const progress = input.patch.progress;
      if (progress) {
        sets.push(
          "progress_bytes = @pBytes, progress_total = @pTotal, progress_rate = @pRate, progress_retransmits = @pRetransmits",
        );
        Object.assign(params, {
          pBytes: progress.bytes,
          pTotal: progress.total,
          pRate: progress.rate,
          pRetransmits: progress.retransmits,
        });
      }
      if (input.release) sets.push("lease_owner = NULL, lease_expires_at = NULL");
      const row = db
        .prepare(`UPDATE jobs SET ${sets.join(", ")} WHERE id = @id RETURNING *`)
        .get(params) as Row;
      for (const step of input.steps ?? []) this.appendStep(input.id, step);
      return jobFromRow(row);
    });
  }

  private appendStep(jobId: string, step: NewJobStep): void {
    this.insertStep.run(
      jobId,
      step.at,
      step.kind,
      step.message,
      step.data === null ? null : JSON.stringify(step.data),
    );
  }

  async create(job: NewJob, step: NewJobStep): Promise<JobCreateResult> {
    return this.createTx(job, step);
  }

  async get(id: string): Promise<JobRecord | undefined> {
    const row = this.db.prepare("SELECT * FROM jobs WHERE id = ?").get(id) as Row | undefined;
    return row && jobFromRow(row);
  }

  async list(filter: JobListFilter = {}): Promise<JobRecord[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    if (filter.deviceId !== undefined) {
      where.push("device_id = ?");
      params.push(filter.deviceId);
    }
    if (filter.active !== undefined) where.push(filter.active ? "active" : "NOT active");
    const sql = `SELECT * FROM jobs ${where.length > 0 ? `WHERE ${where.join(" AND ")}` : ""}
      ORDER BY created_at DESC, rowid DESC LIMIT ?`;
    return (this.db.prepare(sql).all(...params, filter.limit ?? -1) as Row[]).map(jobFromRow);
  }

  async activeForDevice(deviceId: string): Promise<JobRecord | undefined> {
    const row = this.db.prepare("SELECT * FROM jobs WHERE device_id = ? AND active").get(deviceId) as
      | Row
      | undefined;
    return row && jobFromRow(row);
  }

  async steps(jobId: string): Promise<JobStep[]> {
    return (this.db.prepare("SELECT * FROM job_steps WHERE job_id = ? ORDER BY seq").all(jobId) as Row[]).map(
      stepFromRow,
    );
  }

  async nextDueAt(): Promise<number | null> {
    const row = this.db
      .prepare(
        "SELECT MIN(MAX(due_at, COALESCE(lease_expires_at, 0))) AS due FROM jobs WHERE active AND due_at IS NOT NULL",
      )
      .get() as Row;
    return (row.due as number | null) ?? null;
  }

  async claimDue(input: Parameters<JobStore["claimDue"]>[0]): Promise<JobRecord[]> {
    return this.claimDueTx(input);
  }

  async claim(input: Parameters<JobStore["claim"]>[0]): Promise<JobRecord | undefined> {
    const row = this.db
      .prepare(
        `UPDATE jobs SET lease_owner = @owner, lease_expires_at = @expires
         WHERE id = @id AND active AND (lease_owner IS NULL OR lease_owner = @owner OR lease_expires_at <= @now)
         RETURNING *`,
      )
      .get({ id: input.id, owner: input.owner, now: input.now, expires: input.now + input.leaseMs }) as
      | Row
      | undefined;
    return row && jobFromRow(row);
  }

  async renew(input: Parameters<JobStore["renew"]>[0]): Promise<boolean> {
    const result = this.db
      .prepare("UPDATE jobs SET lease_expires_at = ? WHERE id = ? AND lease_owner = ?")
      .run(input.now + input.leaseMs, input.id, input.owner);
    return result.changes > 0;
  }

  async update(input: Parameters<JobStore["update"]>[0]): Promise<JobRecord> {
    return this.updateTx(input);
  }

  async release(input: { id: string; owner: string }): Promise<void> {
    this.db
      .prepare("UPDATE jobs SET lease_owner = NULL, lease_expires_at = NULL WHERE id = ? AND lease_owner = ?")
      .run(input.id, input.owner);
  }

  async releaseAll(owner: string): Promise<number> {
    return this.db
      .prepare("UPDATE jobs SET lease_owner = NULL, lease_expires_at = NULL WHERE lease_owner = ?")
      .run(owner).changes;
  }

  async leases(now: number): Promise<HeldLease[]> {
    return this.db
      .prepare(
        "SELECT id, lease_owner AS owner FROM jobs WHERE lease_owner IS NOT NULL AND lease_expires_at > ? ORDER BY created_at, id",
      )
      .all(now) as HeldLease[];
  }

  async addStep(jobId: string, step: NewJobStep): Promise<void> {
    this.appendStep(jobId, step);
  }
}

// ---- instances and settings ---------------------------------------------

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

class SqliteInstanceStore implements InstanceStore {
  constructor(private readonly db: Db) {}

  async heartbeat(record: InstanceRecord): Promise<void> {
    this.db
      .prepare(
        `INSERT INTO instances (id, host, pid, version, started_at, heartbeat_at, http, load)
         VALUES (@id, @host, @pid, @version, @startedAt, @heartbeatAt, @http, @load)
         ON CONFLICT (id) DO UPDATE SET host = excluded.host, pid = excluded.pid, version = excluded.version,
           started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at, http = excluded.http,
           load = excluded.load`,
      )
      .run({ ...record, load: JSON.stringify(record.load) });
  }

  async list(): Promise<InstanceRecord[]> {
    return (this.db.prepare("SELECT * FROM instances ORDER BY started_at, id").all() as Row[]).map(
      instanceFromRow,
    );
  }

  async remove(id: string): Promise<void> {
    this.db.prepare("DELETE FROM instances WHERE id = ?").run(id);
  }

  async prune(before: number): Promise<number> {
    return this.db.prepare("DELETE FROM instances WHERE heartbeat_at < ?").run(before).changes;
  }
}

class SqliteSettingStore implements SettingStore {
  constructor(private readonly db: Db) {}

  async get(key: string): Promise<string | undefined> {
    const row = this.db.prepare("SELECT value FROM settings WHERE key = ?").get(key) as Row | undefined;
    return row?.value as string | undefined;
  }

  async putIfAbsent(key: string, value: string): Promise<string> {
    const row = this.db
      .prepare(
        `INSERT INTO settings (key, value) VALUES (?, ?)
         ON CONFLICT (key) DO UPDATE SET value = settings.value RETURNING value`,
      )
      .get(key, value) as Row;
    return row.value as string;
  }
}
