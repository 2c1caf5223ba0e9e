import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Command } from "commander";
import { connectAsync } from "mqtt";
import { registerFirmwareCommand } from "../../src/cli/firmware.ts";
import { MemoryIo } from "../../src/cli/io.ts";
import { MpotaError } from "../../src/errors.ts";
import { EXIT_CODES } from "../../src/exit-codes.ts";
import { V2 } from "./support/job-suite.ts";
import { startTestServer, type TestServer, tempDir } from "./support/test-server.ts";
import { eventually } from "./support/wait.ts";

/**
 * A refusal over the bridge carries the exit code the failure has locally,
 * so `mpota firmware add` through a server exits 24 on a full disk, as it
 * does on this machine's own data directory, not 22 (issue 16). The full
 * database is injected as better-sqlite3 answers (test/server/disk-full.test.ts
 * fills a real tmpfs where the test may mount one).
 */
describe("exit codes over the bridge", { timeout: 30_000 }, () => {
  const t = tempDir();
  let s: TestServer;
  const file = join(t.dir, "sensor.bin");

  before(async () => {
    s = await startTestServer(join(t.dir, "data"));
    writeFileSync(file, V2);
  });
  after(async () => {
    await s?.stop();
    t.remove();
  });

  async function firmwareAdd(): Promise<{ code: number; stderr: string }> {
    const io = new MemoryIo();
    const program = new Command("mpota").exitOverride();
    registerFirmwareCommand(program, io);
    try {
      await program.parseAsync([
        "node",
        "mpota",
        "firmware",
        "add",
        file,
        "--name",
        "sensor",
        "--version",
        "2.0",
        "--mqtt",
        s.url,
      ]);
      return { code: 0, stderr: io.stderrText };
    } catch (error) {
      if (!(error instanceof MpotaError)) throw error;
      return { code: error.exitCode, stderr: `${io.stderrText}mpota: ${error.message}\n` };
    }
  }

  it("is 24 with the cause for a full disk, and 22 for a refusal", async () => {
    const watcher = await connectAsync(s.url, { reconnectPeriod: 0 });
    const replies: Array<Record<string, unknown>> = [];
    watcher.on("message", (_topic, payload) =>
      replies.push(JSON.parse(payload.toString()) as Record<string, unknown>),
    );
    await watcher.subscribeAsync("mpota/bridge/response/firmware/add", { qos: 1 });
    const firmware = s.server.storage.firmware;
    const add = firmware.add.bind(firmware);
    firmware.add = async () => {
      throw Object.assign(new Error("database or disk is full"), { code: "SQLITE_FULL" });
    };
    try {
      const full = await firmwareAdd();
      assert.equal(full.code, EXIT_CODES.storage.code, full.stderr);
      assert.match(
        full.stderr,
        /mpota: No space left to write firmware sensor 2\.0 into the database .*the disk is full/,
      );
      await eventually(() => replies.length > 0, "the reply");
      assert.equal(replies[0]?.code, 24);
      assert.equal(replies[0]?.cause, "disk-full");
    } finally {
      firmware.add = add;
    }
    assert.equal((await firmwareAdd()).code, 0);
    const duplicate = await firmwareAdd();
    assert.equal(duplicate.code, EXIT_CODES.requestRefused.code);
    assert.match(duplicate.stderr, /already in the store/);
    await eventually(() => replies.length >= 3, "three replies");
    assert.equal(replies[2]?.code, 22);
    assert.equal(replies[2]?.cause, undefined);
    await watcher.endAsync();
  });
});
