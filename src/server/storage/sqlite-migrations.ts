/**
 * SQLite schema, as numbered migrations. The database's `user_version` holds
 * the number of the last one applied. Never edit a released migration:
 * append a new one.
 */
export interface Migration {
  version: number;
  description: string;
  sql: string;
}

export const SQLITE_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: "devices, state history, firmware, jobs and job steps",
    sql: `
CREATE TABLE devices (
  id TEXT PRIMARY KEY,
  state TEXT,
  status TEXT,
  status_at INTEGER,
  first_seen INTEGER NOT NULL,
  last_seen INTEGER NOT NULL,
  last_state_at INTEGER,
  next_wake_at INTEGER,
  state_digest TEXT
) STRICT;

CREATE TABLE device_states (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  device_id TEXT NOT NULL REFERENCES devices(id),
  at INTEGER NOT NULL,
  state TEXT NOT NULL
) STRICT;
CREATE INDEX device_states_by_device ON device_states(device_id, seq);

CREATE TABLE firmware (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  version TEXT NOT NULL,
  size INTEGER NOT NULL,
  notes TEXT,
  added_at INTEGER NOT NULL,
  micropython TEXT,
  build TEXT,
  checks TEXT NOT NULL,
  UNIQUE (name, version)
) STRICT;

CREATE TABLE jobs (
  id TEXT PRIMARY KEY,
  device_id TEXT NOT NULL,
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
  due_at INTEGER,
  error TEXT,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  finished_at INTEGER,
  acked_at INTEGER,
  pushed_at INTEGER,
  lease_owner TEXT,
  lease_expires_at INTEGER,
  progress_bytes INTEGER NOT NULL DEFAULT 0,
  progress_total INTEGER NOT NULL DEFAULT 0,
  progress_rate REAL NOT NULL DEFAULT 0,
  progress_retransmits INTEGER NOT NULL DEFAULT 0,
  active INTEGER GENERATED ALWAYS AS (phase NOT IN ('succeeded', 'failed', 'cancelled')) VIRTUAL
) STRICT;
CREATE UNIQUE INDEX jobs_one_active_per_device ON jobs(device_id) WHERE active;
CREATE INDEX jobs_due ON jobs(due_at) WHERE active;
CREATE INDEX jobs_by_device ON jobs(device_id, created_at);
CREATE INDEX jobs_by_created ON jobs(created_at);

CREATE TABLE job_steps (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  job_id TEXT NOT NULL REFERENCES jobs(id),
  at INTEGER NOT NULL,
  kind TEXT NOT NULL,
  message TEXT NOT NULL,
  data TEXT
) STRICT;
CREATE INDEX job_steps_by_job ON job_steps(job_id, seq);
`,
  },
  {
    version: 2,
    description: "device tags, rollouts, their devices and events",
    sql: `
CREATE TABLE device_tags (
  device_id TEXT NOT NULL,
  tag TEXT NOT NULL,
  PRIMARY KEY (device_id, tag)
) STRICT;
CREATE INDEX device_tags_by_tag ON device_tags(tag, device_id);

CREATE TABLE rollouts (
  id TEXT PRIMARY KEY,
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
  start_at INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  started_at INTEGER,
  finished_at INTEGER,
  lease_owner TEXT,
  lease_expires_at INTEGER,
  active INTEGER GENERATED ALWAYS AS (state IN ('scheduled', 'running', 'paused')) VIRTUAL
) STRICT;
CREATE INDEX rollouts_by_created ON rollouts(created_at);

CREATE TABLE rollout_devices (
  rollout_id TEXT NOT NULL REFERENCES rollouts(id),
  device_id TEXT NOT NULL,
  group_index INTEGER NOT NULL,
  position INTEGER NOT NULL,
  state TEXT NOT NULL,
  job_id TEXT,
  from_fw TEXT,
  sleepy INTEGER NOT NULL DEFAULT 0,
  turn_at INTEGER,
  deadline_at INTEGER,
  finished_at INTEGER,
  reason TEXT,
  PRIMARY KEY (rollout_id, device_id)
) STRICT;
CREATE INDEX rollout_devices_by_device ON rollout_devices(device_id);
CREATE INDEX rollout_devices_in_order ON rollout_devices(rollout_id, position);
CREATE INDEX rollout_devices_in_flight ON rollout_devices(rollout_id) WHERE state IN ('scheduled', 'overdue');

CREATE TABLE rollout_events (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  rollout_id TEXT NOT NULL REFERENCES rollouts(id),
  at INTEGER NOT NULL,
  kind TEXT NOT NULL,
  message TEXT NOT NULL,
  data TEXT
) STRICT;
CREATE INDEX rollout_events_by_rollout ON rollout_events(rollout_id, seq);
`,
  },
  {
    version: 3,
    description: "server instances and shared settings",
    sql: `
CREATE TABLE instances (
  id TEXT PRIMARY KEY,
  host TEXT NOT NULL,
  pid INTEGER NOT NULL,
  version TEXT NOT NULL,
  started_at INTEGER NOT NULL,
  heartbeat_at INTEGER NOT NULL,
  http TEXT,
  load TEXT NOT NULL
) STRICT;

CREATE TABLE settings (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
) STRICT;
`,
  },
  {
    version: 4,
    description: "device credentials and the audit log",
    // The audit log is listed newest first by id: the rowid's own b-tree,
    // read backwards, is that order (no second index needed).
    sql: `
CREATE TABLE device_credentials (
  device_id TEXT PRIMARY KEY,
  hash TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  rotated_at INTEGER,
  command_seq INTEGER NOT NULL DEFAULT 0 CHECK (command_seq >= 0),
  allow_unsigned INTEGER NOT NULL DEFAULT 0 CHECK (allow_unsigned IN (0, 1))
) STRICT;

CREATE TABLE audit (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  at INTEGER NOT NULL,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  target TEXT,
  detail TEXT,
  outcome TEXT NOT NULL CHECK (outcome IN ('ok', 'refused'))
) STRICT;
`,
  },
];

export const SQLITE_SCHEMA_VERSION = SQLITE_MIGRATIONS[SQLITE_MIGRATIONS.length - 1]?.version ?? 0;
