import {
  auditDetailText,
  auditFromRow,
  checkCommandSeqFloor,
  checkCount,
  commandSeqExhausted,
  credentialExists,
  credentialFromRow,
} from "./credential-rows.ts";
import type { SqliteDatabase as Db } from "./sqlite-database.ts";
import type { AuditEntry, AuditStore, CredentialRecord, CredentialStore } from "./storage.ts";

/** Device credentials in SQLite (table `device_credentials`, migration 4). */
export class SqliteCredentialStore implements CredentialStore {
  constructor(private readonly db: Db) {}

  async add(input: { deviceId: string; hash: string; at: number }): Promise<CredentialRecord> {
    const row = this.db
      .prepare(
        `INSERT INTO device_credentials (device_id, hash, created_at) VALUES (?, ?, ?)
         ON CONFLICT (device_id) DO NOTHING RETURNING *`,
      )
      .get(input.deviceId, input.hash, input.at);
    if (!row) throw credentialExists(input.deviceId);
    return credentialFromRow(row);
  }

  async get(deviceId: string): Promise<CredentialRecord | undefined> {
    const row = this.db.prepare("SELECT * FROM device_credentials WHERE device_id = ?").get(deviceId);
    return row && credentialFromRow(row);
  }

  async list(): Promise<CredentialRecord[]> {
    return this.db
      .prepare("SELECT * FROM device_credentials ORDER BY device_id")
      .all()
      .map(credentialFromRow);
  }

  async replace(input: { deviceId: string; hash: string; at: number }): Promise<boolean> {
    return (
      this.db
        .prepare("UPDATE device_credentials SET hash = ?, rotated_at = ? WHERE device_id = ?")
        .run(input.hash, input.at, input.deviceId).changes > 0
    );
  }

  async remove(deviceId: string): Promise<boolean> {
    return this.db.prepare("DELETE FROM device_credentials WHERE device_id = ?").run(deviceId).changes > 0;
  }

  async nextCommandSeq(deviceId: string, atLeast: number): Promise<number | undefined> {
    checkCommandSeqFloor(deviceId, atLeast);
    const row = this.db
      .prepare(
        `UPDATE device_credentials SET command_seq = MAX(command_seq, CAST(? AS INTEGER)) + 1
         WHERE device_id = ? AND command_seq < ? RETURNING command_seq`,
      )
      .get(atLeast, deviceId, Number.MAX_SAFE_INTEGER);
    if (row) return row.command_seq as number;
    if (await this.get(deviceId)) throw commandSeqExhausted(deviceId);
    return undefined;
  }

  async setAllowUnsigned(deviceId: string, allow: boolean): Promise<boolean> {
    return (
      this.db
        .prepare("UPDATE device_credentials SET allow_unsigned = ? WHERE device_id = ?")
        .run(allow ? 1 : 0, deviceId).changes > 0
    );
  }
}

/** The audit log in SQLite (table `audit`, migration 4): newest first by id (the rowid). */
export class SqliteAuditStore implements AuditStore {
  constructor(private readonly db: Db) {}

  async record(entry: Omit<AuditEntry, "id">): Promise<void> {
    this.db
      .prepare("INSERT INTO audit (at, actor, action, target, detail, outcome) VALUES (?, ?, ?, ?, ?, ?)")
      .run(entry.at, entry.actor, entry.action, entry.target, auditDetailText(entry.detail), entry.outcome);
  }

  async list(filter: { limit: number; before?: number }): Promise<AuditEntry[]> {
    checkCount("The audit list's limit", filter.limit);
    if (filter.before !== undefined) checkCount("The audit list's `before` id", filter.before);
    const rows =
      filter.before === undefined
        ? this.db.prepare("SELECT * FROM audit ORDER BY id DESC LIMIT ?").all(filter.limit)
        : this.db
            .prepare("SELECT * FROM audit WHERE id < ? ORDER BY id DESC LIMIT ?")
            .all(filter.before, filter.limit);
    return rows.map(auditFromRow);
  }

  async prune(keep: number): Promise<number> {
    checkCount("The number of audit entries to keep", keep);
    return this.db
      .prepare("DELETE FROM audit WHERE id <= (SELECT id FROM audit ORDER BY id DESC LIMIT 1 OFFSET ?)")
      .run(keep).changes;
  }
}
