import { createRequire } from "node:module";
import type {
  SqliteDatabase,
  SqliteOpenOptions,
  SqliteStatement,
  SqlParams,
  SqlRow,
} from "./sqlite-database.ts";
import { transactions } from "./sqlite-transaction.ts";

/**
 * The SQLite driver over Node's own `node:sqlite` (22.13 and later, 24).
 * Declared here rather than taken from @types/node, whose Node 20 typings
 * do not have it: only what this file calls.
 */
interface NodeStatement {
  get(...params: unknown[]): unknown;
  all(...params: unknown[]): unknown[];
  run(...params: unknown[]): { changes: number | bigint };
}
interface NodeDatabase {
  prepare(sql: string): NodeStatement;
  exec(sql: string): void;
  close(): void;
}
export interface NodeSqliteModule {
  DatabaseSync: new (path: string, options?: { readOnly?: boolean }) => NodeDatabase;
}

let loaded: NodeSqliteModule | null | undefined;

/**
 * `node:sqlite`, or null where the runtime has none (Node 20; 22 before
 * 22.13 without a flag). Loading it prints an ExperimentalWarning on Node
 * 22: that one warning is dropped, every other goes through.
 */
export function loadNodeSqlite(): NodeSqliteModule | null {
  if (loaded !== undefined) return loaded;
  const emitWarning = process.emitWarning;
  process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
    const type = typeof rest[0] === "string" ? rest[0] : (rest[0] as { type?: string } | undefined)?.type;
    const text = typeof warning === "string" ? warning : warning.message;
    if (type === "ExperimentalWarning" && text.startsWith("SQLite is an experimental feature")) return;
    (emitWarning as (...args: unknown[]) => void).call(process, warning, ...rest);
  }) as typeof process.emitWarning;
  try {
    loaded = createRequire(import.meta.url)("node:sqlite") as NodeSqliteModule;
  } catch {
    loaded = null;
  } finally {
    process.emitWarning = emitWarning;
  }
  return loaded;
}

/** node:sqlite gives rows without a prototype; the stores hand some out as they are. */
function plain(row: unknown): SqlRow {
  return { ...(row as SqlRow) };
}

export function openNodeSqlite(
  module: NodeSqliteModule,
  path: string,
  options: SqliteOpenOptions,
): SqliteDatabase {
  const db = new module.DatabaseSync(path, { readOnly: options.readonly ?? false });
  // The `timeout` option is newer than 22.13; the pragma works on every version.
  if (options.timeoutMs !== undefined) db.exec(`PRAGMA busy_timeout = ${Math.floor(options.timeoutMs)}`);
  const statements = new Map<string, SqliteStatement>();
  const exec = (sql: string) => db.exec(sql);
  return {
    driver: "node:sqlite",
    prepare(sql) {
      let statement = statements.get(sql);
      if (statement === undefined) {
        const s = db.prepare(sql);
        statement = {
          get: (...params: SqlParams) => {
            const row = s.get(...params);
            return row === undefined ? undefined : plain(row);
          },
          all: (...params: SqlParams) => s.all(...params).map(plain),
          run: (...params: SqlParams) => ({ changes: Number(s.run(...params).changes) }),
        };
        statements.set(sql, statement);
      }
      return statement;
    },
    exec,
    pragma(text) {
      const row = db.prepare(`PRAGMA ${text}`).get() as SqlRow | undefined;
      return row === undefined ? undefined : Object.values(row)[0];
    },
    transaction: transactions(exec),
    close() {
      statements.clear();
      db.close();
    },
  };
}
