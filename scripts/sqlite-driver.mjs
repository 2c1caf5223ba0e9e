// The SQLite driver question, for `npm start` (start.mjs) and for an installed
// package (postinstall.mjs): Node 22.13+ (23.4+, 24) has node:sqlite and needs
// nothing; Node 20 needs the better-sqlite3 package built for it (a C++ compile
// of about two minutes, with python3, make and a C++ compiler).
import { spawnSync } from "node:child_process";
import { createRequire, isBuiltin } from "node:module";
import { dirname, join } from "node:path";

/** True where the runtime has node:sqlite without a flag (no warning is printed asking). */
export function nodeHasSqlite() {
  return isBuiltin("node:sqlite");
}

/** The better-sqlite3 folder that mpota at `root` loads, or undefined when it is not installed. */
export function betterSqliteDir(root) {
  try {
    return dirname(createRequire(join(root, "package.json")).resolve("better-sqlite3/package.json"));
  } catch {
    return undefined;
  }
}

/** The reason better-sqlite3 cannot open a database from `root` (first line), or undefined when it can. */
export function betterSqliteFailure(root) {
  // A child process: a failed native load stays in this process's module cache.
  const probe = spawnSync(process.execPath, ["-e", "new (require('better-sqlite3'))(':memory:').close()"], {
    cwd: root,
    encoding: "utf8",
    stdio: ["ignore", "ignore", "pipe"],
  });
  if (probe.status === 0) return undefined;
  const line = probe.stderr.split("\n").find((l) => /Error/.test(l)) ?? `exit ${probe.status}`;
  return line.trim();
}

/**
 * Builds better-sqlite3 in `dir` for this Node with its own install script.
 * JOBS=max lets node-gyp compile SQLite and the binding on every core at once.
 * Returns the exit status (0 when built).
 */
export function buildBetterSqlite(dir, stdio = "inherit") {
  // Inside an npm script, npm_execpath is the npm running it; else the one on PATH.
  const npm = process.env.npm_execpath ? [process.execPath, process.env.npm_execpath] : ["npm"];
  const [command, ...first] = npm;
  const built = spawnSync(command, [...first, "run", "install", "--prefix", dir], {
    stdio,
    env: { ...process.env, JOBS: process.env.JOBS ?? "max" },
  });
  return built.status ?? 1;
}
