import { type Migration, type SchemaDialect, schemaMigrations } from "./schema.ts";

/** SQLite's tables: STRICT, INTEGER milliseconds, the rowid as insertion order. */
const SQLITE: SchemaDialect = {
  key: "TEXT",
  time: "INTEGER",
  counter: "INTEGER",
  real: "REAL",
  serial: "INTEGER PRIMARY KEY AUTOINCREMENT",
  end: ") STRICT;",
  ord: "",
  newestFirst: "created_at",
  active: (condition) => `active INTEGER GENERATED ALWAYS AS (${condition}) VIRTUAL`,
  flag: (column, checked) =>
    `${column} INTEGER NOT NULL DEFAULT 0${checked ? ` CHECK (${column} IN (0, 1))` : ""}`,
  extra: { jobIndexes: "", migration3: "", migration3Description: "server instances and shared settings" },
};

/** The database's `user_version` holds the number of the last migration applied. */
export const SQLITE_MIGRATIONS: readonly Migration[] = schemaMigrations(SQLITE);

export const SQLITE_SCHEMA_VERSION = SQLITE_MIGRATIONS[SQLITE_MIGRATIONS.length - 1]?.version ?? 0;
