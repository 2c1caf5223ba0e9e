import { MpotaError } from "../../errors.ts";
import { type Migration, type SchemaDialect, schemaMigrations } from "./schema.ts";
import { SchemaTooNewError, StorageError } from "./storage.ts";

/**
 * PostgreSQL schema, as numbered migrations: the same tables as SQLite's
 * (schema.ts). The `schema_migrations` table lists the ones applied; each
 * runs in its own transaction.
 *
 * Times are BIGINT milliseconds; JSON values are TEXT (kept byte for byte as
 * written, like SQLite's; JSONB would refuse `\u0000` in a device's state).
 * Ids and tags sort bytewise (COLLATE "C"), as in SQLite. Tables that are
 * listed "newest first" have an `ord` column: insertion order, SQLite's rowid.
 */
const POSTGRES: SchemaDialect = {
  key: 'TEXT COLLATE "C"',
  time: "BIGINT",
  counter: "BIGINT",
  real: "DOUBLE PRECISION",
  serial: "BIGSERIAL PRIMARY KEY",
  end: ");",
  ord: "\n  ord BIGSERIAL NOT NULL,",
  newestFirst: "created_at, ord",
  active: (condition) => `active BOOLEAN GENERATED ALWAYS AS (${condition}) STORED`,
  flag: (column) => `${column} BOOLEAN NOT NULL DEFAULT FALSE`,
  extra: {
    jobIndexes: "\nCREATE INDEX jobs_by_lease_owner ON jobs(lease_owner) WHERE lease_owner IS NOT NULL;",
    migration3: `

CREATE TABLE firmware_images (
  id TEXT COLLATE "C" PRIMARY KEY,
  bytes BYTEA NOT NULL
);`,
    migration3Description: "server instances, shared settings and firmware images",
  },
};

export const POSTGRES_MIGRATIONS: readonly Migration[] = schemaMigrations(POSTGRES);

export const POSTGRES_SCHEMA_VERSION = POSTGRES_MIGRATIONS[POSTGRES_MIGRATIONS.length - 1]?.version ?? 0;

/** Key of the advisory lock that makes instances starting together migrate one after the other. */
const MIGRATION_LOCK = "7885925493162995049"; // "mpota-mi" as a big-endian int64

const CREATE_MIGRATIONS_TABLE = `CREATE TABLE IF NOT EXISTS schema_migrations (
  version INTEGER PRIMARY KEY,
  description TEXT NOT NULL,
  applied_at BIGINT NOT NULL
)`;

interface Queryable {
  query(sql: string, params?: unknown[]): Promise<{ rows: Array<Record<string, unknown>> }>;
}

/** The schema version of the database (0: no mpota tables yet), without changing anything. */
export async function postgresSchemaVersion(client: Queryable): Promise<number> {
  const exists = await client.query("SELECT to_regclass('schema_migrations') IS NOT NULL AS present");
  if (exists.rows[0]?.present !== true) return 0;
  const row = await client.query("SELECT COALESCE(MAX(version), 0) AS version FROM schema_migrations");
  return Number(row.rows[0]?.version ?? 0);
}

export function tooNewError(current: number, known: number, label: string): SchemaTooNewError {
  return new SchemaTooNewError(
    `The database ${label} has schema version ${current}, but this mpota knows only up to version ${known}: a newer mpota wrote it. Upgrade mpota, or start this one with another --db database. The database was not changed.`,
  );
}

/**
 * Applies every pending migration, each in its own transaction under an
 * advisory lock (a second instance waits, then finds nothing left to do).
 * A database newer than `migrations` is refused untouched; a migration that
 * fails is rolled back and reported with its number. Returns the ones applied.
 */
export async function migratePostgres(
  client: Queryable,
  label: string,
  migrations: readonly Migration[] = POSTGRES_MIGRATIONS,
  now: () => number = Date.now,
): Promise<Migration[]> {
  const known = migrations[migrations.length - 1]?.version ?? 0;
  const applied: Migration[] = [];
  for (;;) {
    await client.query("BEGIN");
    let current = 0;
    let next: Migration | undefined;
    try {
      await client.query(`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK})`);
      await client.query(CREATE_MIGRATIONS_TABLE);
      current = await postgresSchemaVersion(client);
      if (current > known) throw tooNewError(current, known, label);
      next = migrations.find((m) => m.version > current);
      if (next === undefined) {
        await client.query("COMMIT");
        return applied;
      }
      await client.query(next.sql);
      await client.query(
        "INSERT INTO schema_migrations (version, description, applied_at) VALUES ($1, $2, $3)",
        [next.version, next.description, now()],
      );
      await client.query("COMMIT");
      applied.push(next);
    } catch (error) {
      await client.query("ROLLBACK").catch(() => undefined);
      if (error instanceof MpotaError || next === undefined) throw error;
      throw new StorageError(
        `Migration ${next.version} (${next.description}) of ${label} failed and was rolled back: ${(error as Error).message}. Please report this; the database is unchanged at version ${current}.`,
        { cause: error },
      );
    }
  }
}
