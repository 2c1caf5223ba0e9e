import { FIRMWARE_INSERT_COLUMNS, firmwareFromRow, firmwareValues } from "./firmware-rows.ts";
import type { PostgresDb as Db } from "./postgres-connection.ts";
import type { FirmwareAddResult, FirmwareRecord, FirmwareStore } from "./storage.ts";

/** Firmware metadata in PostgreSQL (the bytes: PostgresImageStore). */
export class PostgresFirmwareStore implements FirmwareStore {
  constructor(private readonly db: Db) {}

  async add(record: FirmwareRecord): Promise<FirmwareAddResult> {
    return this.db.tx("adding firmware", async (sql) => {
      // Inserting first makes the check race-free between instances: a
      // conflicting insert waits for the other transaction, then does nothing.
      for (;;) {
        const inserted = await sql.run(
          `INSERT INTO firmware (${FIRMWARE_INSERT_COLUMNS})
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING`,
          firmwareValues(record),
        );
        if (inserted > 0) return { ok: true, record };
        const same = await sql.one("SELECT * FROM firmware WHERE id = $1", [record.id]);
        if (same) return { ok: false, conflict: "identity", existing: firmwareFromRow(same) };
        const named = await sql.one("SELECT * FROM firmware WHERE name = $1 AND version = $2", [
          record.name,
          record.version,
        ]);
        if (named) return { ok: false, conflict: "name-version", existing: firmwareFromRow(named) };
        // The conflicting row was removed in the meantime: try again.
      }
    });
  }

  async get(id: string): Promise<FirmwareRecord | undefined> {
    const row = await this.db.sql("reading firmware", (sql) =>
      sql.one("SELECT * FROM firmware WHERE id = $1", [id]),
    );
    return row && firmwareFromRow(row);
  }

  async findByName(name: string, version?: string): Promise<FirmwareRecord[]> {
    const rows = await this.db.sql("finding firmware", (sql) =>
      version === undefined
        ? sql.rows("SELECT * FROM firmware WHERE name = $1 ORDER BY added_at DESC, ord DESC", [name])
        : sql.rows("SELECT * FROM firmware WHERE name = $1 AND version = $2", [name, version]),
    );
    return rows.map(firmwareFromRow);
  }

  async list(): Promise<FirmwareRecord[]> {
    return (
      await this.db.sql("listing firmware", (sql) =>
        sql.rows("SELECT * FROM firmware ORDER BY added_at DESC, ord DESC"),
      )
    ).map(firmwareFromRow);
  }

  async remove(id: string): Promise<boolean> {
    return (
      (await this.db.sql("removing firmware", (sql) => sql.run("DELETE FROM firmware WHERE id = $1", [id]))) >
      0
    );
  }
}
