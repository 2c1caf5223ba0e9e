import { createRequire } from "node:module";
import { openBetterSqlite } from "./sqlite-better-driver.ts";
import { loadNodeSqlite, openNodeSqlite } from "./sqlite-node-driver.ts";
import { StorageError } from "./storage.ts";

/**
 * The one SQLite interface the SQLite stores use, whatever runs it: Node's
 * own `node:sqlite` where the runtime has it (22.13 and later, 24), else
 * the better-sqlite3 package (Node 20), loaded only then, so a newer Node
 * never needs it built. Both are synchronous; both bind a JS number as REAL
 * (STRICT INTEGER columns store whole numbers as integers all the same).
 */

/**
 * What a statement binds: positional values (null, number, bigint, string,
 * bytes), or one object of named ones (exactly the names used: node:sqlite
 * refuses others).
 */
export type SqlParams = unknown[];
export type SqlRow = Record<string, unknown>;

export interface SqliteStatement {
  /** The first row, or undefined. */
  get(...params: SqlParams): SqlRow | undefined;
  all(...params: SqlParams): SqlRow[];
  /** Runs it; how many rows it changed. */
  run(...params: SqlParams): { changes: number };
}

export interface SqliteDatabase {
  /** "node:sqlite" or "better-sqlite3". */
  readonly driver: string;
  prepare(sql: string): SqliteStatement;
  /** Runs one or more statements without parameters. */
  exec(sql: string): void;
  /** `PRAGMA <text>`: the first column of its first row (undefined when it gives none). */
  pragma(text: string): unknown;
  /** `fn` wrapped in BEGIN/COMMIT (ROLLBACK when it throws; a savepoint when nested). */
  transaction<A extends unknown[], R>(fn: (...args: A) => R): (...args: A) => R;
  close(): void;
}

export interface SqliteOpenOptions {
  readonly?: boolean;
  /** How long a statement waits for a lock another connection holds (ms). */
  timeoutMs?: number;
}

/** Which driver this runtime uses: node:sqlite when it has it. */
export function sqliteDriverName(): "node:sqlite" | "better-sqlite3" {
  return loadNodeSqlite() ? "node:sqlite" : "better-sqlite3";
}

/** Opens (or creates, unless read-only) the database file at `path`. */
export function openSqlite(path: string, options: SqliteOpenOptions = {}): SqliteDatabase {
  const nodeSqlite = loadNodeSqlite();
  if (nodeSqlite) return openNodeSqlite(nodeSqlite, path, options);
  let module: unknown;
  try {
    module = createRequire(import.meta.url)("better-sqlite3");
  } catch (error) {
    throw missingDriver(error);
  }
  try {
    return openBetterSqlite(module, path, options);
  } catch (error) {
    // The package is there but its native part was not built for this Node.
    if (/bindings|better_sqlite3\.node|NODE_MODULE_VERSION/.test((error as Error).message)) {
      throw missingDriver(error);
    }
    throw error;
  }
}

function missingDriver(cause: unknown): StorageError {
  return new StorageError(
    `SQLite is not available on Node ${process.version}: it has no node:sqlite (Node 22.13 and later have it) and the better-sqlite3 driver is not built (${(cause as Error).message.split("\n")[0]}). Use Node 22.13 or later (24 recommended), or build the driver with: npm rebuild better-sqlite3 --allow-scripts=better-sqlite3`,
    { cause },
  );
}
