// `npm start`: sets up a fresh clone (installs dependencies, builds) when
// needed, then runs `mpota serve` with its embedded broker and database.
// Extra arguments go to `mpota serve`: npm start -- --data ./state
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const run = (cmd, args) => {
  const r = spawnSync(cmd, args, { cwd: root, stdio: "inherit", shell: process.platform === "win32" });
  if (r.status !== 0) process.exit(r.status ?? 1);
};

const lock = `${root}package-lock.json`;
const installed = `${root}node_modules/.package-lock.json`;
if (!existsSync(installed) || statSync(installed).mtimeMs < statSync(lock).mtimeMs) {
  console.error(
    "mpota: installing dependencies (the first time this builds the SQLite driver, about two minutes)",
  );
  run("npm", ["ci", "--no-audit", "--no-fund"]);
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
run(process.execPath, [...nodeFlags, bin, "serve", ...process.argv.slice(2)]);
