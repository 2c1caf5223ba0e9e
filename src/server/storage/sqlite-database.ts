/**
 * The one SQLite interface the SQLite stores use, whichever driver runs it
 * (sqlite-driver.ts picks one).
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
