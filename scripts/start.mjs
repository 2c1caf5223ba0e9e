// `npm start`: sets up a fresh clone (installs dependencies, builds) when
// needed, then runs `mpota serve` with its embedded broker and database.
// Extra arguments go to `mpota serve`: npm start -- --data ./state
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { betterSqliteDir, betterSqliteFailure, buildBetterSqlite, nodeHasSqlite } from "./sqlite-driver.mjs";

const root = new URL("..", import.meta.url).pathname;
const run = (cmd, args) => {
  const r = spawnSync(cmd, args, { cwd: root, stdio: "inherit", shell: process.platform === "win32" });
  if (r.status !== 0) process.exit(r.status ?? 1);
};

const lock = `${root}package-lock.json`;
const installed = `${root}node_modules/.package-lock.json`;
if (!existsSync(installed) || statSync(installed).mtimeMs < statSync(lock).mtimeMs) {
  console.error("mpota: installing dependencies (the first time only)");
  // --prefer-offline: the lockfile pins every version, so npm's cached metadata serves
  // (about a quarter less CPU than asking the registry about each of ~270 packages).
  run("npm", ["ci", "--no-audit", "--no-fund", "--prefer-offline"]);
}
// SQLite: node:sqlite on Node 22.13+ (23.4+, 24); Node 20 needs the better-sqlite3
// driver, which npm installs but does not build (package.json allowScripts): build it here.
if (!nodeHasSqlite() && betterSqliteFailure(root)) {
  console.error(
    `mpota: Node ${process.version} has no node:sqlite: building the better-sqlite3 driver (about two minutes; Node 22.13+ or 24 need none)`,
  );
  const status = buildBetterSqlite(betterSqliteDir(root) ?? `${root}node_modules/better-sqlite3`);
  if (status !== 0) process.exit(status);
}
const newest = (dir) =>
  Math.max(
    0,
    ...readdirSync(dir, { withFileTypes: true }).map((e) =>
      e.isDirectory() ? newest(join(dir, e.name)) : statSync(join(dir, e.name)).mtimeMs,
    ),
  );
const built = `${root}dist/cli/main.js`;
if (!existsSync(built) || statSync(built).mtimeMs < newest(`${root}src`)) run("npm", ["run", "build"]);
// The node flags of bin/mpota.js's first line, as when it runs as a command.
const bin = `${root}bin/mpota.js`;
const nodeFlags = (readFileSync(bin, "utf8").split("\n")[0] ?? "")
  .split(/\s+/)
  .filter((a) => a.startsWith("--"));
const args = process.argv.slice(2);
// The server signs every update with ./priv.key (or --key FILE). Without one it would start and
// refuse every update, so the first start makes the pair, as `mpota keys new` would.
if (!args.some((a) => a === "--key" || a.startsWith("--key=")) && !existsSync(`${root}priv.key`)) {
  console.error(
    "mpota: no signing key yet: making priv.key and pub.key here (`mpota keys new`). Build your devices' yaota8266 with this key (`mpota config-h`), and keep priv.key to yourself.",
  );
  run(process.execPath, [...nodeFlags, bin, "keys", "new"]);
}
run(process.execPath, [...nodeFlags, bin, "serve", ...args]);
