import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { describe, it } from "node:test";
import { openSqlite, sqliteDriverName } from "../../src/server/storage/sqlite-driver.ts";
import { tempDir } from "./support/test-server.ts";

const [major = 0, minor = 0] = process.versions.node.split(".").map(Number);
const hasNodeSqlite = major > 23 || (major === 23 && minor >= 4) || (major === 22 && minor >= 13);

describe(`the SQLite driver on Node ${process.version}`, () => {
  it(`is ${hasNodeSqlite ? "node:sqlite" : "better-sqlite3"} on this Node`, () => {
    assert.equal(sqliteDriverName(), hasNodeSqlite ? "node:sqlite" : "better-sqlite3");
  });

  it("gives plain rows with numbers, undefined for no row, and counts changes", () => {
    const t = tempDir();
    const db = openSqlite(join(t.dir, "a.db"));
    try {
      db.exec("CREATE TABLE t (id TEXT PRIMARY KEY, n INTEGER NOT NULL, r REAL) STRICT");
      assert.deepEqual(db.prepare("INSERT INTO t VALUES (?, ?, ?)").run("a", 2 ** 53 - 1, 0.5), {
        changes: 1,
      });
      db.prepare("INSERT INTO t VALUES (@id, @n, @r)").run({ id: "b", n: 7, r: null });
      assert.deepEqual(db.prepare("SELECT * FROM t ORDER BY id").all(), [
        { id: "a", n: 2 ** 53 - 1, r: 0.5 },
        { id: "b", n: 7, r: null },
      ]);
      assert.equal(db.prepare("SELECT * FROM t WHERE id = ?").get("zz"), undefined);
      assert.equal(db.prepare("UPDATE t SET n = n + 1").run().changes, 2);
      assert.equal(db.pragma("user_version = 3"), undefined);
      assert.equal(db.pragma("user_version"), 3);
    } finally {
      db.close();
      t.remove();
    }
  });

  it("commits a transaction whole, rolls it back whole when it throws, and nests by savepoint", () => {
    const t = tempDir();
    const db = openSqlite(join(t.dir, "a.db"));
    try {
      db.exec("CREATE TABLE t (n INTEGER NOT NULL) STRICT");
      const insert = db.prepare("INSERT INTO t VALUES (?)");
      const count = () => db.prepare("SELECT COUNT(*) AS c FROM t").get()?.c;
      const both = db.transaction((a: number, b: number) => {
        insert.run(a);
        insert.run(b);
        return a + b;
      });
      assert.equal(both(1, 2), 3);
      assert.equal(count(), 2);
      const failing = db.transaction(() => {
        insert.run(3);
        throw new Error("broke off");
      });
      assert.throws(() => failing(), /broke off/);
      assert.equal(count(), 2);
      const outer = db.transaction(() => {
        insert.run(4);
        assert.throws(() => failing(), /broke off/);
        insert.run(5);
      });
      outer();
      assert.deepEqual(
        db
          .prepare("SELECT n FROM t ORDER BY n")
          .all()
          .map((r) => r.n),
        [1, 2, 4, 5],
      );
    } finally {
      db.close();
      t.remove();
    }
  });

  it("prints no warning when a process opens SQLite (node:sqlite's ExperimentalWarning is dropped)", () => {
    const t = tempDir();
    try {
      const script = `import { openSqlite } from ${JSON.stringify(new URL("../../src/server/storage/sqlite-driver.ts", import.meta.url).pathname)};
openSqlite(${JSON.stringify(join(t.dir, "a.db"))}).close();
process.emitWarning("another warning", "ExperimentalWarning");`;
      const child = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
        encoding: "utf8",
      });
      assert.equal(child.status, 0, child.stderr);
      // Only the warning that is not SQLite's comes through.
      assert.match(child.stderr, /ExperimentalWarning: another warning/);
      assert.doesNotMatch(child.stderr, /SQLite/);
    } finally {
      t.remove();
    }
  });
});
