import { instanceFromRow, instanceUpsert, instanceValues } from "./instance-rows.ts";
import type { SqliteDatabase as Db } from "./sqlite-database.ts";
import type { InstanceRecord, InstanceStore, SettingStore } from "./storage.ts";

/** Server instances and their heartbeats in SQLite. */
export class SqliteInstanceStore implements InstanceStore {
  constructor(private readonly db: Db) {}

  async heartbeat(record: InstanceRecord): Promise<void> {
    this.db.prepare(instanceUpsert(() => "?")).run(...instanceValues(record));
  }

  async list(): Promise<InstanceRecord[]> {
    return this.db.prepare("SELECT * FROM instances ORDER BY started_at, id").all().map(instanceFromRow);
  }

  async remove(id: string): Promise<void> {
    this.db.prepare("DELETE FROM instances WHERE id = ?").run(id);
  }

  async prune(before: number): Promise<number> {
    return this.db.prepare("DELETE FROM instances WHERE heartbeat_at < ?").run(before).changes;
  }
}

/** Shared settings in SQLite. */
export class SqliteSettingStore implements SettingStore {
  constructor(private readonly db: Db) {}

  async get(key: string): Promise<string | undefined> {
    return this.db.prepare("SELECT value FROM settings WHERE key = ?").get(key)?.value as string | undefined;
  }

  async putIfAbsent(key: string, value: string): Promise<string> {
    const row = this.db
      .prepare(
        `INSERT INTO settings (key, value) VALUES (?, ?)
         ON CONFLICT (key) DO UPDATE SET value = settings.value RETURNING value`,
      )
      .get(key, value);
    return row?.value as string;
  }
}
