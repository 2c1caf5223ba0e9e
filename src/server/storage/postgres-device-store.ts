import { deviceFromRow, deviceStateFromRow, notStale } from "./device-rows.ts";
import type { PostgresDb as Db } from "./postgres-connection.ts";
import {
  type DeviceRecord,
  type DeviceStateEntry,
  type DeviceStore,
  STALE_STATE_WINDOW_MS,
} from "./storage.ts";

type Row = Record<string, unknown>;

/** Devices and their state history in PostgreSQL. */
export class PostgresDeviceStore implements DeviceStore {
  constructor(private readonly db: Db) {}

  async recordState(input: Parameters<DeviceStore["recordState"]>[0]): Promise<DeviceRecord | null> {
    return this.db.tx("recording a device state", async (sql) => {
      const state = JSON.stringify(input.state);
      const row = (await sql.one(
        `INSERT INTO devices (id, state, first_seen, last_seen, last_state_at, next_wake_at, state_digest,
           state_received_at)
         VALUES ($1, $2, $3, $3, $3, $4, $5, $6)
         ON CONFLICT (id) DO UPDATE SET state = excluded.state, last_seen = excluded.last_seen,
           last_state_at = excluded.last_state_at, next_wake_at = excluded.next_wake_at,
           state_digest = excluded.state_digest, state_received_at = excluded.state_received_at
         WHERE ${notStale("$7")}
         RETURNING *`,
        [
          input.id,
          state,
          input.at,
          input.nextWakeAt,
          input.digest,
          input.receivedAt ?? input.at,
          STALE_STATE_WINDOW_MS,
        ],
      )) as Row | undefined;
      if (!row) return null;
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

  async markOnlineOffline(at: number): Promise<number> {
    return this.db.sql("marking devices offline", (sql) =>
      sql.run(
        "UPDATE devices SET status = 'offline', status_at = $1, next_wake_at = NULL WHERE status = 'online'",
        [at],
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
    return rows.map(deviceStateFromRow);
  }
}
