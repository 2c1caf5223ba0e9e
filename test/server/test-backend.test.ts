import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import { startTestServer, tempDir } from "./support/test-server.ts";

// The server tests run twice (scripts/run-tests.mjs): SQLite, then PostgreSQL
// with MPOTA_TEST_BACKEND=postgres. This checks the switch itself.
describe("test servers in this run", () => {
  it("keep their state in the run's backend, the same database again for the same data directory", async () => {
    const t = tempDir();
    try {
      const first = await startTestServer(t.dir);
      await first.server.storage.settings.putIfAbsent("marker", "kept");
      const description = first.server.storage.description;
      await first.stop();
      if (process.env.MPOTA_TEST_BACKEND === "postgres") {
        assert.match(description, /^PostgreSQL mpota@127\.0\.0\.1:\d+\/d_[0-9a-f]{24}$/);
      } else {
        assert.equal(description, `SQLite ${join(t.dir, "mpota.db")}`);
      }
      const second = await startTestServer(t.dir);
      assert.equal(second.server.storage.description, description);
      assert.equal(await second.server.storage.settings.get("marker"), "kept");
      await second.stop();
    } finally {
      t.remove();
    }
  });
});
