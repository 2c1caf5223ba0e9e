import { UsageError } from "../../errors.ts";
import { redactUrl } from "./postgres-connection.ts";
import { POSTGRES_MIGRATIONS, POSTGRES_SCHEMA_VERSION } from "./postgres-migrations.ts";
import {
  migratePostgresDatabase,
  openPostgresStorage,
  type PostgresStorageOptions,
  postgresStatus,
} from "./postgres-storage.ts";
import type { Migration } from "./schema.ts";
import { SQLITE_MIGRATIONS, SQLITE_SCHEMA_VERSION } from "./sqlite-migrations.ts";
import { openSqliteStorage, sqliteSchemaVersion } from "./sqlite-storage.ts";
import type { Storage } from "./storage.ts";

/** Where the server keeps its state: `db` (a URL) when given, else SQLite in `dataDir`. */
export interface OpenStorageOptions extends PostgresStorageOptions {
  /** postgres:// or postgresql:// URL; undefined or empty: SQLite in dataDir. */
  db?: string | undefined;
  dataDir: string;
}

export type StorageBackend = "sqlite" | "postgres";

/** The backend `db` names, or a UsageError for anything else. */
export function storageBackend(db: string | undefined): StorageBackend {
  if (db === undefined || db.trim() === "") return "sqlite";
  if (/^postgres(ql)?:\/\//i.test(db.trim())) return "postgres";
  throw new UsageError(
    `--db ${redactUrl(db)} is not a database mpota can use: give a PostgreSQL URL (postgres://USER:PASSWORD@HOST:5432/DATABASE), or leave --db and MPOTA_DB unset for SQLite in the --data directory.`,
  );
}

/** Opens the storage the options name, applying pending migrations. */
export async function openStorage(options: OpenStorageOptions): Promise<Storage> {
  return storageBackend(options.db) === "postgres"
    ? openPostgresStorage((options.db as string).trim(), options)
    : openSqliteStorage(options.dataDir);
}

export interface SchemaStatus {
  backend: StorageBackend;
  /** "SQLite /data/mpota.db", "PostgreSQL mpota@db:5432/mpota" (never a password). */
  description: string;
  /** The database's schema version (0: empty, nothing created yet). */
  database: number;
  /** The newest version this mpota knows. */
  code: number;
  /** Migrations `mpota db migrate` (or `mpota serve`) would apply. */
  pending: Array<Pick<Migration, "version" | "description">>;
  /** The database was written by a newer mpota: this one refuses it. */
  tooNew: boolean;
}

function status(
  backend: StorageBackend,
  description: string,
  database: number,
  migrations: readonly Migration[],
  code: number,
): SchemaStatus {
  return {
    backend,
    description,
    database,
    code,
    pending: migrations
      .filter((m) => m.version > database)
      .map((m) => ({ version: m.version, description: m.description })),
    tooNew: database > code,
  };
}

/** Reads the schema version without changing anything (an absent SQLite file is not created). */
export async function storageStatus(options: OpenStorageOptions): Promise<SchemaStatus> {
  if (storageBackend(options.db) === "postgres") {
    const { description, version } = await postgresStatus((options.db as string).trim(), options);
    return status("postgres", description, version, POSTGRES_MIGRATIONS, POSTGRES_SCHEMA_VERSION);
  }
  const { path, version } = sqliteSchemaVersion(options.dataDir);
  return status("sqlite", `SQLite ${path}`, version, SQLITE_MIGRATIONS, SQLITE_SCHEMA_VERSION);
}

export interface MigrateResult {
  description: string;
  applied: Array<Pick<Migration, "version" | "description">>;
  /** The schema version after migrating. */
  version: number;
}

/** Applies every pending migration (what `mpota serve` does at start); SchemaTooNewError for a newer database. */
export async function migrateStorage(options: OpenStorageOptions): Promise<MigrateResult> {
  if (storageBackend(options.db) === "postgres") {
    const { description, applied, version } = await migratePostgresDatabase(
      (options.db as string).trim(),
      options,
    );
    return {
      description,
      applied: applied.map(({ version: v, description: d }) => ({ version: v, description: d })),
      version,
    };
  }
  const before = await storageStatus(options);
  // A newer database is refused by opening it (SchemaTooNewError), untouched.
  const storage = await openSqliteStorage(options.dataDir);
  await storage.close();
  return { description: before.description, applied: before.pending, version: SQLITE_SCHEMA_VERSION };
}
