/**
 * The schema both backends create, as numbered migrations written once: a
 * {@link SchemaDialect} fills in what differs between SQLite and PostgreSQL
 * (column types, STRICT tables, insertion order). The text each dialect
 * gives is the text each backend has always applied. Never edit a released
 * migration: append a new one.
 */
export interface Migration {
  version: number;
  description: string;
  sql: string;
}

/** What differs between the two engines' tables. */
export interface SchemaDialect {
  /** Ids and tags: compared bytewise in both (SQLite's TEXT, PostgreSQL's COLLATE "C"). */
  key: string;
  /** Milliseconds since the epoch. */
  time: string;
  /** A counter that may pass 2^31 (command_seq). */
  counter: string;
  real: string;
  /** An append-only log's key. */
  serial: string;
  /** How a CREATE TABLE ends (SQLite: STRICT). */
  end: string;
  /** A column of insertion order for tables listed newest first (SQLite has its rowid). */
  ord: string;
  /** What the newest-first indexes order by. */
  newestFirst: string;
  /** The computed `active` column. */
  active(condition: string): string;
  /** A yes/no column, false by default (`checked`: SQLite refuses other numbers). */
  flag(column: string, checked: boolean): string;
  /** Indexes and tables only one engine has, by where they go. */
  extra: { jobIndexes: string; migration3: string; migration3Description: string };
}

const table = (d: SchemaDialect, name: string, columns: string): string =>
  `CREATE TABLE ${name} (\n${columns}\n${d.end}`;

/** An append-only log of one parent row (device states, job steps, rollout events). */
function logTable(d: SchemaDialect, name: string, parent: string, columns: string): string {
  return `${table(
    d,
    name,
    `  seq ${d.serial},
  ${parent}_id ${d.key} NOT NULL REFERENCES ${parent}s(id),
  at ${d.time} NOT NULL,
${columns}`,
  )}
CREATE INDEX ${name}_by_${parent} ON ${name}(${parent}_id, seq);`;
}

const EVENT_COLUMNS = `  kind TEXT NOT NULL,
  message TEXT NOT NULL,
  data TEXT`;

/** The firmware a job or rollout installs, copied so it reads well after the firmware is removed. */
const FIRMWARE_COLUMNS = `  firmware_id TEXT NOT NULL,
  firmware_name TEXT NOT NULL,
  firmware_version TEXT NOT NULL,
  firmware_size INTEGER NOT NULL,`;

/** Lifecycle times and the lease, after `created_at`. */
const leasedTimes = (d: SchemaDialect, extra: string): string => `  updated_at ${d.time} NOT NULL,
  ${extra}finished_at ${d.time},`;

export function schemaMigrations(d: SchemaDialect): Migration[] {
  const t = d.time;
  const k = d.key;
  return [
    {
      version: 1,
      description: "devices, state history, firmware, jobs and job steps",
      sql: `
${table(
  d,
  "devices",
  `  id ${k} PRIMARY KEY,
  state TEXT,
  status TEXT,
  status_at ${t},
  first_seen ${t} NOT NULL,
  last_seen ${t} NOT NULL,
  last_state_at ${t},
  next_wake_at ${t},
  state_digest TEXT`,
)}

${logTable(d, "device_states", "device", "  state TEXT NOT NULL")}

${table(
  d,
  "firmware",
  `  id ${k} PRIMARY KEY,${d.ord}
  name TEXT NOT NULL,
  version TEXT NOT NULL,
  size INTEGER NOT NULL,
  notes TEXT,
  added_at ${t} NOT NULL,
  micropython TEXT,
  build TEXT,
  checks TEXT NOT NULL,
  UNIQUE (name, version)`,
)}

${table(
  d,
  "jobs",
  `  id ${k} PRIMARY KEY,${d.ord}
  device_id ${k} NOT NULL,
${FIRMWARE_COLUMNS}
  phase TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  max_attempts INTEGER NOT NULL,
  retry_mode TEXT,
  target_ip TEXT,
  target_port INTEGER,
  due_at ${t},
  error TEXT,
  created_at ${t} NOT NULL,
${leasedTimes(d, "")}
  acked_at ${t},
  pushed_at ${t},
  lease_owner TEXT,
  lease_expires_at ${t},
  progress_bytes INTEGER NOT NULL DEFAULT 0,
  progress_total INTEGER NOT NULL DEFAULT 0,
  progress_rate ${d.real} NOT NULL DEFAULT 0,
  progress_retransmits INTEGER NOT NULL DEFAULT 0,
  ${d.active("phase NOT IN ('succeeded', 'failed', 'cancelled')")}`,
)}
CREATE UNIQUE INDEX jobs_one_active_per_device ON jobs(device_id) WHERE active;
CREATE INDEX jobs_due ON jobs(due_at) WHERE active;
CREATE INDEX jobs_by_device ON jobs(device_id, created_at);
CREATE INDEX jobs_by_created ON jobs(${d.newestFirst});${d.extra.jobIndexes}

${logTable(d, "job_steps", "job", EVENT_COLUMNS)}
`,
    },
    {
      version: 2,
      description: "device tags, rollouts, their devices and events",
      sql: `
${table(
  d,
  "device_tags",
  `  device_id ${k} NOT NULL,
  tag ${k} NOT NULL,
  PRIMARY KEY (device_id, tag)`,
)}
CREATE INDEX device_tags_by_tag ON device_tags(tag, device_id);

${table(
  d,
  "rollouts",
  `  id ${k} PRIMARY KEY,${d.ord}
  name TEXT,
${FIRMWARE_COLUMNS}
  selector TEXT NOT NULL,
  groups TEXT NOT NULL,
  gates TEXT NOT NULL,
  policy TEXT NOT NULL,
  state TEXT NOT NULL,
  pause_kind TEXT,
  reason TEXT,
  current_group INTEGER NOT NULL,
  start_at ${t} NOT NULL,
  created_at ${t} NOT NULL,
${leasedTimes(d, `started_at ${t},\n  `)}
  lease_owner TEXT,
  lease_expires_at ${t},
  ${d.active("state IN ('scheduled', 'running', 'paused')")}`,
)}
CREATE INDEX rollouts_by_created ON rollouts(${d.newestFirst});

${table(
  d,
  "rollout_devices",
  `  rollout_id ${k} NOT NULL REFERENCES rollouts(id),
  device_id ${k} NOT NULL,
  group_index INTEGER NOT NULL,
  position INTEGER NOT NULL,
  state TEXT NOT NULL,
  job_id TEXT,
  from_fw TEXT,
  ${d.flag("sleepy", false)},
  turn_at ${t},
  deadline_at ${t},
  finished_at ${t},
  reason TEXT,
  PRIMARY KEY (rollout_id, device_id)`,
)}
CREATE INDEX rollout_devices_by_device ON rollout_devices(device_id);
CREATE INDEX rollout_devices_in_order ON rollout_devices(rollout_id, position);
CREATE INDEX rollout_devices_in_flight ON rollout_devices(rollout_id) WHERE state IN ('scheduled', 'overdue');

${logTable(d, "rollout_events", "rollout", EVENT_COLUMNS)}
`,
    },
    {
      version: 3,
      description: d.extra.migration3Description,
      sql: `
${table(
  d,
  "instances",
  `  id ${k} PRIMARY KEY,
  host TEXT NOT NULL,
  pid INTEGER NOT NULL,
  version TEXT NOT NULL,
  started_at ${t} NOT NULL,
  heartbeat_at ${t} NOT NULL,
  http TEXT,
  load TEXT NOT NULL`,
)}

${table(
  d,
  "settings",
  `  key ${k} PRIMARY KEY,
  value TEXT NOT NULL`,
)}${d.extra.migration3}
`,
    },
    {
      version: 4,
      description: "device credentials and the audit log",
      // The audit log is listed newest first by id: SQLite's rowid b-tree or
      // PostgreSQL's primary key index, read backwards, is that order.
      sql: `
${table(
  d,
  "device_credentials",
  `  device_id ${k} PRIMARY KEY,
  hash TEXT NOT NULL,
  created_at ${t} NOT NULL,
  rotated_at ${t},
  command_seq ${d.counter} NOT NULL DEFAULT 0 CHECK (command_seq >= 0),
  ${d.flag("allow_unsigned", true)}`,
)}

${table(
  d,
  "audit",
  `  id ${d.serial},
  at ${t} NOT NULL,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  target TEXT,
  detail TEXT,
  outcome TEXT NOT NULL CHECK (outcome IN ('ok', 'refused'))`,
)}
`,
    },
    {
      version: 5,
      description: "the kind of each release",
      // Rows from before (NULL) keep being told apart by their build, as the kinds did before
      // the column (releases/release-kind.ts): no row has to be rewritten.
      sql: `
ALTER TABLE firmware ADD COLUMN kind TEXT;
`,
    },
    {
      version: 6,
      description: "when each device's stored state was received",
      // last_state_at is when the state was handled, which waits for the database; this is when
      // it reached the server, to keep an older state from overwriting a newer one (DeviceStore.recordState).
      sql: `
ALTER TABLE devices ADD COLUMN state_received_at ${d.time};
`,
    },
    {
      version: 7,
      description: "the files of an app job's progress",
      // NULL for a job whose progress counts no files (firmware) and for rows from before. A row
      // has both or neither, 0 <= files <= of: job-rows.ts writes nothing else.
      sql: `
ALTER TABLE jobs ADD COLUMN progress_of INTEGER CHECK (progress_of >= 0);
ALTER TABLE jobs ADD COLUMN progress_files INTEGER
  CHECK ((progress_files IS NULL) = (progress_of IS NULL) AND progress_files >= 0 AND progress_files <= progress_of);
`,
    },
    {
      version: 8,
      description: "who cancelled each cancelled job",
      // 'request': someone asked (mpota jobs cancel, the dashboard); 'rollout': a rollout took the
      // job back (paused, aborted, timed out). NULL for every other job and for rows from before,
      // which rollouts read as their own, as they did before the column.
      sql: `
ALTER TABLE jobs ADD COLUMN cancelled_by TEXT CHECK (cancelled_by IN ('request', 'rollout'));
`,
    },
  ];
}
