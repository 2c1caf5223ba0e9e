import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { describe, it } from "node:test";
import { openSqlite } from "../../src/server/storage/sqlite-driver.ts";
import { SQLITE_MIGRATIONS, SQLITE_SCHEMA_VERSION } from "../../src/server/storage/sqlite-migrations.ts";
import { openSqliteStorage, SQLITE_FILE_NAME } from "../../src/server/storage/sqlite-storage.ts";
import { SchemaTooNewError } from "../../src/server/storage/storage.ts";
import { checkJobFromVersion6, defineStorageSuite, state } from "./support/storage-suite.ts";
import { tempDir } from "./support/test-server.ts";

defineStorageSuite("SQLite", async () => {
  const t = tempDir();
  const storage = await openSqliteStorage(t.dir);
  return {
    storage,
    dispose: async () => {
      await storage.close();
      t.remove();
    },
  };
});

describe("SQLite storage", () => {
  it("creates the database in WAL mode at the current schema version, and reopens it", async () => {
    const t = tempDir();
    try {
      const storage = await openSqliteStorage(join(t.dir, "nested", "data"));
      await storage.devices.recordState({
        id: "d",
        state: state("c".repeat(32)),
        at: 1,
        digest: "x",
        nextWakeAt: null,
        historyLimit: 5,
      });
      await storage.close();
      const db = openSqlite(join(t.dir, "nested", "data", SQLITE_FILE_NAME));
      assert.equal(db.pragma("journal_mode"), "wal");
      assert.equal(db.pragma("user_version"), SQLITE_SCHEMA_VERSION);
      db.close();
      const again = await openSqliteStorage(join(t.dir, "nested", "data"));
      assert.equal((await again.devices.get("d"))?.state?.fw, "c".repeat(32));
      await again.close();
    } finally {
      t.remove();
    }
  });

  it("upgrades a version-4 database: its releases keep no kind (told by their build), new ones store theirs", async () => {
    const t = tempDir();
    try {
      const db = openSqlite(join(t.dir, SQLITE_FILE_NAME));
      for (const m of SQLITE_MIGRATIONS.filter((m) => m.version <= 4)) db.exec(m.sql);
      db.pragma("user_version = 4");
      db.prepare(
        "INSERT INTO firmware (id, name, version, size, notes, added_at, micropython, build, checks) VALUES (?, 'old', '1.0', 10, NULL, 1, NULL, 'ota', '[]')",
      ).run("b".repeat(32));
      db.close();

      const storage = await openSqliteStorage(t.dir);
      try {
        const old = await storage.firmware.get("b".repeat(32));
        assert.equal(old?.build, "ota");
        assert.equal(old && "kind" in old, false);
        const app = {
          id: "c".repeat(32),
          name: "thermostat",
          version: "1.4.0",
          size: 300,
          notes: null,
          addedAt: 2,
          micropython: null,
          build: "app",
          checks: [],
          kind: "app",
        };
        assert.deepEqual(await storage.firmware.add(app), { ok: true, record: app });
        assert.deepEqual(await storage.firmware.get(app.id), app);
      } finally {
        await storage.close();
      }
    } finally {
      t.remove();
    }
  });

  it("upgrades a version-6 database in place: its jobs keep their bytes and count no files until an app's progress is stored", async () => {
    const t = tempDir();
    try {
      const db = openSqlite(join(t.dir, SQLITE_FILE_NAME));
      for (const m of SQLITE_MIGRATIONS.filter((m) => m.version <= 6)) db.exec(m.sql);
      db.pragma("user_version = 6");
      // A job in the middle of its fetch, as version 6 stored it: bytes only.
      db.prepare(
        `INSERT INTO jobs (id, device_id, firmware_id, firmware_name, firmware_version, firmware_size, phase, attempt,
           max_attempts, created_at, updated_at, lease_owner, lease_expires_at, progress_bytes, progress_total, progress_rate)
         VALUES ('j-old', 'board', ?, 'thermostat', '1.4.1', 1400, 'pushing', 1, 3, 1, 2, 'A', 99999, 2048, 61440, 900)`,
      ).run("c".repeat(32));
      db.prepare(
        "INSERT INTO job_steps (job_id, at, kind, message) VALUES ('j-old', 1, 'created', 'Created.')",
      ).run();
      db.close();

      const storage = await openSqliteStorage(t.dir);
      try {
        await checkJobFromVersion6(storage);
      } finally {
        await storage.close();
      }
      const check = openSqlite(join(t.dir, SQLITE_FILE_NAME));
      assert.equal(check.pragma("user_version"), SQLITE_SCHEMA_VERSION);
      // The columns refuse a count no device report carries, whoever writes it.
      assert.throws(
        () => check.prepare("UPDATE jobs SET progress_files = 21, progress_of = 20").run(),
        /CHECK constraint failed/,
      );
      assert.throws(
        () => check.prepare("UPDATE jobs SET progress_of = NULL").run(),
        /CHECK constraint failed/,
      );
      assert.throws(
        () => check.prepare("UPDATE jobs SET cancelled_by = 'someone'").run(),
        /CHECK constraint failed/,
      );
      check.close();
    } finally {
      t.remove();
    }
  });

  it("upgrades a version-3 database in place: its data is kept, credentials and audit start empty", async () => {
    const t = tempDir();
    try {
      const db = openSqlite(join(t.dir, SQLITE_FILE_NAME));
      for (const m of SQLITE_MIGRATIONS.filter((m) => m.version <= 3)) db.exec(m.sql);
      db.pragma("user_version = 3");
      db.prepare("INSERT INTO devices (id, first_seen, last_seen, state) VALUES ('old', 1, 2, ?)").run(
        JSON.stringify({ v: 1, fw: "a".repeat(32), ip: "10.0.0.9" }),
      );
      db.prepare("INSERT INTO settings (key, value) VALUES ('firmware-dir-id', 'kept')").run();
      db.prepare("INSERT INTO device_tags (device_id, tag) VALUES ('old', 'garden')").run();
      db.close();

      const storage = await openSqliteStorage(t.dir);
      try {
        assert.equal((await storage.devices.get("old"))?.state?.ip, "10.0.0.9");
        assert.equal(await storage.settings.get("firmware-dir-id"), "kept");
        assert.deepEqual(await storage.tags.get("old"), ["garden"]);
        assert.deepEqual(await storage.credentials.list(), []);
        assert.deepEqual(await storage.audit.list({ limit: 10 }), []);
        await storage.credentials.add({ deviceId: "old", hash: "$7$1000$c2FsdA==$aGFzaA==", at: 5 });
        assert.equal(await storage.credentials.nextCommandSeq("old", 7), 8);
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

  it("refuses a database written by a newer mpota and leaves it alone", async () => {
    const t = tempDir();
    try {
      const db = openSqlite(join(t.dir, SQLITE_FILE_NAME));
      db.pragma(`user_version = ${SQLITE_SCHEMA_VERSION + 1}`);
      db.exec("CREATE TABLE future (x INTEGER)");
      db.close();
      await assert.rejects(openSqliteStorage(t.dir), (error: unknown) => {
        assert.ok(error instanceof SchemaTooNewError);
        assert.match(
          error.message,
          new RegExp(
            `has schema version ${SQLITE_SCHEMA_VERSION + 1}, but this mpota knows only up to version ${SQLITE_SCHEMA_VERSION}`,
          ),
        );
        assert.match(error.message, /Upgrade mpota, or start this one with another --data directory/);
        return true;
      });
      const check = openSqlite(join(t.dir, SQLITE_FILE_NAME));
      assert.equal(check.pragma("user_version"), SQLITE_SCHEMA_VERSION + 1);
      assert.deepEqual(
        (
          check.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as Array<{
            name: string;
          }>
        ).map((r) => r.name),
        ["future"],
      );
      check.close();
    } finally {
      t.remove();
    }
  });

  it("keeps every record whole when the writing process is killed mid-write", async () => {
    const t = tempDir();
    try {
      const child = spawn(
        process.execPath,
        ["--import", "tsx", new URL("./support/storage-writer.ts", import.meta.url).pathname, t.dir],
        {
          stdio: ["ignore", "pipe", "inherit"],
        },
      );
      await new Promise<void>((resolve, reject) => {
        child.stdout.on("data", (chunk: Buffer) => {
          if (chunk.toString().includes("writing")) resolve();
        });
        child.on("exit", (code) => reject(new Error(`writer exited early (${code})`)));
      });
      await new Promise((resolve) => setTimeout(resolve, 150));
      child.kill("SIGKILL");
      await new Promise((resolve) => child.on("close", resolve));

      const db = openSqlite(join(t.dir, SQLITE_FILE_NAME));
      assert.equal(db.pragma("integrity_check"), "ok");
      const devices = db.prepare("SELECT id, state, state_digest FROM devices").all() as Array<{
        id: string;
        state: string;
        state_digest: string;
      }>;
      assert.equal(devices.length, 7);
      for (const d of devices) {
        // The device row and its newest history entry were written in one transaction: they agree.
        const newest = db
          .prepare("SELECT state FROM device_states WHERE device_id = ? ORDER BY seq DESC LIMIT 1")
          .get(d.id) as {
          state: string;
        };
        assert.equal(newest.state, d.state);
        const parsed = JSON.parse(d.state) as { mem: number; fw: string };
        assert.equal(d.state_digest, `d${parsed.mem}`);
        assert.equal(parsed.fw, (parsed.mem % 16).toString(16).repeat(32));
        const count = db.prepare("SELECT COUNT(*) AS n FROM device_states WHERE device_id = ?").get(d.id) as {
          n: number;
        };
        assert.ok(count.n <= 5, `history of ${d.id} trimmed to 5, has ${count.n}`);
      }
      db.close();
      const reopened = await openSqliteStorage(t.dir);
      assert.equal((await reopened.devices.list()).length, 7);
      await reopened.close();
    } finally {
      t.remove();
    }
  });
});
