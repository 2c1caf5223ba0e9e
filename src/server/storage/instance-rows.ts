import type { InstanceRecord } from "./storage.ts";

/** The rows of `instances` as records and back, for both backends. */

type Row = Record<string, unknown>;

export function instanceFromRow(row: Row): InstanceRecord {
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

/** The heartbeat upsert; `mark(n)` writes the n-th placeholder (SQLite `?`, PostgreSQL `$n`). */
export function instanceUpsert(mark: (n: number) => string): string {
  const values = Array.from({ length: 8 }, (_, i) => mark(i + 1)).join(", ");
  return `INSERT INTO instances (id, host, pid, version, started_at, heartbeat_at, http, load)
         VALUES (${values})
         ON CONFLICT (id) DO UPDATE SET host = excluded.host, pid = excluded.pid, version = excluded.version,
           started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at, http = excluded.http,
           load = excluded.load`;
}

export function instanceValues(record: InstanceRecord): Array<string | number | null> {
  return [
    record.id,
    record.host,
    record.pid,
    record.version,
    record.startedAt,
    record.heartbeatAt,
    record.http,
    JSON.stringify(record.load),
  ];
}
