import { deviceFromRow, deviceStateFromRow, notStale } from "./device-rows.ts";
import type { SqliteDatabase as Db, SqlRow as Row } from "./sqlite-database.ts";
import {
  type DeviceRecord,
  type DeviceStateEntry,
  type DeviceStore,
  STALE_STATE_WINDOW_MS,
} from "./storage.ts";

/** Devices and their state history in SQLite. */
export class SqliteDeviceStore implements DeviceStore {
  private readonly insertState: (input: Parameters<DeviceStore["recordState"]>[0]) => Row | null;

  constructor(private readonly db: Db) {
    const upsertDeviceState = db.prepare(`
      INSERT INTO devices (id, state, first_seen, last_seen, last_state_at, next_wake_at, state_digest, state_received_at)
      VALUES (@id, @state, @at, @at, @at, @nextWakeAt, @digest, @receivedAt)
      ON CONFLICT (id) DO UPDATE SET state = excluded.state, last_seen = excluded.last_seen,
        last_state_at = excluded.last_state_at, next_wake_at = excluded.next_wake_at, state_digest = excluded.state_digest,
        state_received_at = excluded.state_received_at
      WHERE ${notStale("@window")}
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
        receivedAt: input.receivedAt ?? input.at,
        window: STALE_STATE_WINDOW_MS,
        nextWakeAt: input.nextWakeAt,
        digest: input.digest,
      }) as Row | undefined;
      if (!row) return null;
      addHistory.run(input.id, input.at, state);
      trimHistory.run({ id: input.id, keep: Math.max(1, input.historyLimit) });
      return row;
    });
  }

  async recordState(input: Parameters<DeviceStore["recordState"]>[0]): Promise<DeviceRecord | null> {
    const row = this.insertState(input);
    return row && deviceFromRow(row);
  }

  async recordStatus(input: Parameters<DeviceStore["recordStatus"]>[0]): Promise<DeviceRecord> {
    const row = this.db
      .prepare(`
      INSERT INTO devices (id, status, status_at, first_seen, last_seen, next_wake_at)
      VALUES (@id, @status, @at, @at, @at, @nextWakeAt)
      ON CONFLICT (id) DO UPDATE SET status = excluded.status, status_at = excluded.status_at,
        last_seen = excluded.last_seen, next_wake_at = excluded.next_wake_at
      RETURNING *`)
      .get({ id: input.id, status: input.status, at: input.at, nextWakeAt: input.nextWakeAt }) as Row;
    return deviceFromRow(row);
  }

  async markOnlineOffline(at: number): Promise<number> {
    return this.db
      .prepare(
        "UPDATE devices SET status = 'offline', status_at = ?, next_wake_at = NULL WHERE status = 'online'",
      )
      .run(at).changes;
  }

  async get(id: string): Promise<DeviceRecord | undefined> {
    const row = this.db.prepare("SELECT * FROM devices WHERE id = ?").get(id);
    return row && deviceFromRow(row);
  }

  async list(): Promise<DeviceRecord[]> {
    return this.db.prepare("SELECT * FROM devices ORDER BY id").all().map(deviceFromRow);
  }

  async page(after: string | undefined, limit: number): Promise<DeviceRecord[]> {
    return this.db
      .prepare("SELECT * FROM devices WHERE id > ? ORDER BY id LIMIT ?")
      .all(after ?? "", limit)
      .map(deviceFromRow);
  }

  async count(): Promise<number> {
    return Number(this.db.prepare("SELECT count(*) AS n FROM devices").get()?.n ?? 0);
  }

  async history(id: string, limit: number): Promise<DeviceStateEntry[]> {
    return this.db
      .prepare("SELECT * FROM device_states WHERE device_id = ? ORDER BY seq DESC LIMIT ?")
      .all(id, limit)
      .map(deviceStateFromRow);
  }
}
