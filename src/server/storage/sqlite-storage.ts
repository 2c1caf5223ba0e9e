import { existsSync, mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import type { DeviceTagStore, RolloutStore } from "./rollout-store.ts";
import { SqliteAuditStore, SqliteCredentialStore } from "./sqlite-credential-store.ts";
import type { SqliteDatabase } from "./sqlite-database.ts";
import { SqliteDeviceStore } from "./sqlite-device-store.ts";
import { SqliteDeviceTagStore } from "./sqlite-device-tag-store.ts";
import { openSqlite } from "./sqlite-driver.ts";
import { SqliteFirmwareStore } from "./sqlite-firmware-store.ts";
import { SqliteInstanceStore, SqliteSettingStore } from "./sqlite-instance-store.ts";
import { SqliteJobStore } from "./sqlite-job-store.ts";
import { SQLITE_MIGRATIONS, SQLITE_SCHEMA_VERSION } from "./sqlite-migrations.ts";
import { SqliteRolloutStore } from "./sqlite-rollout-store.ts";
import {
  type AuditStore,
  type CredentialStore,
  type DeviceStore,
  type FirmwareStore,
  type ImageStore,
  type InstanceStore,
  type JobStore,
  SchemaTooNewError,
  type SettingStore,
  type Storage,
  StorageError,
} from "./storage.ts";

type Db = SqliteDatabase;

export const SQLITE_FILE_NAME = "mpota.db";

/**
 * Opens (or creates) `<dataDir>/mpota.db`: WAL journal, full fsync, foreign
 * keys, and every pending migration applied in one transaction each. A
 * database written by a newer mpota is refused, never touched.
 */
export async function openSqliteStorage(dataDir: string): Promise<Storage> {
  const dir = resolve(dataDir);
  try {
    mkdirSync(dir, { recursive: true });
  } catch (error) {
    throw new StorageError(
      `Cannot create the data directory ${dir}: ${(error as Error).message}. Pass --data DIR with a writable directory.`,
    );
  }
  const path = join(dir, SQLITE_FILE_NAME);
  let db: Db;
  try {
    db = openSqlite(path, { timeoutMs: 5000 });
    db.pragma("journal_mode = WAL");
    db.pragma("synchronous = FULL");
    db.pragma("foreign_keys = ON");
  } catch (error) {
    if (error instanceof StorageError) throw error;
    throw new StorageError(
      `Cannot open the database ${path}: ${(error as Error).message}. If the file is damaged, move it away (the firmware files next to it stay usable) and start again.`,
      { cause: error },
    );
  }
  try {
    migrate(db, path);
  } catch (error) {
    db.close();
    throw error;
  }
  return new SqliteStorage(db, path);
}

/**
 * The schema version of `<dataDir>/mpota.db` without creating or changing
 * anything (0 when there is no database yet), and the file's path.
 */
export function sqliteSchemaVersion(dataDir: string): { path: string; version: number } {
  const path = join(resolve(dataDir), SQLITE_FILE_NAME);
  if (!existsSync(path)) return { path, version: 0 };
  let db: Db;
  try {
    db = openSqlite(path, { readonly: true });
  } catch (error) {
    if (error instanceof StorageError) throw error;
    throw new StorageError(
      `Cannot open the database ${path}: ${(error as Error).message}. Check the --data directory.`,
      { cause: error },
    );
  }
  try {
    return { path, version: db.pragma("user_version") as number };
  } catch (error) {
    throw new StorageError(
      `Cannot read the database ${path}: ${(error as Error).message}. If the file is damaged, move it away and start again.`,
      { cause: error },
    );
  } finally {
    db.close();
  }
}

function migrate(db: Db, path: string): void {
  const current = db.pragma("user_version") as number;
  if (current > SQLITE_SCHEMA_VERSION) {
    throw new SchemaTooNewError(
      `The database ${path} has schema version ${current}, but this mpota knows only up to version ${SQLITE_SCHEMA_VERSION}: a newer mpota wrote it. Upgrade mpota, or start this one with another --data directory. The database was not changed.`,
    );
  }
  for (const migration of SQLITE_MIGRATIONS) {
    if (migration.version <= current) continue;
    try {
      db.transaction(() => {
        db.exec(migration.sql);
        db.pragma(`user_version = ${migration.version}`);
      })();
    } catch (error) {
      throw new StorageError(
        `Migration ${migration.version} (${migration.description}) of ${path} failed and was rolled back: ${(error as Error).message}. Please report this; the database is unchanged at version ${db.pragma("user_version")}.`,
        { cause: error },
      );
    }
  }
}

class SqliteStorage implements Storage {
  readonly devices: DeviceStore;
  readonly firmware: FirmwareStore;
  readonly jobs: JobStore;
  readonly tags: DeviceTagStore;
  readonly rollouts: RolloutStore;
  readonly instances: InstanceStore;
  readonly settings: SettingStore;
  readonly credentials: CredentialStore;
  readonly audit: AuditStore;
  /** Images stay in the data directory's files: one machine, one directory. */
  readonly images: ImageStore | null = null;
  readonly description: string;
  private closed = false;

  constructor(
    private readonly db: Db,
    path: string,
  ) {
    this.description = `SQLite ${path}`;
    this.devices = new SqliteDeviceStore(db);
    this.firmware = new SqliteFirmwareStore(db);
    this.jobs = new SqliteJobStore(db);
    this.tags = new SqliteDeviceTagStore(db);
    this.rollouts = new SqliteRolloutStore(db);
    this.instances = new SqliteInstanceStore(db);
    this.settings = new SqliteSettingStore(db);
    this.credentials = new SqliteCredentialStore(db);
    this.audit = new SqliteAuditStore(db);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.db.close();
  }
}
