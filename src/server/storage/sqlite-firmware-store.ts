import { FIRMWARE_INSERT_COLUMNS, firmwareFromRow, firmwareValues } from "./firmware-rows.ts";
import type { SqliteDatabase as Db } from "./sqlite-database.ts";
import type { FirmwareAddResult, FirmwareRecord, FirmwareStore } from "./storage.ts";

/** Firmware metadata in SQLite (the image files live in the data directory). */
export class SqliteFirmwareStore implements FirmwareStore {
  private readonly addTx: (record: FirmwareRecord) => FirmwareAddResult;

  constructor(private readonly db: Db) {
    const byId = db.prepare("SELECT * FROM firmware WHERE id = ?");
    const byNameVersion = db.prepare("SELECT * FROM firmware WHERE name = ? AND version = ?");
    const insert = db.prepare(
      `INSERT INTO firmware (${FIRMWARE_INSERT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    this.addTx = db.transaction((record: FirmwareRecord): FirmwareAddResult => {
      const same = byId.get(record.id);
      if (same) return { ok: false, conflict: "identity", existing: firmwareFromRow(same) };
      const named = byNameVersion.get(record.name, record.version);
      if (named) return { ok: false, conflict: "name-version", existing: firmwareFromRow(named) };
      insert.run(...firmwareValues(record));
      return { ok: true, record };
    });
  }

  async add(record: FirmwareRecord): Promise<FirmwareAddResult> {
    return this.addTx(record);
  }

  async get(id: string): Promise<FirmwareRecord | undefined> {
    const row = this.db.prepare("SELECT * FROM firmware WHERE id = ?").get(id);
    return row && firmwareFromRow(row);
  }

  async findByName(name: string, version?: string): Promise<FirmwareRecord[]> {
    const rows =
      version === undefined
        ? this.db
            .prepare("SELECT * FROM firmware WHERE name = ? ORDER BY added_at DESC, rowid DESC")
            .all(name)
        : this.db.prepare("SELECT * FROM firmware WHERE name = ? AND version = ?").all(name, version);
    return rows.map(firmwareFromRow);
  }

  async list(): Promise<FirmwareRecord[]> {
    return this.db
      .prepare("SELECT * FROM firmware ORDER BY added_at DESC, rowid DESC")
      .all()
      .map(firmwareFromRow);
  }

  async remove(id: string): Promise<boolean> {
    return this.db.prepare("DELETE FROM firmware WHERE id = ?").run(id).changes > 0;
  }
}
