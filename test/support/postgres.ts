// A throwaway PostgreSQL cluster for tests: initdb in a temp dir, a free port on
// 127.0.0.1, its unix socket in the temp dir, fsync off. As root it runs as the
// `postgres` system user (PostgreSQL refuses to run as root).
//
// scripts/run-tests.mjs starts one cluster for the whole run and exports its
// admin URL in MPOTA_TEST_PG_URL; a test file run alone starts its own, stopped
// when the process exits.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import {
  chownSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";

/** Environment variable with the admin URL of the cluster the whole test run shares. */
export const PG_ADMIN_URL_ENV = "MPOTA_TEST_PG_URL";
/** `postgres` when the server-level tests run against PostgreSQL (run-tests.mjs sets it for its second pass). */
export const TEST_BACKEND_ENV = "MPOTA_TEST_BACKEND";

/** The login role that owns every test database (password authentication, like a real deployment). */
export const TEST_ROLE = "mpota";
export const TEST_PASSWORD = "mpota-test-secret";

export interface PostgresCluster {
  /** Superuser URL (trust authentication on 127.0.0.1). */
  adminUrl: string;
  port: number;
  dir: string;
  /** Shuts the server down (fast: connections are cut), keeping its data. */
  pause(): void;
  /** Starts it again on the same port. */
  resume(): void;
  /** Shuts it down and removes its directory. */
  stop(): void;
}

/** The directory of initdb/pg_ctl/postgres: $PG_BIN, then the newest /usr/lib/postgresql/<v>/bin. */
export function postgresBinDir(): string | undefined {
  const fromEnv = process.env.PG_BIN;
  if (fromEnv && existsSync(join(fromEnv, "initdb"))) return fromEnv;
  const root = "/usr/lib/postgresql";
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root)
    .filter((v) => existsSync(join(root, v, "bin", "initdb")))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] === undefined ? undefined : join(root, versions[0], "bin");
}

/**
 * Why PostgreSQL tests cannot run here, or undefined when they can. Under
 * CI=true missing binaries are an error, not a reason to skip.
 */
export function postgresUnavailable(): string | undefined {
  if (process.env[PG_ADMIN_URL_ENV]) return undefined;
  if (postgresBinDir() !== undefined) return undefined;
  const reason =
    "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb; set PG_BIN or install Debian's postgresql package)";
  if (process.env.CI === "true" || process.env.CI === "1") {
    throw new Error(`${reason}: CI must run the PostgreSQL tests. .ci/run installs it.`);
  }
  return reason;
}

/** `{ skip: reason }` for describe/it when PostgreSQL is missing (printed by the runner), else `{}`. */
export function skipWithoutPostgres(): { skip?: string } {
  const reason = postgresUnavailable();
  if (reason) process.stderr.write(`skipping PostgreSQL tests: ${reason}\n`);
  return reason ? { skip: reason } : {};
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function asRoot(): boolean {
  return typeof process.getuid === "function" && process.getuid() === 0;
}

/** Runs a PostgreSQL tool, as the `postgres` user when we are root. */
function runTool(bin: string, args: string[]): void {
  const [command, argv] = asRoot() ? ["runuser", ["-u", "postgres", "--", bin, ...args]] : [bin, args];
  const result = spawnSync(command, argv, { encoding: "utf8" });
  if (result.status !== 0) {
    throw new Error(
      `${bin} ${args.join(" ")} failed (${result.status ?? result.signal}): ${result.error?.message ?? ""}${result.stderr}${result.stdout}`,
    );
  }
}

/** initdb + pg_ctl start; the caller must stop() it. */
export async function startPostgresCluster(): Promise<PostgresCluster> {
  const bin = postgresBinDir();
  if (bin === undefined) throw new Error(postgresUnavailable() ?? "PostgreSQL is not installed");
  const dir = mkdtempSync(join(tmpdir(), "mpota-pg-"));
  if (asRoot()) {
    const id = spawnSync("id", ["-u", "postgres"], { encoding: "utf8" });
    const gid = spawnSync("id", ["-g", "postgres"], { encoding: "utf8" });
    if (id.status !== 0) {
      rmSync(dir, { recursive: true, force: true });
      throw new Error(
        "Running as root, but there is no `postgres` user to run PostgreSQL as (Debian's postgresql package creates it).",
      );
    }
    chownSync(dir, Number(id.stdout.trim()), Number(gid.stdout.trim()));
  }
  const data = join(dir, "data");
  try {
    runTool(join(bin, "initdb"), [
      "-D",
      data,
      "-U",
      "postgres",
      "--auth-local=trust",
      "--auth-host=scram-sha-256",
      "--no-sync",
      "--no-instructions",
      "-E",
      "UTF8",
      "--locale=C",
    ]);
    // The superuser logs in without a password; every other role needs its password.
    writeFileSync(
      join(data, "pg_hba.conf"),
      [
        "local all all trust",
        "host all postgres 127.0.0.1/32 trust",
        "host all all 127.0.0.1/32 scram-sha-256",
        "",
      ].join("\n"),
    );
    let lastError: unknown;
    for (let tries = 0; tries < 5; tries++) {
      const port = await freePort();
      const options = [
        `-p ${port}`,
        "-c listen_addresses=127.0.0.1",
        `-c unix_socket_directories=${dir}`,
        "-c fsync=off",
        "-c synchronous_commit=off",
        "-c full_page_writes=off",
        "-c max_connections=400",
        "-c shared_buffers=32MB",
      ].join(" ");
      const start = () =>
        runTool(join(bin, "pg_ctl"), [
          "-D",
          data,
          "-l",
          join(dir, "log"),
          "-o",
          options,
          "-w",
          "-t",
          "30",
          "start",
        ]);
      try {
        start();
      } catch (error) {
        lastError = error;
        continue;
      }
      const adminUrl = `postgres://postgres@127.0.0.1:${port}/postgres`;
      const watchdog = startWatchdog(join(bin, "pg_ctl"), data, dir);
      let stopped = false;
      const stop = () => {
        if (stopped) return;
        stopped = true;
        watchdog.kill("SIGKILL");
        try {
          runTool(join(bin, "pg_ctl"), ["-D", data, "-m", "immediate", "-w", "stop"]);
        } catch {
          // Already gone.
        }
        rmSync(dir, { recursive: true, force: true });
      };
      const admin = new pg.Client({ connectionString: adminUrl });
      await admin.connect();
      try {
        await admin.query(`CREATE ROLE ${TEST_ROLE} LOGIN CREATEDB PASSWORD '${TEST_PASSWORD}'`);
      } finally {
        await admin.end();
      }
      const pause = () => runTool(join(bin, "pg_ctl"), ["-D", data, "-m", "fast", "-w", "stop"]);
      return { adminUrl, port, dir, pause, resume: start, stop };
    }
    throw new Error(
      `PostgreSQL did not start: ${(lastError as Error)?.message}\n${existsSync(join(dir, "log")) ? readFileSync(join(dir, "log"), "utf8") : ""}`,
    );
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
}

/**
 * A detached shell that stops the cluster and removes its directory once
 * this process is gone, however it ended (SIGKILL, a test runner's timeout):
 * a killed test run leaves no PostgreSQL behind.
 */
function startWatchdog(pgCtl: string, data: string, dir: string): ChildProcess {
  const stopCommand = asRoot()
    ? `runuser -u postgres -- "${pgCtl}" -D "${data}" -m immediate -w stop`
    : `"${pgCtl}" -D "${data}" -m immediate -w stop`;
  const child = spawn(
    "sh",
    [
      "-c",
      `while kill -0 ${process.pid} 2>/dev/null; do sleep 1; done; ${stopCommand} >/dev/null 2>&1; rm -rf "${dir}"`,
    ],
    { detached: true, stdio: "ignore" },
  );
  child.unref();
  return child;
}

let own: Promise<string> | undefined;

/** The admin URL of the run's cluster; a process without one starts its own (stopped at exit). */
export function adminUrl(): Promise<string> {
  const shared = process.env[PG_ADMIN_URL_ENV];
  if (shared) return Promise.resolve(shared);
  own ??= startPostgresCluster().then((cluster) => {
    process.on("exit", () => cluster.stop());
    // Child processes (mpota serve, server-process.ts) use the same cluster.
    process.env[PG_ADMIN_URL_ENV] = cluster.adminUrl;
    return cluster.adminUrl;
  });
  return own;
}

function urlFor(admin: string, database: string, role = TEST_ROLE, password = TEST_PASSWORD): string {
  const url = new URL(admin);
  url.username = role;
  url.password = password;
  url.pathname = `/${database}`;
  return url.toString();
}

async function createDatabase(name: string, on?: string): Promise<void> {
  const admin = new pg.Client({ connectionString: on ?? (await adminUrl()) });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(name)} OWNER ${TEST_ROLE}`);
  } catch (error) {
    // 42P04: it exists already (another process made it first).
    if ((error as { code?: string }).code !== "42P04") throw error;
  } finally {
    await admin.end();
  }
}

/**
 * A new, empty database owned by the test role, on the run's cluster or on
 * the cluster of admin URL `on`; returns its URL (with the role's password).
 */
export async function freshDatabase(prefix = "t", on?: string): Promise<string> {
  const name = `${prefix}_${randomBytes(8).toString("hex")}`;
  await createDatabase(name, on);
  return urlFor(on ?? (await adminUrl()), name);
}

/**
 * The database that stands for a server's data directory in PostgreSQL mode:
 * the same directory always gives the same database, so a test that stops and
 * restarts a server on one directory finds its data again.
 */
export async function databaseForDataDir(dataDir: string): Promise<string> {
  const name = `d_${createHash("sha256").update(dataDir).digest("hex").slice(0, 24)}`;
  await createDatabase(name);
  return urlFor(await adminUrl(), name);
}

/** A URL for the cluster with another role and password (for login failures). */
export async function urlWithLogin(database: string, role: string, password: string): Promise<string> {
  return urlFor(await adminUrl(), database, role, password);
}

/** Runs SQL as the superuser in `database` (default: the cluster's `postgres`). */
export async function adminQuery<T extends pg.QueryResultRow = pg.QueryResultRow>(
  sql: string,
  params: unknown[] = [],
  database?: string,
): Promise<T[]> {
  const url = new URL(await adminUrl());
  if (database !== undefined) url.pathname = `/${database}`;
  const client = new pg.Client({ connectionString: url.toString() });
  await client.connect();
  try {
    return (await client.query<T>(sql, params)).rows;
  } finally {
    await client.end();
  }
}

/**
 * Whether the server-level tests run against PostgreSQL in this process. That
 * mode needs the run's shared cluster (child server processes must use the same
 * one): run it through `node scripts/run-tests.mjs --postgres-only FILTER`.
 */
export function postgresTestBackend(): boolean {
  if (process.env[TEST_BACKEND_ENV] !== "postgres") return false;
  if (!process.env[PG_ADMIN_URL_ENV]) {
    throw new Error(
      `${TEST_BACKEND_ENV}=postgres needs the shared cluster in ${PG_ADMIN_URL_ENV}: run the tests with \`node scripts/run-tests.mjs --postgres-only FILTER\`.`,
    );
  }
  return true;
}
