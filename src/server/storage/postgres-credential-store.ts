import {
  auditDetailText,
  auditFromRow,
  checkCommandSeqFloor,
  checkCount,
  commandSeqExhausted,
  credentialExists,
  credentialFromRow,
} from "./credential-rows.ts";
import type { PostgresDb } from "./postgres-connection.ts";
import type { AuditEntry, AuditStore, CredentialRecord, CredentialStore } from "./storage.ts";

/**
 * Device credentials in PostgreSQL (table `device_credentials`, migration 4).
 * Every change is one statement on the primary key, so instances sharing the
 * database need no locks of their own: of two `add`s for one device the
 * second waits for the first and then inserts nothing, and two
 * `nextCommandSeq`s for one device are serialised by the row lock the UPDATE
 * takes (the second reads the first one's committed counter).
 */
export class PostgresCredentialStore implements CredentialStore {
  constructor(private readonly db: PostgresDb) {}

  async add(input: { deviceId: string; hash: string; at: number }): Promise<CredentialRecord> {
    const row = await this.db.sql("adding a device credential", (sql) =>
      sql.one(
        `INSERT INTO device_credentials (device_id, hash, created_at) VALUES ($1, $2, $3)
         ON CONFLICT (device_id) DO NOTHING RETURNING *`,
        [input.deviceId, input.hash, input.at],
      ),
    );
    if (!row) throw credentialExists(input.deviceId);
    return credentialFromRow(row);
  }

  async get(deviceId: string): Promise<CredentialRecord | undefined> {
    const row = await this.db.sql("reading a device credential", (sql) =>
      sql.one("SELECT * FROM device_credentials WHERE device_id = $1", [deviceId]),
    );
    return row && credentialFromRow(row);
  }

  async list(): Promise<CredentialRecord[]> {
    return (
      await this.db.sql("listing device credentials", (sql) =>
        sql.rows("SELECT * FROM device_credentials ORDER BY device_id"),
      )
    ).map(credentialFromRow);
  }

  async replace(input: { deviceId: string; hash: string; at: number }): Promise<boolean> {
    const changed = await this.db.sql("replacing a device credential", (sql) =>
      sql.run("UPDATE device_credentials SET hash = $1, rotated_at = $2 WHERE device_id = $3", [
        input.hash,
        input.at,
        input.deviceId,
      ]),
    );
    return changed > 0;
  }

  async remove(deviceId: string): Promise<boolean> {
    const changed = await this.db.sql("removing a device credential", (sql) =>
      sql.run("DELETE FROM device_credentials WHERE device_id = $1", [deviceId]),
    );
    return changed > 0;
  }

  async nextCommandSeq(deviceId: string, atLeast: number): Promise<number | undefined> {
    checkCommandSeqFloor(deviceId, atLeast);
    const row = await this.db.sql("issuing a command counter", (sql) =>
      sql.one(
        `UPDATE device_credentials SET command_seq = GREATEST(command_seq, $2::bigint) + 1
         WHERE device_id = $1 AND command_seq < $3::bigint RETURNING command_seq`,
        [deviceId, atLeast, Number.MAX_SAFE_INTEGER],
      ),
    );
    if (row) return row.command_seq as number;
    if (await this.get(deviceId)) throw commandSeqExhausted(deviceId);
    return undefined;
  }

  async setAllowUnsigned(deviceId: string, allow: boolean): Promise<boolean> {
    const changed = await this.db.sql("changing a device's unsigned-command allowance", (sql) =>
      sql.run("UPDATE device_credentials SET allow_unsigned = $1 WHERE device_id = $2", [allow, deviceId]),
    );
    return changed > 0;
  }
}

/** The audit log in PostgreSQL (table `audit`, migration 4): newest first by id. */
export class PostgresAuditStore implements AuditStore {
  constructor(private readonly db: PostgresDb) {}

  async record(entry: Omit<AuditEntry, "id">): Promise<void> {
    await this.db.sql("recording an audit entry", (sql) =>
      sql.run(
        "INSERT INTO audit (at, actor, action, target, detail, outcome) VALUES ($1, $2, $3, $4, $5, $6)",
        [entry.at, entry.actor, entry.action, entry.target, auditDetailText(entry.detail), entry.outcome],
      ),
    );
  }

  async list(filter: { limit: number; before?: number }): Promise<AuditEntry[]> {
    checkCount("The audit list's limit", filter.limit);
    if (filter.before !== undefined) checkCount("The audit list's `before` id", filter.before);
    const rows = await this.db.sql("listing the audit log", (sql) =>
      filter.before === undefined
        ? sql.rows("SELECT * FROM audit ORDER BY id DESC LIMIT $1", [filter.limit])
        : sql.rows("SELECT * FROM audit WHERE id < $1 ORDER BY id DESC LIMIT $2", [
            filter.before,
            filter.limit,
          ]),
    );
    return rows.map(auditFromRow);
  }

  async prune(keep: number): Promise<number> {
    checkCount("The number of audit entries to keep", keep);
    return this.db.sql("pruning the audit log", (sql) =>
      sql.run("DELETE FROM audit WHERE id <= (SELECT id FROM audit ORDER BY id DESC LIMIT 1 OFFSET $1)", [
        keep,
      ]),
    );
  }
}
