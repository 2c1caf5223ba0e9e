import { PostgresDb, type PostgresPoolOptions } from "./postgres-connection.ts";
import { PostgresAuditStore, PostgresCredentialStore } from "./postgres-credential-store.ts";
import { PostgresDeviceStore } from "./postgres-device-store.ts";
import { PostgresDeviceTagStore } from "./postgres-device-tag-store.ts";
import { PostgresFirmwareStore } from "./postgres-firmware-store.ts";
import {
  PostgresImageStore,
  PostgresInstanceStore,
  PostgresSettingStore,
} from "./postgres-instance-store.ts";
import { PostgresJobStore } from "./postgres-job-store.ts";
import { migratePostgres, POSTGRES_MIGRATIONS, postgresSchemaVersion } from "./postgres-migrations.ts";
import { PostgresRolloutStore } from "./postgres-rollout-store.ts";
import type { DeviceTagStore, RolloutStore } from "./rollout-store.ts";
import type { Migration } from "./schema.ts";
import type {
  AuditStore,
  CredentialStore,
  DeviceStore,
  FirmwareStore,
  ImageStore,
  InstanceStore,
  JobStore,
  SettingStore,
  Storage,
} from "./storage.ts";
import { StorageError } from "./storage.ts";

type Db = PostgresDb;

export interface PostgresStorageOptions extends PostgresPoolOptions {
  /** How long to keep trying while the database is unreachable at start (default 10 s). */
  startRetryMs?: number;
  /** The schema (tests give a list with a broken migration). */
  migrations?: readonly Migration[];
}

export const DEFAULT_START_RETRY_MS = 10_000;

/**
 * Connects to the PostgreSQL database at `url` (retrying for a bounded time
 * while it is unreachable), applies pending migrations, and returns the
 * storage. Several instances may share the database: every change is a
 * transaction, and jobs and rollouts are leased with row locks
 * (`FOR NO KEY UPDATE SKIP LOCKED`) so no two instances hold one at a time.
 */
export async function openPostgresStorage(
  url: string,
  options: PostgresStorageOptions = {},
): Promise<Storage> {
  const db = PostgresDb.create(url, options);
  try {
    const client = await db.connectAtStart(options.startRetryMs ?? DEFAULT_START_RETRY_MS);
    try {
      await migratePostgres(client, db.target.label, options.migrations ?? POSTGRES_MIGRATIONS);
    } catch (error) {
      client.release(true);
      throw error instanceof StorageError ? error : db.wrap(error, "migrating the schema");
    }
    client.release();
  } catch (error) {
    await db.close();
    throw error;
  }
  return new PostgresStorage(db);
}

/** What `mpota db status` shows of a PostgreSQL database; nothing is changed. */
export async function postgresStatus(
  url: string,
  options: PostgresStorageOptions = {},
): Promise<{ description: string; version: number }> {
  const db = PostgresDb.create(url, options);
  try {
    const client = await db.connectAtStart(options.startRetryMs ?? DEFAULT_START_RETRY_MS);
    try {
      return { description: describe(db), version: await postgresSchemaVersion(client) };
    } catch (error) {
      throw db.wrap(error, "reading the schema version");
    } finally {
      client.release();
    }
  } finally {
    await db.close();
  }
}

/** `mpota db migrate`: applies pending migrations; returns the ones applied. */
export async function migratePostgresDatabase(
  url: string,
  options: PostgresStorageOptions = {},
): Promise<{ description: string; applied: Migration[]; version: number }> {
  const db = PostgresDb.create(url, options);
  try {
    const client = await db.connectAtStart(options.startRetryMs ?? DEFAULT_START_RETRY_MS);
    try {
      const applied = await migratePostgres(
        client,
        db.target.label,
        options.migrations ?? POSTGRES_MIGRATIONS,
      );
      return { description: describe(db), applied, version: await postgresSchemaVersion(client) };
    } catch (error) {
      throw error instanceof StorageError ? error : db.wrap(error, "migrating the schema");
    } finally {
      client.release();
    }
  } finally {
    await db.close();
  }
}

function describe(db: Db): string {
  return `PostgreSQL ${db.target.label}`;
}

class PostgresStorage implements Storage {
  readonly devices: DeviceStore;
  readonly firmware: FirmwareStore;
  readonly jobs: JobStore;
  readonly tags: DeviceTagStore;
  readonly rollouts: RolloutStore;
  readonly instances: InstanceStore;
  readonly settings: SettingStore;
  readonly credentials: CredentialStore;
  readonly audit: AuditStore;
  readonly images: ImageStore;
  readonly description: string;

  constructor(private readonly db: Db) {
    this.description = describe(db);
    this.devices = new PostgresDeviceStore(db);
    this.firmware = new PostgresFirmwareStore(db);
    this.jobs = new PostgresJobStore(db);
    this.tags = new PostgresDeviceTagStore(db);
    this.rollouts = new PostgresRolloutStore(db);
    this.instances = new PostgresInstanceStore(db);
    this.settings = new PostgresSettingStore(db);
    this.credentials = new PostgresCredentialStore(db);
    this.audit = new PostgresAuditStore(db);
    this.images = new PostgresImageStore(db);
  }

  async close(): Promise<void> {
    await this.db.close();
  }
}
