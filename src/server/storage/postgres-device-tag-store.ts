import type { PostgresDb as Db } from "./postgres-connection.ts";
import { tagsByDevice } from "./rollout-rows.ts";
import type { DeviceTagStore } from "./rollout-store.ts";

/** Device tags (what rollouts select by) in PostgreSQL. */
export class PostgresDeviceTagStore implements DeviceTagStore {
  constructor(private readonly db: Db) {}

  async set(deviceId: string, tags: readonly string[]): Promise<string[]> {
    return this.db.tx("setting device tags", async (sql) => {
      await sql.run("DELETE FROM device_tags WHERE device_id = $1", [deviceId]);
      if (tags.length > 0) {
        await sql.run(
          `INSERT INTO device_tags (device_id, tag) SELECT $1, t FROM unnest($2::text[]) AS t
           ON CONFLICT DO NOTHING`,
          [deviceId, [...tags]],
        );
      }
      return (
        await sql.rows("SELECT tag FROM device_tags WHERE device_id = $1 ORDER BY tag", [deviceId])
      ).map((r) => r.tag as string);
    });
  }

  async get(deviceId: string): Promise<string[]> {
    return (
      await this.db.sql("reading device tags", (sql) =>
        sql.rows("SELECT tag FROM device_tags WHERE device_id = $1 ORDER BY tag", [deviceId]),
      )
    ).map((r) => r.tag as string);
  }

  async devicesWith(tag: string): Promise<string[]> {
    return (
      await this.db.sql("finding devices by tag", (sql) =>
        sql.rows("SELECT device_id FROM device_tags WHERE tag = $1 ORDER BY device_id", [tag]),
      )
    ).map((r) => r.device_id as string);
  }

  async all(): Promise<Map<string, string[]>> {
    return tagsByDevice(
      await this.db.sql("reading device tags", (sql) =>
        sql.rows("SELECT device_id, tag FROM device_tags ORDER BY device_id, tag"),
      ),
    );
  }
}
