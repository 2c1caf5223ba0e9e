import { createRequire } from "node:module";
import { dirname } from "node:path";
import { openBetterSqlite } from "./sqlite-better-driver.ts";
import type { SqliteDatabase, SqliteOpenOptions } from "./sqlite-database.ts";
import { loadNodeSqlite, openNodeSqlite } from "./sqlite-node-driver.ts";
import { StorageError } from "./storage.ts";

/**
 * Opens SQLite (sqlite-database.ts) with the driver the runtime has: Node's
 * own `node:sqlite` where it exists (22.13 and later, 24), else
 * the better-sqlite3 package (Node 20), loaded only then, so a newer Node
 * never needs it built. Both are synchronous; both bind a JS number as REAL
 * (STRICT INTEGER columns store whole numbers as integers all the same).
 */

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
  let build: string;
  try {
    const dir = dirname(createRequire(import.meta.url).resolve("better-sqlite3/package.json"));
    // npm installs the package without building it (package.json allowScripts): build it in place.
    build = `build the better-sqlite3 driver (about two minutes) with: npm run install --prefix ${dir}`;
  } catch {
    build = "install the better-sqlite3 driver in mpota's folder with: npm install better-sqlite3";
  }
  return new StorageError(
    `SQLite is not available on Node ${process.version}: it has no node:sqlite (Node 22.13 and later have it) and the better-sqlite3 driver cannot be loaded (${(cause as Error).message.split("\n")[0]}). Use Node 22.13 or later (24 recommended), or ${build}`,
    { cause },
  );
}
