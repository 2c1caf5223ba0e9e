import { instanceFromRow, instanceUpsert, instanceValues } from "./instance-rows.ts";
import type { PostgresDb as Db } from "./postgres-connection.ts";
import type { ImageStore, InstanceRecord, InstanceStore, SettingStore } from "./storage.ts";

/** Server instances and their heartbeats in PostgreSQL. */
export class PostgresInstanceStore implements InstanceStore {
  constructor(private readonly db: Db) {}

  async heartbeat(record: InstanceRecord): Promise<void> {
    await this.db.sql("recording an instance heartbeat", (sql) =>
      sql.run(
        instanceUpsert((n) => `$${n}`),
        instanceValues(record),
      ),
    );
  }

  async list(): Promise<InstanceRecord[]> {
    return (
      await this.db.sql("listing instances", (sql) =>
        sql.rows("SELECT * FROM instances ORDER BY started_at, id"),
      )
    ).map(instanceFromRow);
  }

  async remove(id: string): Promise<void> {
    await this.db.sql("removing an instance", (sql) => sql.run("DELETE FROM instances WHERE id = $1", [id]));
  }

  async prune(before: number): Promise<number> {
    return this.db.sql("pruning instances", (sql) =>
      sql.run("DELETE FROM instances WHERE heartbeat_at < $1", [before]),
    );
  }
}

/** Shared settings in PostgreSQL. */
export class PostgresSettingStore implements SettingStore {
  constructor(private readonly db: Db) {}

  async get(key: string): Promise<string | undefined> {
    const row = await this.db.sql("reading a setting", (sql) =>
      sql.one("SELECT value FROM settings WHERE key = $1", [key]),
    );
    return row?.value as string | undefined;
  }

  async putIfAbsent(key: string, value: string): Promise<string> {
    // DO UPDATE (to the same value) returns the existing row, DO NOTHING would not.
    const row = await this.db.sql("storing a setting", (sql) =>
      sql.one(
        `INSERT INTO settings (key, value) VALUES ($1, $2)
         ON CONFLICT (key) DO UPDATE SET value = settings.value RETURNING value`,
        [key, value],
      ),
    );
    return row?.value as string;
  }
}

/** Firmware image bytes in PostgreSQL, for instances on several machines. */
export class PostgresImageStore implements ImageStore {
  constructor(private readonly db: Db) {}

  async put(id: string, bytes: Uint8Array): Promise<void> {
    await this.db.sql("storing a firmware image", (sql) =>
      sql.run("INSERT INTO firmware_images (id, bytes) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING", [
        id,
        Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength),
      ]),
    );
  }

  async get(id: string): Promise<Uint8Array | undefined> {
    const row = await this.db.sql("reading a firmware image", (sql) =>
      sql.one("SELECT bytes FROM firmware_images WHERE id = $1", [id]),
    );
    if (!row) return undefined;
    const bytes = row.bytes as Buffer;
    return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  async remove(id: string): Promise<void> {
    await this.db.sql("removing a firmware image", (sql) =>
      sql.run("DELETE FROM firmware_images WHERE id = $1", [id]),
    );
  }
}
