import { MpotaError } from "../../errors.ts";
import type { Migration } from "./sqlite-migrations.ts";
import { SchemaTooNewError, StorageError } from "./storage.ts";

/**
 * PostgreSQL schema, as numbered migrations: the same tables as SQLite's
 * (sqlite-migrations.ts). The `schema_migrations` table lists the ones
 * applied; each runs in its own transaction. Never edit a released
 * migration: append a new one.
 *
 * Times are BIGINT milliseconds; JSON values are TEXT (kept byte for byte as
 * written, like SQLite's; JSONB would refuse `\u0000` in a device's state).
 * Ids and tags sort bytewise (COLLATE "C"), as in SQLite. Tables that are
 * listed "newest first" have an `ord` column: insertion order, SQLite's rowid.
 */
export const POSTGRES_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: "devices, state history, firmware, jobs and job steps",
    sql: `
CREATE TABLE devices (
  id TEXT COLLATE "C" PRIMARY KEY,
  state TEXT,
  status TEXT,
  status_at BIGINT,
  first_seen BIGINT NOT NULL,
  last_seen BIGINT NOT NULL,
  last_state_at BIGINT,
  next_wake_at BIGINT,
  state_digest TEXT
);

CREATE TABLE device_states (
  seq BIGSERIAL PRIMARY KEY,
  device_id TEXT COLLATE "C" NOT NULL REFERENCES devices(id),
  at BIGINT NOT NULL,
  state TEXT NOT NULL
);
CREATE INDEX device_states_by_device ON device_states(device_id, seq);

CREATE TABLE firmware (
  id TEXT COLLATE "C" PRIMARY KEY,
  ord BIGSERIAL NOT NULL,
  name TEXT NOT NULL,
  version TEXT NOT NULL,
  size INTEGER NOT NULL,
  notes TEXT,
  added_at BIGINT NOT NULL,
  micropython TEXT,
  build TEXT,
  checks TEXT NOT NULL,
  UNIQUE (name, version)
);

CREATE TABLE jobs (
  id TEXT COLLATE "C" PRIMARY KEY,
  ord BIGSERIAL NOT NULL,
  device_id TEXT COLLATE "C" NOT NULL,
  firmware_id TEXT NOT NULL,
  firmware_name TEXT NOT NULL,
  firmware_version TEXT NOT NULL,
  firmware_size INTEGER NOT NULL,
  phase TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  max_attempts INTEGER NOT NULL,
  retry_mode TEXT,
  target_ip TEXT,
  target_port INTEGER,
  due_at BIGINT,
  error TEXT,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,
  finished_at BIGINT,
  acked_at BIGINT,
  pushed_at BIGINT,
  lease_owner TEXT,
  lease_expires_at BIGINT,
  progress_bytes INTEGER NOT NULL DEFAULT 0,
  progress_total INTEGER NOT NULL DEFAULT 0,
  progress_rate DOUBLE PRECISION NOT NULL DEFAULT 0,
  progress_retransmits INTEGER NOT NULL DEFAULT 0,
  active BOOLEAN GENERATED ALWAYS AS (phase NOT IN ('succeeded', 'failed', 'cancelled')) STORED
);
CREATE UNIQUE INDEX jobs_one_active_per_device ON jobs(device_id) WHERE active;
CREATE INDEX jobs_due ON jobs(due_at) WHERE active;
CREATE INDEX jobs_by_device ON jobs(device_id, created_at);
CREATE INDEX jobs_by_created ON jobs(created_at, ord);
CREATE INDEX jobs_by_lease_owner ON jobs(lease_owner) WHERE lease_owner IS NOT NULL;

CREATE TABLE job_steps (
  seq BIGSERIAL PRIMARY KEY,
  job_id TEXT COLLATE "C" NOT NULL REFERENCES jobs(id),
  at BIGINT NOT NULL,
  kind TEXT NOT NULL,
  message TEXT NOT NULL,
  data TEXT
);
CREATE INDEX job_steps_by_job ON job_steps(job_id, seq);
`,
  },
  {
    version: 2,
    description: "device tags, rollouts, their devices and events",
    sql: `
CREATE TABLE device_tags (
  device_id TEXT COLLATE "C" NOT NULL,
  tag TEXT COLLATE "C" NOT NULL,
  PRIMARY KEY (device_id, tag)
);
CREATE INDEX device_tags_by_tag ON device_tags(tag, device_id);

CREATE TABLE rollouts (
  id TEXT COLLATE "C" PRIMARY KEY,
  ord BIGSERIAL NOT NULL,
  name TEXT,
  firmware_id TEXT NOT NULL,
  firmware_name TEXT NOT NULL,
  firmware_version TEXT NOT NULL,
  firmware_size INTEGER NOT NULL,
  selector TEXT NOT NULL,
  groups TEXT NOT NULL,
  gates TEXT NOT NULL,
  policy TEXT NOT NULL,
  state TEXT NOT NULL,
  pause_kind TEXT,
  reason TEXT,
  current_group INTEGER NOT NULL,
  start_at BIGINT NOT NULL,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,
  started_at BIGINT,
  finished_at BIGINT,
  lease_owner TEXT,
  lease_expires_at BIGINT,
  active BOOLEAN GENERATED ALWAYS AS (state IN ('scheduled', 'running', 'paused')) STORED
);
CREATE INDEX rollouts_by_created ON rollouts(created_at, ord);

CREATE TABLE rollout_devices (
  rollout_id TEXT COLLATE "C" NOT NULL REFERENCES rollouts(id),
  device_id TEXT COLLATE "C" NOT NULL,
  group_index INTEGER NOT NULL,
  position INTEGER NOT NULL,
  state TEXT NOT NULL,
  job_id TEXT,
  from_fw TEXT,
  sleepy BOOLEAN NOT NULL DEFAULT FALSE,
  turn_at BIGINT,
  deadline_at BIGINT,
  finished_at BIGINT,
  reason TEXT,
  PRIMARY KEY (rollout_id, device_id)
);
CREATE INDEX rollout_devices_by_device ON rollout_devices(device_id);
CREATE INDEX rollout_devices_in_order ON rollout_devices(rollout_id, position);
CREATE INDEX rollout_devices_in_flight ON rollout_devices(rollout_id) WHERE state IN ('scheduled', 'overdue');

CREATE TABLE rollout_events (
  seq BIGSERIAL PRIMARY KEY,
  rollout_id TEXT COLLATE "C" NOT NULL REFERENCES rollouts(id),
  at BIGINT NOT NULL,
  kind TEXT NOT NULL,
  message TEXT NOT NULL,
  data TEXT
);
CREATE INDEX rollout_events_by_rollout ON rollout_events(rollout_id, seq);
`,
  },
  {
    version: 3,
    description: "server instances, shared settings and firmware images",
    sql: `
CREATE TABLE instances (
  id TEXT COLLATE "C" PRIMARY KEY,
  host TEXT NOT NULL,
  pid INTEGER NOT NULL,
  version TEXT NOT NULL,
  started_at BIGINT NOT NULL,
  heartbeat_at BIGINT NOT NULL,
  http TEXT,
  load TEXT NOT NULL
);

CREATE TABLE settings (
  key TEXT COLLATE "C" PRIMARY KEY,
  value TEXT NOT NULL
);

CREATE TABLE firmware_images (
  id TEXT COLLATE "C" PRIMARY KEY,
  bytes BYTEA NOT NULL
);
`,
  },
  {
    version: 4,
    description: "device credentials and the audit log",
    // The audit log is listed newest first by id: its primary key index,
    // scanned backwards, gives that order (no second index needed).
    sql: `
CREATE TABLE device_credentials (
  device_id TEXT COLLATE "C" PRIMARY KEY,
  hash TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  rotated_at BIGINT,
  command_seq BIGINT NOT NULL DEFAULT 0 CHECK (command_seq >= 0),
  allow_unsigned BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE TABLE audit (
  id BIGSERIAL PRIMARY KEY,
  at BIGINT NOT NULL,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  target TEXT,
  detail TEXT,
  outcome TEXT NOT NULL CHECK (outcome IN ('ok', 'refused'))
);
`,
  },
];

export const POSTGRES_SCHEMA_VERSION = POSTGRES_MIGRATIONS[POSTGRES_MIGRATIONS.length - 1]?.version ?? 0;

/** Key of the advisory lock that makes instances starting together migrate one after the other. */
const MIGRATION_LOCK = "7885925493162995049"; // "mpota-mi" as a big-endian int64

const CREATE_MIGRATIONS_TABLE = `CREATE TABLE IF NOT EXISTS schema_migrations (
  version INTEGER PRIMARY KEY,
  description TEXT NOT NULL,
  applied_at BIGINT NOT NULL
)`;

interface Queryable {
  query(sql: string, params?: unknown[]): Promise<{ rows: Array<Record<string, unknown>> }>;
}

/** The schema version of the database (0: no mpota tables yet), without changing anything. */
export async function postgresSchemaVersion(client: Queryable): Promise<number> {
  const exists = await client.query("SELECT to_regclass('schema_migrations') IS NOT NULL AS present");
  if (exists.rows[0]?.present !== true) return 0;
  const row = await client.query("SELECT COALESCE(MAX(version), 0) AS version FROM schema_migrations");
  return Number(row.rows[0]?.version ?? 0);
}

export function tooNewError(current: number, known: number, label: string): SchemaTooNewError {
  return new SchemaTooNewError(
    `The database ${label} has schema version ${current}, but this mpota knows only up to version ${known}: a newer mpota wrote it. Upgrade mpota, or start this one with another --db database. The database was not changed.`,
  );
}

/**
 * Applies every pending migration, each in its own transaction under an
 * advisory lock (a second instance waits, then finds nothing left to do).
 * A database newer than `migrations` is refused untouched; a migration that
 * fails is rolled back and reported with its number. Returns the ones applied.
 */
export async function migratePostgres(
  client: Queryable,
  label: string,
  migrations: readonly Migration[] = POSTGRES_MIGRATIONS,
  now: () => number = Date.now,
): Promise<Migration[]> {
  const known = migrations[migrations.length - 1]?.version ?? 0;
  const applied: Migration[] = [];
  for (;;) {
    await client.query("BEGIN");
    let current = 0;
    let next: Migration | undefined;
    try {
      await client.query(`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK})`);
      await client.query(CREATE_MIGRATIONS_TABLE);
      current = await postgresSchemaVersion(client);
      if (current > known) throw tooNewError(current, known, label);
      next = migrations.find((m) => m.version > current);
      if (next === undefined) {
        await client.query("COMMIT");
        return applied;
      }
      await client.query(next.sql);
      await client.query(
        "INSERT INTO schema_migrations (version, description, applied_at) VALUES ($1, $2, $3)",
        [next.version, next.description, now()],
      );
      await client.query("COMMIT");
      applied.push(next);
    } catch (error) {
      await client.query("ROLLBACK").catch(() => undefined);
      if (error instanceof MpotaError || next === undefined) throw error;
      throw new StorageError(
        `Migration ${next.version} (${next.description}) of ${label} failed and was rolled back: ${(error as Error).message}. Please report this; the database is unchanged at version ${current}.`,
        { cause: error },
      );
    }
  }
}
