// Runs every test/**/*.test.ts with node's built-in runner (Node 20 has no --test globs),
// then the server-level tests again with their state in PostgreSQL.
//
//   node scripts/run-tests.mjs [FILTER...] [--sqlite-only | --postgres-only]
//
// FILTER: substrings of test paths. One throwaway PostgreSQL cluster serves the
// whole run (its admin URL is exported in MPOTA_TEST_PG_URL); it is removed at the end.
import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { tsImport } from "tsx/esm/api";

/** The server test suite: run once per storage backend. */
const SERVER_DIRS = [
  "test/server/",
  "test/http/",
  "test/rollouts/",
  "test/e2e/",
  "test/dashboard/",
  "test/attacks/",
];
/** Directories whose tests need a PostgreSQL cluster in the first (SQLite) run too. */
const POSTGRES_DIRS = [...SERVER_DIRS, "test/storage/", "test/scaling/"];

function collect(dir) {
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...collect(path));
    else if (name.endsWith(".test.ts")) out.push(path);
  }
  return out;
}

const args = process.argv.slice(2);
const sqliteOnly = args.includes("--sqlite-only");
const postgresOnly = args.includes("--postgres-only");
const filters = args.filter((a) => !a.startsWith("--"));
const files = collect("test").filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)));
if (files.length === 0) {
  console.error("no test files matched", filters);
  process.exit(1);
}
/** Storage tests that open both backends themselves: the second pass would only repeat them. */
const BOTH_BACKENDS = ["test/server/storage", "test/rollouts/rollout-store.test.ts"];
const serverFiles = files.filter(
  (f) => SERVER_DIRS.some((d) => f.startsWith(d)) && !BOTH_BACKENDS.some((b) => f.startsWith(b)),
);
const ci = process.env.CI === "true" || process.env.CI === "1";

let interrupted = false;
let cluster;
const stopCluster = () => {
  cluster?.stop();
  cluster = undefined;
};
process.on("exit", stopCluster);
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => {
    interrupted = true; // the test processes get it too; clean up once they are gone
  });
}

/** Starts the run's PostgreSQL cluster, or says why there is none (an error under CI). */
async function startCluster() {
  if (process.env.MPOTA_TEST_PG_URL) return true;
  const pg = await tsImport("../test/support/postgres.ts", import.meta.url);
  if (pg.postgresBinDir() === undefined) {
    const reason =
      "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb; install Debian's postgresql package or set PG_BIN)";
    if (ci) {
      console.error(`\n${reason}: CI must run the PostgreSQL tests (.ci/run installs it).`);
      process.exit(1);
    }
    console.error(`\n== ${reason}: the PostgreSQL tests are skipped.\n`);
    return false;
  }
  const started = Date.now();
  cluster = await pg.startPostgresCluster();
  process.env.MPOTA_TEST_PG_URL = cluster.adminUrl;
  console.error(
    `== PostgreSQL test cluster on 127.0.0.1:${cluster.port} (${Date.now() - started} ms to start)`,
  );
  return true;
}

/** The last "# WORD N" summary count of a TAP report. */
function lastCount(tap, word) {
  const matches = [...tap.matchAll(new RegExp(`^# ${word} (\\d+)$`, "gm"))];
  const last = matches[matches.length - 1];
  return last ? Number(last[1]) : 0;
}

/** Runs node --test over `list`; returns pass/fail counts read from a TAP copy of the report. */
function runTests(list, env) {
  const tapDir = mkdtempSync(join(tmpdir(), "mpota-tap-"));
  const tapFile = join(tapDir, "report.tap");
  const started = Date.now();
  return new Promise((resolve) => {
    const child = spawn(
      process.execPath,
      [
        "--import",
        "tsx",
        "--test",
        "--test-reporter=spec",
        "--test-reporter-destination=stdout",
        "--test-reporter=tap",
        `--test-reporter-destination=${tapFile}`,
        "--test-concurrency=2",
        // A hung test fails by name instead of holding CI forever (a Node 20 deadlock once did: src/protocol/rsa-numbers.ts).
        "--test-timeout=600000",
        ...list,
      ],
      { stdio: "inherit", env: { ...process.env, ...env } },
    );
    child.on("close", (code, signal) => {
      let tap = "";
      try {
        tap = readFileSync(tapFile, "utf8");
      } catch {
        // No report: counted as a failure below.
      }
      rmSync(tapDir, { recursive: true, force: true });
      const count = (word) => lastCount(tap, word);
      const passed = count("pass");
      const failed = count("fail") + count("cancelled");
      const ok = code === 0 && signal === null;
      resolve({ ok, passed, failed: ok ? failed : Math.max(failed, 1), ms: Date.now() - started });
    });
  });
}

const results = [];
try {
  const needPostgres = files.some((f) => POSTGRES_DIRS.some((d) => f.startsWith(d)));
  const havePostgres = needPostgres ? await startCluster() : false;

  if (!postgresOnly) {
    results.push({ name: "all tests (SQLite)", ...(await runTests(files, {})) });
  }
  if (!sqliteOnly && !interrupted && serverFiles.length > 0) {
    if (havePostgres) {
      console.log(
        `\n${"=".repeat(78)}\n== The server tests again, with their state in PostgreSQL (MPOTA_TEST_BACKEND=postgres):\n== ${serverFiles.length} files in ${SERVER_DIRS.map((d) => d.slice(0, -1)).join(", ")}\n${"=".repeat(78)}\n`,
      );
      results.push({
        name: "server tests (PostgreSQL)",
        ...(await runTests(serverFiles, { MPOTA_TEST_BACKEND: "postgres" })),
      });
    } else {
      console.log("\n== The PostgreSQL pass of the server tests is skipped: PostgreSQL is not installed.");
    }
  }
} finally {
  stopCluster();
}

// The last line says how many passed and failed, for CI to read, whatever ran.
if (results.length > 0) {
  console.log(`\n${"=".repeat(78)}`);
  for (const r of results) {
    console.log(`== ${r.name}: ${r.passed} passed, ${r.failed} failed (${Math.round(r.ms / 1000)} s)`);
  }
}
if (results.length > 1) {
  const passed = results.reduce((n, r) => n + r.passed, 0);
  const failed = results.reduce((n, r) => n + r.failed, 0);
  console.log(`== both runs: ${passed} passed, ${failed} failed`);
}
process.exit(interrupted ? 130 : results.every((r) => r.ok) ? 0 : 1);
