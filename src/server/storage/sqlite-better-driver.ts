import type BetterSqlite3 from "better-sqlite3";
import type { SqliteDatabase, SqliteOpenOptions, SqliteStatement, SqlParams } from "./sqlite-database.ts";

/**
 * The SQLite driver over the better-sqlite3 package, for Node 20 (no
 * node:sqlite). `module` is the package, loaded by the caller only when
 * this driver is the one used.
 */
export function openBetterSqlite(module: unknown, path: string, options: SqliteOpenOptions): SqliteDatabase {
  const Database = module as typeof BetterSqlite3;
  const db = new Database(path, {
    readonly: options.readonly ?? false,
    fileMustExist: options.readonly ?? false,
    ...(options.timeoutMs === undefined ? {} : { timeout: options.timeoutMs }),
  });
  const statements = new Map<string, SqliteStatement>();
  return {
    driver: "better-sqlite3",
    prepare(sql) {
      let statement = statements.get(sql);
      if (statement === undefined) {
        const s = db.prepare(sql);
        statement = {
          get: (...params: SqlParams) => s.get(...params) as ReturnType<SqliteStatement["get"]>,
          all: (...params: SqlParams) => s.all(...params) as ReturnType<SqliteStatement["all"]>,
          run: (...params: SqlParams) => ({ changes: s.run(...params).changes }),
        };
        statements.set(sql, statement);
      }
      return statement;
    },
    exec(sql) {
      db.exec(sql);
    },
    pragma(text) {
      return db.pragma(text, { simple: true });
    },
    transaction: (fn) => db.transaction(fn) as typeof fn,
    close() {
      statements.clear();
      db.close();
    },
  };
}
