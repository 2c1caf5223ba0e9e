import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { POSTGRES_MIGRATIONS } from "../../src/server/storage/postgres-migrations.ts";
import { openPostgresStorage } from "../../src/server/storage/postgres-storage.ts";
import type { NewRollout, NewRolloutDevice } from "../../src/server/storage/rollout-store.ts";
import { openSqlite } from "../../src/server/storage/sqlite-driver.ts";
import { SQLITE_MIGRATIONS, SQLITE_SCHEMA_VERSION } from "../../src/server/storage/sqlite-migrations.ts";
import { openSqliteStorage, SQLITE_FILE_NAME } from "../../src/server/storage/sqlite-storage.ts";
import { LeaseLostError, type Storage } from "../../src/server/storage/storage.ts";
import { tempDir } from "../server/support/test-server.ts";
import { adminQuery, freshDatabase, skipWithoutPostgres } from "../support/postgres.ts";

const FW = "b".repeat(32);

const newRollout = (id: string, name: string | null = null): NewRollout => ({
  id,
  name,
  firmwareId: FW,
  firmwareName: "sensor",
  firmwareVersion: "2.0",
  firmwareSize: 1000,
  selector: { kind: "tag", tag: "t" },
  groups: [
    { spec: "rest", size: 2, successThreshold: 100, errorThreshold: 20, minExecuted: 2, approve: false },
  ],
  gates: [{ proceed: false, waivedFailed: 0, waivedExecuted: 0 }],
  policy: { maxAttempts: 3, timeoutMs: 60_000, concurrency: 5, allowDowngrade: false, onError: "pause" },
  state: "scheduled",
  currentGroup: 0,
  startAt: 1000,
  createdAt: 1000,
});

const member = (deviceId: string, position: number): NewRolloutDevice => ({
  deviceId,
  group: 0,
  position,
  fromFw: "a".repeat(32),
  state: "pending",
  reason: null,
  finishedAt: null,
});

const created = (at: number) => ({ at, kind: "created", message: "created", data: null });

/** The same tests on each backend. */
const backends: Array<{ name: string; open: () => Promise<Storage>; skip?: string }> = [
  {
    name: "SQLite",
    open: async () => {
      const t = tempDir();
      const storage = await openSqliteStorage(t.dir);
      const close = storage.close.bind(storage);
      return Object.assign(storage, {
        close: async () => {
          await close();
          t.remove();
        },
      });
    },
  },
  {
    name: "PostgreSQL",
    open: async () => openPostgresStorage(await freshDatabase()),
    ...skipWithoutPostgres(),
  },
];

for (const backend of backends) describeRollouts(backend);

function describeRollouts(backend: (typeof backends)[number]): void {
  describe(`rollouts in ${backend.name}`, backend.skip ? { skip: backend.skip } : {}, () => {
    let storage: Storage;
    before(async () => {
      storage = await backend.open();
      await storage.devices.recordState({
        id: "d1",
        state: { v: 1, fw: "a".repeat(32), ip: "10.0.0.1", sleep: 300 },
        at: 900,
        digest: "x",
        nextWakeAt: null,
        historyLimit: 5,
      });
    });
    after(async () => {
      await storage.close();
    });

    it("stores a rollout with its devices, and refuses a device already in an active one, naming it", async () => {
      const first = await storage.rollouts.create(
        newRollout("r-1", "spring"),
        [member("d1", 0), member("d2", 1)],
        created(1000),
      );
      assert.ok(first.ok);
      assert.equal(first.rollout.state, "scheduled");
      const clash = await storage.rollouts.create(
        newRollout("r-2"),
        [member("d3", 0), member("d2", 1)],
        created(1001),
      );
      assert.deepEqual(clash, {
        ok: false,
        conflicts: [{ deviceId: "d2", rolloutId: "r-1", rolloutName: "spring" }],
      });
      assert.equal(await storage.rollouts.get("r-2"), undefined);
      // The snapshot joins each device's last report (sleep period included).
      const snapshot = await storage.rollouts.snapshot("r-1");
      assert.deepEqual(
        snapshot.map((d) => [d.deviceId, d.state, d.device?.sleep ?? null, d.job]),
        [
          ["d1", "pending", 300, null],
          ["d2", "pending", null, null],
        ],
      );
    });

    it("is driven by the holder of its lease; a request's state change needs no lease", async () => {
      const [held] = await storage.rollouts.claimOpen({ owner: "A", now: 2000, leaseMs: 1000, limit: 10 });
      assert.equal(held?.id, "r-1");
      assert.deepEqual(
        await storage.rollouts.claimOpen({ owner: "B", now: 2500, leaseMs: 1000, limit: 10 }),
        [],
      );
      assert.deepEqual(await storage.rollouts.leases(2500), [{ id: "r-1", owner: "A" }]);
      assert.deepEqual(await storage.rollouts.leases(3000), [], "an expired lease is not held");
      await assert.rejects(
        storage.rollouts.update({ id: "r-1", owner: "B", now: 2500, patch: { state: "running" } }),
        LeaseLostError,
      );
      const running = await storage.rollouts.update({
        id: "r-1",
        owner: "A",
        now: 2500,
        expectState: "scheduled",
        patch: { state: "running", startedAt: 2500 },
        devices: [
          { deviceId: "d1", state: "scheduled", jobId: "j-1", sleepy: true, turnAt: 2500, deadlineAt: 9000 },
        ],
        events: [{ at: 2500, kind: "started", message: "started", data: { n: 2 } }],
      });
      assert.equal(running?.state, "running");
      const paused = await storage.rollouts.transition({
        id: "r-1",
        from: ["running"],
        now: 2600,
        patch: { state: "paused", pauseKind: "manual", reason: "Paused by hand." },
        event: { at: 2600, kind: "paused", message: "Paused by hand.", data: null },
      });
      assert.equal(paused?.pauseKind, "manual");
      // The holder's change made for the state it read is not applied over the request's.
      assert.equal(
        await storage.rollouts.update({
          id: "r-1",
          owner: "A",
          now: 2700,
          expectState: "running",
          patch: { currentGroup: 1 },
        }),
        undefined,
      );
      assert.equal((await storage.rollouts.get("r-1"))?.currentGroup, 0);
      assert.equal(
        await storage.rollouts.transition({
          id: "r-1",
          from: ["running"],
          now: 2800,
          patch: { state: "aborted" },
          event: created(2800),
        }),
        undefined,
      );
      // Another instance takes it over once the lease expired.
      const [taken] = await storage.rollouts.claimOpen({ owner: "B", now: 3000, leaseMs: 1000, limit: 10 });
      assert.equal(taken?.leaseOwner, "B");
      const d1 = (await storage.rollouts.snapshot("r-1"))[0];
      assert.deepEqual([d1?.state, d1?.jobId, d1?.sleepy, d1?.deadlineAt], ["scheduled", "j-1", true, 9000]);
      assert.deepEqual(
        (await storage.rollouts.events("r-1", 10)).map((e) => e.kind),
        ["paused", "started", "created"],
      );
    });

    it("keeps ended rollouts with devices still being updated open, and frees their devices for new rollouts", async () => {
      await storage.rollouts.transition({
        id: "r-1",
        from: ["paused"],
        now: 4000,
        patch: { state: "aborted", finishedAt: 4000 },
        event: created(4000),
      });
      const open = await storage.rollouts.claimOpen({ owner: "B", now: 4000, leaseMs: 1000, limit: 10 });
      assert.deepEqual(
        open.map((r) => r.id),
        ["r-1"],
        "d1's job still runs",
      );
      const again = await storage.rollouts.create(newRollout("r-3"), [member("d1", 0)], created(4100));
      assert.ok(again.ok);
      assert.deepEqual(
        (await storage.rollouts.list({ active: true })).map((r) => r.id),
        ["r-3"],
      );
    });

    it("keeps device tags, sorted, and finds devices by tag", async () => {
      assert.deepEqual(await storage.tags.set("d1", ["garden", "battery"]), ["battery", "garden"]);
      await storage.tags.set("d2", ["garden"]);
      assert.deepEqual(await storage.tags.devicesWith("garden"), ["d1", "d2"]);
      assert.deepEqual(await storage.tags.set("d1", []), []);
      assert.deepEqual(await storage.tags.devicesWith("garden"), ["d2"]);
    });
  });
}

describe("the rollout migration", () => {
  it("upgrades a version-1 database in place, keeping its devices and jobs", async () => {
    const t = tempDir();
    try {
      const db = openSqlite(join(t.dir, SQLITE_FILE_NAME));
      db.exec(SQLITE_MIGRATIONS[0]?.sql ?? "");
      db.pragma("user_version = 1");
      db.prepare("INSERT INTO devices (id, first_seen, last_seen, state) VALUES ('old', 1, 2, ?)").run(
        JSON.stringify({ v: 1, fw: "a".repeat(32), ip: "10.0.0.9" }),
      );
      db.close();
      const storage = await openSqliteStorage(t.dir);
      try {
        assert.equal((await storage.devices.get("old"))?.state?.ip, "10.0.0.9");
        assert.deepEqual(await storage.rollouts.list(), []);
        assert.deepEqual(await storage.tags.set("old", ["kept"]), ["kept"]);
      } finally {
        await storage.close();
      }
      const check = openSqlite(join(t.dir, SQLITE_FILE_NAME));
      assert.equal(check.pragma("user_version"), SQLITE_SCHEMA_VERSION);
      assert.equal(SQLITE_SCHEMA_VERSION, 8);
      check.close();
    } finally {
      t.remove();
    }
  });

  it(
    "upgrades a version-1 PostgreSQL database in place, keeping its devices",
    skipWithoutPostgres(),
    async () => {
      const url = await freshDatabase();
      const old = await openPostgresStorage(url, { migrations: POSTGRES_MIGRATIONS.slice(0, 1) });
      await old.close();
      // A row as that version wrote it (today's store writes columns it does not have).
      await adminQuery(
        "INSERT INTO devices (id, state, first_seen, last_seen, last_state_at, state_digest) VALUES ('old', $1, 1, 1, 1, 'x')",
        [JSON.stringify({ v: 1, fw: "a".repeat(32), ip: "10.0.0.9" })],
        new URL(url).pathname.slice(1),
      );
      const storage = await openPostgresStorage(url);
      try {
        assert.equal((await storage.devices.get("old"))?.state?.ip, "10.0.0.9");
        assert.deepEqual(await storage.rollouts.list(), []);
        assert.deepEqual(await storage.tags.set("old", ["kept"]), ["kept"]);
      } finally {
        await storage.close();
      }
    },
  );
});
