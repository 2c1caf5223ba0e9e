import { tagsByDevice } from "./rollout-rows.ts";
import type { DeviceTagStore } from "./rollout-store.ts";
import type { SqliteDatabase as Db } from "./sqlite-database.ts";

/** Device tags (what rollouts select by) in SQLite. */
export class SqliteDeviceTagStore implements DeviceTagStore {
  private readonly setTx: (deviceId: string, tags: readonly string[]) => void;

  constructor(private readonly db: Db) {
    const clear = db.prepare("DELETE FROM device_tags WHERE device_id = ?");
    const insert = db.prepare("INSERT OR IGNORE INTO device_tags (device_id, tag) VALUES (?, ?)");
    this.setTx = db.transaction((deviceId: string, tags: readonly string[]) => {
      clear.run(deviceId);
      for (const tag of tags) insert.run(deviceId, tag);
    });
  }

  async set(deviceId: string, tags: readonly string[]): Promise<string[]> {
    this.setTx(deviceId, tags);
    return this.get(deviceId);
  }

  async get(deviceId: string): Promise<string[]> {
    return this.db
      .prepare("SELECT tag FROM device_tags WHERE device_id = ? ORDER BY tag")
      .all(deviceId)
      .map((r) => r.tag as string);
  }

  async devicesWith(tag: string): Promise<string[]> {
    return this.db
      .prepare("SELECT device_id FROM device_tags WHERE tag = ? ORDER BY device_id")
      .all(tag)
      .map((r) => r.device_id as string);
  }

  async all(): Promise<Map<string, string[]>> {
    return tagsByDevice(
      this.db.prepare("SELECT device_id, tag FROM device_tags ORDER BY device_id, tag").all(),
    );
  }
}
