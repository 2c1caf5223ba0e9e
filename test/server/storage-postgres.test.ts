import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { after, before, describe, it } from "node:test";
import pg from "pg";
import { BridgeClient } from "../../src/server/bridge/bridge-client.ts";
import {
  POSTGRES_MIGRATIONS,
  POSTGRES_SCHEMA_VERSION,
} from "../../src/server/storage/postgres-migrations.ts";
import { openPostgresStorage } from "../../src/server/storage/postgres-storage.ts";
import type { NewJob, Storage } from "../../src/server/storage/storage.ts";
import { CredentialExistsError, SchemaTooNewError, StorageError } from "../../src/server/storage/storage.ts";
import { runCli } from "../support/cli.ts";
import { fixturePath } from "../support/fixtures.ts";
import {
  adminQuery,
  freshDatabase,
  type PostgresCluster,
  skipWithoutPostgres,
  startPostgresCluster,
  TEST_PASSWORD,
  urlWithLogin,
} from "../support/postgres.ts";
import { checkJobFromVersion6, defineStorageSuite } from "./support/storage-suite.ts";
import { startTestServer, tempDir } from "./support/test-server.ts";
import { eventually } from "./support/wait.ts";

const skip = skipWithoutPostgres();

defineStorageSuite(
  "PostgreSQL",
  async () => {
    const storage = await openPostgresStorage(await freshDatabase());
    return { storage, dispose: () => storage.close() };
  },
  { imagesInDatabase: true, ...skip },
);

const dbName = (url: string) => new URL(url).pathname.slice(1);

const newJob = (i: number): NewJob => ({
  id: `job-${String(i).padStart(3, "0")}`,
  deviceId: `dev-${i}`,
  firmwareId: "b".repeat(32),
  firmwareName: "sensor",
  firmwareVersion: "2.0",
  firmwareSize: 1000,
  maxAttempts: 3,
  createdAt: 1000 + i,
});

async function tables(url: string): Promise<string[]> {
  return (
    await adminQuery<{ tablename: string }>(
      "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename",
      [],
      dbName(url),
    )
  ).map((r) => r.tablename);
}

/** Runs `mpota ARGS` from the sources as a real process. */
function mpotaProcess(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ["--import", "tsx", new URL("./support/mpota-source.ts", import.meta.url).pathname, ...args],
      { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, MPOTA_DB: "", ...env } },
    );
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (s: string) => (stdout += s));
    child.stderr.setEncoding("utf8").on("data", (s: string) => (stderr += s));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

describe("PostgreSQL storage", skip, () => {
  it("creates the schema at the current version, one row per migration, and reopens it", async () => {
    const url = await freshDatabase();
    const storage = await openPostgresStorage(url);
    assert.equal(storage.description, `PostgreSQL mpota@127.0.0.1:${new URL(url).port}/${dbName(url)}`);
    assert.ok(!storage.description.includes(TEST_PASSWORD));
    await storage.devices.recordStatus({ id: "d", status: "online", at: 1, nextWakeAt: null });
    await storage.close();
    const again = await openPostgresStorage(url);
    assert.equal((await again.devices.get("d"))?.status, "online");
    await again.close();
    const rows = await adminQuery<{ version: number; description: string }>(
      "SELECT version, description FROM schema_migrations ORDER BY version",
      [],
      dbName(url),
    );
    assert.deepEqual(
      rows,
      POSTGRES_MIGRATIONS.map((m) => ({ version: m.version, description: m.description })),
    );
    assert.equal(POSTGRES_SCHEMA_VERSION, 8);
  });

  it("migrates once when several instances start together", async () => {
    const url = await freshDatabase();
    const storages = await Promise.all([1, 2, 3, 4].map(() => openPostgresStorage(url)));
    const rows = await adminQuery<{ n: string }>(
      "SELECT COUNT(*) AS n FROM schema_migrations",
      [],
      dbName(url),
    );
    assert.equal(Number(rows[0]?.n), POSTGRES_MIGRATIONS.length);
    for (const s of storages) await s.close();
  });

  it("never hands one job or rollout to two instances claiming at the same time", async () => {
    const url = await freshDatabase();
    const a = await openPostgresStorage(url, { poolSize: 4 });
    const b = await openPostgresStorage(url, { poolSize: 4 });
    try {
      const count = 120;
      for (let i = 0; i < count; i++) {
        const created = await a.jobs.create(newJob(i), {
          at: 1000,
          kind: "created",
          message: "m",
          data: null,
        });
        assert.ok(created.ok);
      }
      // Each storage claims with several workers at once, a few jobs at a time, until nothing is left.
      const claimed = new Map<string, string>();
      const worker = async (storage: Storage, owner: string) => {
        for (;;) {
          const jobs = await storage.jobs.claimDue({ owner, now: 5000, leaseMs: 60_000, limit: 3 });
          if (jobs.length === 0) return;
          for (const job of jobs) {
            assert.equal(job.leaseOwner, owner);
            const previous = claimed.get(job.id);
            assert.equal(previous, undefined, `${job.id} claimed by ${previous} and ${owner}`);
            claimed.set(job.id, owner);
          }
        }
      };
      await Promise.all([
        worker(a, "A1"),
        worker(a, "A2"),
        worker(a, "A3"),
        worker(b, "B1"),
        worker(b, "B2"),
        worker(b, "B3"),
      ]);
      assert.equal(claimed.size, count);
      const owners = new Set(claimed.values());
      assert.ok(owners.size >= 2, `work was shared (${[...owners].join(", ")})`);
      for (const [id, owner] of claimed) assert.equal((await b.jobs.get(id))?.leaseOwner, owner);

      // Rollouts: the same with claimOpen.
      for (let i = 0; i < 20; i++) {
        const created = await a.rollouts.create(
          {
            id: `r-${String(i).padStart(2, "0")}`,
            name: null,
            firmwareId: "b".repeat(32),
            firmwareName: "sensor",
            firmwareVersion: "2.0",
            firmwareSize: 1000,
            selector: { kind: "devices", devices: [`rd-${i}`] },
            groups: [],
            gates: [],
            policy: {
              maxAttempts: 3,
              timeoutMs: 1000,
              concurrency: 1,
              allowDowngrade: false,
              onError: "pause",
            },
            state: "scheduled",
            currentGroup: 0,
            startAt: 0,
            createdAt: i,
          },
          [
            {
              deviceId: `rd-${i}`,
              group: 0,
              position: 0,
              fromFw: null,
              state: "pending",
              reason: null,
              finishedAt: null,
            },
          ],
          { at: i, kind: "created", message: "m", data: null },
        );
        assert.ok(created.ok);
      }
      // claimOpen also returns the caller's own rollouts: each call claims under a new owner name.
      const rollouts = new Map<string, string>();
      let calls = 0;
      const rolloutWorker = async (storage: Storage, prefix: string) => {
        for (;;) {
          const owner = `${prefix}-${calls++}`;
          const taken = await storage.rollouts.claimOpen({ owner, now: 5000, leaseMs: 60_000, limit: 2 });
          if (taken.length === 0) return;
          for (const r of taken) {
            const previous = rollouts.get(r.id);
            assert.equal(previous, undefined, `${r.id} claimed by ${previous} and ${owner}`);
            rollouts.set(r.id, owner);
          }
        }
      };
      await Promise.all([
        rolloutWorker(a, "A"),
        rolloutWorker(b, "B"),
        rolloutWorker(a, "C"),
        rolloutWorker(b, "D"),
      ]);
      assert.equal(rollouts.size, 20);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it("lets only one of two instances create a job for one device at the same time", async () => {
    const url = await freshDatabase();
    const a = await openPostgresStorage(url);
    const b = await openPostgresStorage(url);
    try {
      for (let round = 0; round < 10; round++) {
        const device = `race-${round}`;
        const results = await Promise.all(
          [a, b, a, b].map((s, i) =>
            s.jobs.create(
              { ...newJob(round * 10 + i), deviceId: device },
              { at: 1, kind: "created", message: "m", data: null },
            ),
          ),
        );
        const winners = results.filter((r) => r.ok);
        assert.equal(winners.length, 1, `round ${round}`);
        const winner = winners[0];
        for (const r of results) if (!r.ok && winner?.ok) assert.equal(r.active.id, winner.job.id);
      }
    } finally {
      await a.close();
      await b.close();
    }
  });

  it("never issues one command counter twice, whatever instance asks, all at once", async () => {
    const url = await freshDatabase();
    const a = await openPostgresStorage(url, { poolSize: 5 });
    const b = await openPostgresStorage(url, { poolSize: 5 });
    try {
      await a.credentials.add({ deviceId: "sim-1", hash: "$7$1000$c2FsdA==$aGFzaA==", at: 1 });
      await a.credentials.add({ deviceId: "sim-2", hash: "$7$1000$c2FsdA==$aGFzaA==", at: 1 });
      const calls = 200;
      const issued = await Promise.all(
        Array.from({ length: calls }, (_, i) => (i % 2 === 0 ? a : b).credentials.nextCommandSeq("sim-1", 0)),
      );
      assert.deepEqual(
        [...issued].sort((x, y) => (x ?? 0) - (y ?? 0)),
        Array.from({ length: calls }, (_, i) => i + 1),
        "every number from 1 to 200 exactly once",
      );
      // With device reports mixed in: still distinct, each above its own floor and every earlier one.
      const floors = Array.from({ length: 60 }, (_, i) => (i % 3 === 0 ? 1000 + i : 0));
      const mixed = await Promise.all(
        floors.map((floor, i) => (i % 2 === 0 ? b : a).credentials.nextCommandSeq("sim-1", floor)),
      );
      assert.equal(new Set(mixed).size, mixed.length, `distinct: ${mixed.join(", ")}`);
      mixed.forEach((seq, i) => {
        assert.ok((seq ?? 0) > Math.max(calls, floors[i] ?? 0), `${seq} above its floor ${floors[i]}`);
      });
      const highest = Math.max(...(mixed as number[]));
      assert.equal((await b.credentials.get("sim-1"))?.commandSeq, highest);
      assert.equal(
        (await a.credentials.get("sim-2"))?.commandSeq,
        0,
        "another device's counter is untouched",
      );
    } finally {
      await a.close();
      await b.close();
    }
  });

  it("lets only one of several instances provision a device at the same time, and keeps its hash", async () => {
    const url = await freshDatabase();
    const a = await openPostgresStorage(url);
    const b = await openPostgresStorage(url);
    try {
      for (let round = 0; round < 10; round++) {
        const deviceId = `race-${round}`;
        const hashes = [0, 1, 2, 3].map(
          (i) => `$7$1000$c2FsdA==$${Buffer.from(`h${round}-${i}`).toString("base64")}`,
        );
        const results = await Promise.allSettled(
          [a, b, a, b].map((s, i) =>
            s.credentials.add({ deviceId, hash: hashes[i] as string, at: 1000 + i }),
          ),
        );
        const winners = results.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
        assert.equal(winners.length, 1, `round ${round}: one add wins`);
        for (const r of results) {
          if (r.status === "rejected") assert.ok(r.reason instanceof CredentialExistsError, String(r.reason));
        }
        const stored = await a.credentials.get(deviceId);
        assert.deepEqual(stored, winners[0], "the winner's credential is stored, not overwritten");
      }
      assert.equal((await b.credentials.list()).length, 10);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it("upgrades a version-3 database in place: its data is kept, credentials and audit start empty", async () => {
    const url = await freshDatabase();
    const old = await openPostgresStorage(url, {
      migrations: POSTGRES_MIGRATIONS.filter((m) => m.version <= 3),
    });
    // A row as that version wrote it (today's store writes columns it does not have).
    await adminQuery(
      "INSERT INTO devices (id, state, first_seen, last_seen, last_state_at, state_digest) VALUES ('old', $1, 1, 1, 1, 'x')",
      [JSON.stringify({ v: 1, fw: "a".repeat(32), ip: "10.0.0.9" })],
      dbName(url),
    );
    await old.settings.putIfAbsent("firmware-dir-id", "kept");
    await old.images?.put("a".repeat(32), new Uint8Array([1, 2, 3]));
    await old.close();
    assert.deepEqual(
      (await tables(url)).filter((t) => t === "audit" || t === "device_credentials"),
      [],
      "the old schema has no trust tables",
    );

    const storage = await openPostgresStorage(url);
    try {
      assert.equal((await storage.devices.get("old"))?.state?.ip, "10.0.0.9");
      assert.equal(await storage.settings.get("firmware-dir-id"), "kept");
      assert.deepEqual([...((await storage.images?.get("a".repeat(32))) ?? [])], [1, 2, 3]);
      assert.deepEqual(await storage.credentials.list(), []);
      assert.deepEqual(await storage.audit.list({ limit: 10 }), []);
      await storage.credentials.add({ deviceId: "old", hash: "$7$1000$c2FsdA==$aGFzaA==", at: 5 });
      assert.equal(await storage.credentials.nextCommandSeq("old", 7), 8);
    } finally {
      await storage.close();
    }
    const rows = await adminQuery<{ version: number }>(
      "SELECT version FROM schema_migrations ORDER BY version",
      [],
      dbName(url),
    );
    assert.deepEqual(
      rows.map((r) => r.version),
      [1, 2, 3, 4, 5, 6, 7, 8],
    );
  });

  it("upgrades a version-6 database in place: its jobs keep their bytes and count no files until an app's progress is stored", async () => {
    const url = await freshDatabase();
    const old = await openPostgresStorage(url, {
      migrations: POSTGRES_MIGRATIONS.filter((m) => m.version <= 6),
    });
    await old.close();
    // A job in the middle of its fetch, as version 6 stored it: bytes only.
    await adminQuery(
      `INSERT INTO jobs (id, device_id, firmware_id, firmware_name, firmware_version, firmware_size, phase, attempt,
         max_attempts, created_at, updated_at, lease_owner, lease_expires_at, progress_bytes, progress_total, progress_rate)
       VALUES ('j-old', 'board', $1, 'thermostat', '1.4.1', 1400, 'pushing', 1, 3, 1, 2, 'A', 99999, 2048, 61440, 900)`,
      ["c".repeat(32)],
      dbName(url),
    );
    await adminQuery(
      "INSERT INTO job_steps (job_id, at, kind, message) VALUES ('j-old', 1, 'created', 'Created.')",
      [],
      dbName(url),
    );

    const storage = await openPostgresStorage(url);
    try {
      await checkJobFromVersion6(storage);
    } finally {
      await storage.close();
    }
    const rows = await adminQuery<{ version: number }>(
      "SELECT version FROM schema_migrations ORDER BY version",
      [],
      dbName(url),
    );
    assert.deepEqual(
      rows.map((r) => r.version),
      [1, 2, 3, 4, 5, 6, 7, 8],
    );
    // The columns refuse a count no device report carries, whoever writes it.
    await assert.rejects(
      adminQuery("UPDATE jobs SET progress_files = 21, progress_of = 20", [], dbName(url)),
      /violates check constraint/,
    );
    await assert.rejects(
      adminQuery("UPDATE jobs SET progress_of = NULL", [], dbName(url)),
      /violates check constraint/,
    );
    await assert.rejects(
      adminQuery("UPDATE jobs SET cancelled_by = 'someone'", [], dbName(url)),
      /violates check constraint/,
    );
  });

  it("refuses a database written by a newer mpota and leaves it alone", async () => {
    const url = await freshDatabase();
    const name = dbName(url);
    await adminQuery(
      `SET ROLE mpota;
       CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at BIGINT NOT NULL);
       INSERT INTO schema_migrations VALUES (${POSTGRES_SCHEMA_VERSION + 1}, 'the future', 1);
       CREATE TABLE future (x INTEGER);`,
      [],
      name,
    );
    await assert.rejects(openPostgresStorage(url), (error: unknown) => {
      assert.ok(error instanceof SchemaTooNewError);
      assert.equal(error.exitCode, 25);
      assert.match(
        error.message,
        new RegExp(
          `^The database mpota@127\\.0\\.0\\.1:\\d+/${name} has schema version ${POSTGRES_SCHEMA_VERSION + 1}, but this mpota knows only up to version ${POSTGRES_SCHEMA_VERSION}: a newer mpota wrote it\\. Upgrade mpota, or start this one with another --db database\\. The database was not changed\\.$`,
        ),
      );
      return true;
    });
    assert.deepEqual(await tables(url), ["future", "schema_migrations"]);
  });

  it("rolls a failing migration back whole and names it; the database stays usable", async () => {
    const url = await freshDatabase();
    const broken = [
      ...POSTGRES_MIGRATIONS,
      {
        version: POSTGRES_SCHEMA_VERSION + 1,
        description: "a migration that breaks half-way",
        sql: "CREATE TABLE half_done (x INTEGER); ALTER TABLE devices ADD COLUMN extra TEXT; SELECT 1 / 0;",
      },
    ];
    await assert.rejects(openPostgresStorage(url, { migrations: broken }), (error: unknown) => {
      assert.ok(error instanceof StorageError);
      assert.equal(error.exitCode, 24);
      assert.match(
        error.message,
        new RegExp(
          `^Migration ${POSTGRES_SCHEMA_VERSION + 1} \\(a migration that breaks half-way\\) of mpota@127\\.0\\.0\\.1:\\d+/\\w+ failed and was rolled back: division by zero\\. Please report this; the database is unchanged at version ${POSTGRES_SCHEMA_VERSION}\\.$`,
        ),
      );
      return true;
    });
    assert.ok(!(await tables(url)).includes("half_done"));
    const columns = await adminQuery<{ column_name: string }>(
      "SELECT column_name FROM information_schema.columns WHERE table_name = 'devices' AND column_name = 'extra'",
      [],
      dbName(url),
    );
    assert.deepEqual(columns, []);
    // The migrations before it were applied (each in its own transaction) and the code of today opens it.
    const storage = await openPostgresStorage(url);
    assert.deepEqual(await storage.devices.list(), []);
    await storage.close();
  });

  it("says what to check for a wrong password, a missing database, a bad URL and an unreachable server", async () => {
    const url = await freshDatabase();
    const port = new URL(url).port;
    await assert.rejects(
      openPostgresStorage(await urlWithLogin(dbName(url), "mpota", "wrong-secret")),
      (error: unknown) => {
        assert.ok(error instanceof StorageError);
        assert.equal(error.exitCode, 24);
        assert.match(
          error.message,
          new RegExp(
            `^PostgreSQL at 127\\.0\\.0\\.1:${port} refused the login for mpota@127\\.0\\.0\\.1:${port}/\\w+: .*password authentication failed for user "mpota".*\\. Check the user name and password in --db or MPOTA_DB, and that pg_hba\\.conf lets this user connect from here\\.$`,
          ),
        );
        assert.ok(!error.message.includes("wrong-secret"));
        return true;
      },
    );
    await assert.rejects(openPostgresStorage(await urlWithLogin("no_such_db", "mpota", TEST_PASSWORD)), {
      message: `PostgreSQL at 127.0.0.1:${port} has no database "no_such_db". Create it (createdb -O USER no_such_db) or fix the database name in --db or MPOTA_DB.`,
    });
    await assert.rejects(
      openPostgresStorage("postgres://mpota:p@ss@word@127.0.0.1:notaport/x"),
      (error: unknown) => {
        assert.ok(error instanceof StorageError);
        assert.match(
          error.message,
          /is not a valid URL\. Write it as postgres:\/\/USER:PASSWORD@HOST:5432\/DATABASE/,
        );
        assert.ok(!error.message.includes("ss@word"));
        return true;
      },
    );
    // Nothing listens on this port (a closed one): retried for the time given, then a clear error.
    const closed = await closedPort();
    await assert.rejects(
      openPostgresStorage(`postgres://mpota:${TEST_PASSWORD}@127.0.0.1:${closed}/x`, { startRetryMs: 700 }),
      (error: unknown) => {
        assert.ok(error instanceof StorageError);
        assert.equal(error.exitCode, 24);
        assert.match(
          error.message,
          new RegExp(
            `^Cannot reach PostgreSQL at 127\\.0\\.0\\.1:${closed} \\(.*ECONNREFUSED.*\\); tried for [\\d.]+ s\\. Check that the database server runs and accepts TCP connections there, and the host and port in --db or MPOTA_DB\\.$`,
          ),
        );
        return true;
      },
    );
  });

  describe("when the database is down at start or restarts", () => {
    let cluster: PostgresCluster;
    before(async () => {
      cluster = await startPostgresCluster();
    });
    after(() => cluster.stop());

    it("waits at start for a database that comes up within the retry time", async () => {
      cluster.pause();
      const opening = openPostgresStorage(cluster.adminUrl, { startRetryMs: 20_000 });
      await new Promise((resolve) => setTimeout(resolve, 500));
      cluster.resume();
      const storage = await opening;
      assert.deepEqual(await storage.devices.list(), []);
      await storage.close();
    });

    it("fails operations with a StorageError while it is down, and reconnects by itself", async () => {
      const storage = await openPostgresStorage(cluster.adminUrl);
      try {
        await storage.devices.recordStatus({ id: "d", status: "online", at: 1, nextWakeAt: null });
        cluster.pause();
        // The pool's idle connections break now: the process must not crash.
        await new Promise((resolve) => setTimeout(resolve, 100));
        await assert.rejects(storage.devices.list(), (error: unknown) => {
          assert.ok(error instanceof StorageError);
          assert.match(
            error.message,
            /^Lost the connection to PostgreSQL postgres@127\.0\.0\.1:\d+\/postgres while listing devices \(.*\): the operation failed \(a change is stored whole or not at all\)\. mpota connects again by itself for the next operation; if this goes on, check that the database server runs\.$/,
          );
          return true;
        });
        await assert.rejects(
          storage.jobs.create(newJob(1), { at: 1, kind: "created", message: "m", data: null }),
          StorageError,
        );
        cluster.resume();
        assert.deepEqual(
          (await storage.devices.list()).map((d) => d.id),
          ["d"],
        );
        assert.equal(
          (await storage.jobs.create(newJob(1), { at: 1, kind: "created", message: "m", data: null })).ok,
          true,
        );
      } finally {
        await storage.close();
      }
    });

    it("stops a server cleanly while the database is down: its leases expire by themselves", async () => {
      const admin = new pg.Client({ connectionString: cluster.adminUrl });
      await admin.connect();
      await admin.query("CREATE DATABASE stopped_down");
      await admin.end();
      const url = new URL(cluster.adminUrl);
      url.pathname = "/stopped_down";
      const t = tempDir();
      const s = await startTestServer(t.dir, { db: url.toString() });
      cluster.pause();
      try {
        await s.stop();
        assert.equal(
          s.logs.find(
            "job leases not given back while stopping: the database is unreachable; they expire by themselves and the work is taken over then",
          ).length,
          1,
        );
        assert.equal(
          s.logs.find(
            "rollout leases not given back while stopping: the database is unreachable; they expire by themselves and the work is taken over then",
          ).length,
          1,
        );
      } finally {
        cluster.resume();
        t.remove();
      }
    });

    it("keeps a server running through the restart: requests fail meanwhile, then work again", async () => {
      const admin = new pg.Client({ connectionString: cluster.adminUrl });
      await admin.connect();
      await admin.query("CREATE DATABASE served");
      await admin.end();
      const url = new URL(cluster.adminUrl);
      url.pathname = "/served";
      const t = tempDir();
      const s = await startTestServer(t.dir, { db: url.toString() });
      const bridge = await BridgeClient.connect({ connection: { url: s.url } });
      try {
        const twin = await s.server.storage.devices.recordStatus({
          id: "lamp",
          status: "online",
          at: Date.now(),
          nextWakeAt: null,
        });
        assert.equal(twin.id, "lamp");
        cluster.pause();
        await assert.rejects(
          bridge.request("devices", {}),
          /Lost the connection to PostgreSQL postgres@127\.0\.0\.1:\d+\/served while listing devices/,
        );
        // The job runner's loop fails (logged) while it is down, and goes on.
        // The outage is logged once, naming the query it cut: each look claims
        // the due jobs, then reads the next due time, and the stop can fall on
        // either (the second in 3 of 65 restarts measured under load).
        await eventually(
          () =>
            s.logs
              .find("database unreachable; due work waits until it is back", { feature: "jobs" })
              .some((l) =>
                /^Lost the connection to PostgreSQL postgres@127\.0\.0\.1:\d+\/served while (claiming due jobs|reading the next due job) \(/.test(
                  String(l.err),
                ),
              ),
          "the job runner's failure logged",
        );
        cluster.resume();
        assert.deepEqual(
          (await bridge.request("devices", {})).map((d) => d.id),
          ["lamp"],
        );
      } finally {
        await bridge.close();
        await s.stop();
        t.remove();
      }
    });
  });
});

/** Starts `mpota serve ARGS` from the sources; resolves once it runs (or has exited). */
function serveProcess(args: string[]) {
  const child = spawn(
    process.execPath,
    ["--import", "tsx", new URL("./support/mpota-source.ts", import.meta.url).pathname, "serve", ...args],
    { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, MPOTA_DB: "" } },
  );
  let stderr = "";
  child.stderr.setEncoding("utf8").on("data", (s: string) => (stderr += s));
  child.stdout.resume();
  const exited = new Promise<number>((resolve) => child.on("close", (code) => resolve(code ?? -1)));
  const running = new Promise<void>((resolve, reject) => {
    child.stderr.on("data", () => {
      if (stderr.includes("mpota server running")) resolve();
    });
    void exited.then((code) => reject(new Error(`mpota serve exited (${code}): ${stderr}`)));
  });
  return { child, running, exited, stderr: () => stderr };
}

describe("mpota serve --db", skip, () => {
  it("keeps the server's state in PostgreSQL, migrated at start, and logs no password", async () => {
    const url = await freshDatabase();
    const t = tempDir();
    const serve = serveProcess([
      "--db",
      url,
      "--data",
      t.dir,
      "--mqtt-host",
      "127.0.0.1",
      "--mqtt-port",
      "0",
      "--no-http",
      "--key",
      fixturePath("reference/priv-pkcs1.key"),
      "--log-json",
    ]);
    try {
      await serve.running;
      assert.match(
        serve.stderr(),
        new RegExp(`"storage":"PostgreSQL mpota@127\\.0\\.0\\.1:\\d+/${dbName(url)}"`),
      );
      assert.ok(!serve.stderr().includes(TEST_PASSWORD));
      const rows = await adminQuery<{ n: string }>(
        "SELECT COUNT(*) AS n FROM schema_migrations",
        [],
        dbName(url),
      );
      assert.equal(Number(rows[0]?.n), POSTGRES_SCHEMA_VERSION);
      serve.child.kill("SIGTERM");
      assert.equal(await serve.exited, 0);
    } finally {
      serve.child.kill("SIGKILL");
      t.remove();
    }
  });

  it("gives up on an unreachable database after --db-wait, with exit code 24 and what to check", async () => {
    const port = await closedPort();
    const t = tempDir();
    try {
      const serve = serveProcess([
        "--db",
        `postgresql://mpota:${TEST_PASSWORD}@127.0.0.1:${port}/mpota`,
        "--db-wait",
        "1",
        "--data",
        t.dir,
        "--mqtt-host",
        "127.0.0.1",
        "--mqtt-port",
        "0",
        "--no-http",
      ]);
      serve.running.catch(() => undefined);
      assert.equal(await serve.exited, 24);
      assert.match(
        serve.stderr(),
        new RegExp(
          `mpota: Cannot reach PostgreSQL at 127\\.0\\.0\\.1:${port} \\(.*ECONNREFUSED.*\\); tried for [\\d.]+ s\\. Check that the database server runs`,
        ),
      );
      assert.ok(!serve.stderr().includes(TEST_PASSWORD));
    } finally {
      t.remove();
    }
  });
});

describe("mpota db", skip, () => {
  it("status and migrate a PostgreSQL database, as real processes (--db and MPOTA_DB)", async () => {
    const url = await freshDatabase();
    const label = `mpota@127\\.0\\.0\\.1:${new URL(url).port}/${dbName(url)}`;
    const before = await mpotaProcess(["db", "status", "--db", url]);
    assert.equal(before.code, 0, before.stderr);
    assert.match(
      before.stdout,
      new RegExp(
        `^Database: PostgreSQL ${label}\nSchema version: 0 \\(empty: nothing created yet\\); this mpota: ${POSTGRES_SCHEMA_VERSION}\nPending migrations \\(\`mpota db migrate\` applies them; \`mpota serve\` does at start\\):\n  1  devices, state history, firmware, jobs and job steps\n  2  device tags, rollouts, their devices and events\n  3  server instances, shared settings and firmware images\n  4  device credentials and the audit log\n  5  the kind of each release\n  6  when each device's stored state was received\n  7  the files of an app job's progress\n  8  who cancelled each cancelled job\n$`,
      ),
    );
    assert.ok(!before.stdout.includes(TEST_PASSWORD));

    const migrated = await mpotaProcess(["db", "migrate"], { MPOTA_DB: url });
    assert.equal(migrated.code, 0, migrated.stderr);
    assert.match(
      migrated.stdout,
      new RegExp(
        `^Database: PostgreSQL ${label}\nApplied migration 1: devices, state history, firmware, jobs and job steps\nApplied migration 2: device tags, rollouts, their devices and events\nApplied migration 3: server instances, shared settings and firmware images\nApplied migration 4: device credentials and the audit log\nApplied migration 5: the kind of each release\nApplied migration 6: when each device's stored state was received\nApplied migration 7: the files of an app job's progress\nApplied migration 8: who cancelled each cancelled job\nSchema version 8: up to date\\.\n$`,
      ),
    );

    const json = await runCli(["db", "status", "--json", "--db", url]);
    assert.equal(json.code, 0, json.stderr);
    assert.deepEqual(JSON.parse(json.stdout), {
      backend: "postgres",
      description: `PostgreSQL mpota@127.0.0.1:${new URL(url).port}/${dbName(url)}`,
      schemaVersion: POSTGRES_SCHEMA_VERSION,
      codeVersion: POSTGRES_SCHEMA_VERSION,
      state: "current",
      pending: [],
    });

    const again = await runCli(["db", "migrate", "--db", url]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(
      again.stdout,
      new RegExp(`\nNothing to do: schema version ${POSTGRES_SCHEMA_VERSION} is current\\.\n$`),
    );
  });

  it("fails with exit code 24 and what to check when the login is refused (real process)", async () => {
    const url = await freshDatabase();
    const bad = await urlWithLogin(dbName(url), "mpota", "wrong-secret");
    const r = await mpotaProcess(["db", "status", "--db", bad]);
    assert.equal(r.code, 24);
    assert.equal(r.stdout, "");
    assert.match(r.stderr, /^mpota: PostgreSQL at 127\.0\.0\.1:\d+ refused the login for mpota@/);
    assert.match(r.stderr, /Check the user name and password in --db or MPOTA_DB/);
    assert.ok(!r.stderr.includes("wrong-secret"));
  });

  it("reports a database newer than this mpota and refuses to migrate it", async () => {
    const url = await freshDatabase();
    await adminQuery(
      `SET ROLE mpota;
       CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at BIGINT NOT NULL);
       INSERT INTO schema_migrations VALUES (${POSTGRES_SCHEMA_VERSION + 2}, 'the future', 1);`,
      [],
      dbName(url),
    );
    const status = await runCli(["db", "status", "--db", url, "--json"]);
    assert.equal(status.code, 0, status.stderr);
    assert.equal(JSON.parse(status.stdout).state, "too-new");
    const migrate = await runCli(["db", "migrate", "--db", url]);
    assert.equal(migrate.code, 25);
    assert.match(
      migrate.stderr,
      new RegExp(
        `has schema version ${POSTGRES_SCHEMA_VERSION + 2}, but this mpota knows only up to version ${POSTGRES_SCHEMA_VERSION}`,
      ),
    );
  });

  it("works on SQLite in --data, and refuses a --db that is not PostgreSQL", async () => {
    const t = tempDir();
    try {
      const empty = await runCli(["db", "status", "--data", t.dir, "--json"]);
      assert.equal(empty.code, 0, empty.stderr);
      const parsed = JSON.parse(empty.stdout);
      assert.equal(parsed.backend, "sqlite");
      assert.equal(parsed.schemaVersion, 0);
      assert.deepEqual(
        parsed.pending.map((m: { version: number }) => m.version),
        [1, 2, 3, 4, 5, 6, 7, 8],
      );
      const migrated = await runCli(["db", "migrate", "--data", t.dir]);
      assert.equal(migrated.code, 0, migrated.stderr);
      assert.match(migrated.stdout, /^Database: SQLite .*mpota\.db\nApplied migration 1: /);
      assert.match(
        migrated.stdout,
        /Applied migration 3: server instances and shared settings\nApplied migration 4: device credentials and the audit log\nApplied migration 5: the kind of each release\nApplied migration 6: when each device's stored state was received\nApplied migration 7: the files of an app job's progress\nApplied migration 8: who cancelled each cancelled job\nSchema version 8: up to date\.\n$/,
      );
      const bad = await runCli(["db", "status", "--db", "mysql://root:hunter2@db/mpota"]);
      assert.equal(bad.code, 2);
      assert.equal(
        bad.stderr,
        "mpota: --db mysql://root:***@db/mpota is not a database mpota can use: give a PostgreSQL URL (postgres://USER:PASSWORD@HOST:5432/DATABASE), or leave --db and MPOTA_DB unset for SQLite in the --data directory.\n",
      );
    } finally {
      t.remove();
    }
  });
});

function closedPort(): Promise<number> {
  return import("node:net").then(
    ({ createServer }) =>
      new Promise((resolve, reject) => {
        const server = createServer();
        server.on("error", reject);
        server.listen(0, "127.0.0.1", () => {
          const address = server.address();
          const port = typeof address === "object" && address ? address.port : 0;
          server.close(() => resolve(port));
        });
      }),
  );
}
