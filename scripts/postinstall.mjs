// npm runs this after installing the mpota package (npm install -g ./mpota-*.tgz).
// On a Node without node:sqlite (20) `mpota serve` needs the better-sqlite3
// driver built: npm builds it with its own install script unless that was
// denied (allow-scripts), and drops it silently when the build fails. This
// builds it when it is there but unbuilt, and otherwise fails the install
// with what to do, rather than leaving a `mpota serve` that cannot start.
// In a development checkout it does nothing: `npm start` builds the driver.
import { realpathSync } from "node:fs";
import { betterSqliteDir, betterSqliteFailure, buildBetterSqlite, nodeHasSqlite } from "./sqlite-driver.mjs";

const root = realpathSync(new URL("..", import.meta.url).pathname);
const installed = root.split("/").includes("node_modules");

if (installed && !nodeHasSqlite()) {
  const dir = betterSqliteDir(root);
  let failure = dir ? betterSqliteFailure(root) : undefined;
  if (dir && failure) {
    console.error(
      `mpota: building the SQLite driver better-sqlite3 for Node ${process.version} (about two minutes)`,
    );
    // Its output goes to stderr: npm shows it when this script fails.
    buildBetterSqlite(dir, ["ignore", process.stderr, process.stderr]);
    failure = betterSqliteFailure(root);
  }
  if (!dir || failure) {
    const state = /bindings file/.test(failure ?? "") ? "is not built" : `does not load (${failure})`;
    const why = dir
      ? `the better-sqlite3 driver in ${dir} ${state}: building it failed (its output is above; it needs python3, make and a C++ compiler)`
      : "the better-sqlite3 driver is not installed (npm leaves it out when its build fails, which needs python3, make and a C++ compiler, or when told --omit=optional)";
    console.error(
      [
        `mpota: \`mpota serve\` needs SQLite. Node ${process.version} has no node:sqlite (Node 22.13 and later have it), and ${why}.`,
        "Either install mpota with Node 22.13 or later (24 recommended): nothing is compiled there;",
        "or install python3, make and g++ (Debian: apt-get install python3 make g++) and run the same npm install again.",
        "To install mpota without the server (push, emulate, keys and sign need no SQLite), add --ignore-scripts.",
      ].join("\n"),
    );
    process.exit(1);
  }
}
