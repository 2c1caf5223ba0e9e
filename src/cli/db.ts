import { type Command, Option } from "commander";
import { DEFAULT_DATA_DIR } from "../server/server-options.ts";
import { migrateStorage, type SchemaStatus, storageStatus } from "../server/storage/open-storage.ts";
import type { CliIo } from "./io.ts";
import { parseIntegerOption } from "./key-options.ts";
import { assertDataWritable } from "./writable-data.ts";

export interface DbOptions {
  /** postgres:// URL; unset: SQLite in --data. */
  db?: string;
  data: string;
  json?: boolean;
  /** Seconds to wait for an unreachable PostgreSQL. */
  dbWait?: number;
}

function target(options: DbOptions) {
  return {
    db: options.db,
    dataDir: options.data,
    ...(options.dbWait !== undefined ? { startRetryMs: options.dbWait * 1000 } : {}),
  };
}

/** --db-wait, shared with `mpota serve`. */
export function dbWaitOption(): Option {
  return new Option(
    "--db-wait <seconds>",
    "wait this long for an unreachable PostgreSQL before giving up (default 10)",
  ).argParser(parseIntegerOption("--db-wait"));
}

/** The --db option every command that opens the server's database shares (also MPOTA_DB). */
export function dbOption(): Option {
  return new Option(
    "--db <url>",
    "PostgreSQL database (postgres://USER:PASSWORD@HOST:5432/DATABASE) instead of SQLite in --data",
  ).env("MPOTA_DB");
}

function stateOf(status: SchemaStatus): "current" | "pending" | "too-new" {
  return status.tooNew ? "too-new" : status.pending.length > 0 ? "pending" : "current";
}

/** `mpota db status`: the database's schema version against this mpota's, and what migrating would do. */
export async function dbStatusCommand(options: DbOptions, io: CliIo): Promise<void> {
  // SQLite opens a WAL database only with write access, even to read it.
  if (!options.db) assertDataWritable({ dataDir: options.data, sqlite: true });
  const status = await storageStatus(target(options));
  if (options.json) {
    io.out(
      `${JSON.stringify(
        {
          backend: status.backend,
          description: status.description,
          schemaVersion: status.database,
          codeVersion: status.code,
          state: stateOf(status),
          pending: status.pending,
        },
        null,
        2,
      )}\n`,
    );
    return;
  }
  const lines = [
    `Database: ${status.description}`,
    `Schema version: ${status.database}${status.database === 0 ? " (empty: nothing created yet)" : ""}; this mpota: ${status.code}`,
  ];
  if (status.tooNew) {
    lines.push(
      `The database was written by a newer mpota: this one refuses to use it. Upgrade mpota (or point --db/--data elsewhere).`,
    );
  } else if (status.pending.length === 0) {
    lines.push("Up to date: no migration pending.");
  } else {
    lines.push("Pending migrations (`mpota db migrate` applies them; `mpota serve` does at start):");
    for (const m of status.pending) lines.push(`  ${m.version}  ${m.description}`);
  }
  io.out(`${lines.join("\n")}\n`);
}

/** `mpota db migrate`: applies every pending migration, each in its own transaction, and says which. */
export async function dbMigrateCommand(options: DbOptions, io: CliIo): Promise<void> {
  if (!options.db) assertDataWritable({ dataDir: options.data, sqlite: true });
  const result = await migrateStorage(target(options));
  const lines = [`Database: ${result.description}`];
  for (const m of result.applied) lines.push(`Applied migration ${m.version}: ${m.description}`);
  lines.push(
    result.applied.length === 0
      ? `Nothing to do: schema version ${result.version} is current.`
      : `Schema version ${result.version}: up to date.`,
  );
  io.out(`${lines.join("\n")}\n`);
}

export function registerDbCommand(program: Command, io: CliIo): void {
  const db = program
    .command("db")
    .description(
      "The server's database: schema version and migrations (SQLite in --data, or PostgreSQL with --db).",
    )
    .addHelpText(
      "after",
      `
Exit codes: 0 done, 2 bad option, 24 database unusable or unreachable (the message says what to check),
25 the database was written by a newer mpota.`,
    );
  db.command("status")
    .description("Show the database's schema version, this mpota's, and the pending migrations.")
    .addOption(dbOption())
    .addOption(dbWaitOption())
    .option("--data <dir>", "the server's data directory (SQLite)", DEFAULT_DATA_DIR)
    .option("--json", "print JSON")
    .action((options: DbOptions) => dbStatusCommand(options, io));
  db.command("migrate")
    .description(
      "Apply pending migrations now (mpota serve also does at start); refuses a database newer than this mpota.",
    )
    .addOption(dbOption())
    .addOption(dbWaitOption())
    .option("--data <dir>", "the server's data directory (SQLite)", DEFAULT_DATA_DIR)
    .action((options: DbOptions) => dbMigrateCommand(options, io));
}
