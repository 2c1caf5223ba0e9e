import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import {
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readdirSync,
  rmSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Command } from "commander";
import { registerFirmwareCommand } from "../../src/cli/firmware.ts";
import { MemoryIo } from "../../src/cli/io.ts";
import { MpotaError } from "../../src/errors.ts";
import { FirmwareLibrary } from "../../src/server/releases/firmware-library.ts";
import { DiskFullError, isDiskFull } from "../../src/server/storage/disk-full.ts";
import { openSqliteStorage } from "../../src/server/storage/sqlite-storage.ts";
import { StorageError } from "../../src/server/storage/storage.ts";
import { call, type HttpTestServer, startHttpServer } from "../http/support.ts";
import { buildMicroPythonImage, imageIdentity } from "../support/images.ts";
import { MqttDevice } from "./support/mqtt-device.ts";
import { tempDir } from "./support/test-server.ts";
import { eventually } from "./support/wait.ts";

/** A tmpfs of `size` mounted on a new directory, or the reason it cannot be (not root, no mount). */
function mountTmpfs(size: string): { dir: string; unmount: () => void } | string {
  const dir = mkdtempSync(join(tmpdir(), "mpota-full-"));
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir], { stdio: "pipe" });
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    return `cannot mount a tmpfs (${(error as Error).message.split("\n")[0]}): run as root, or in a container with CAP_SYS_ADMIN`;
  }
  return {
    dir,
    unmount: () => {
      execFileSync("umount", [dir]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Fills the file system of `dir` to the last byte with `filler`; returns its path (remove it to free the space). */
function fill(dir: string): string {
  const path = join(dir, "filler");
  const fd = openSync(path, "w");
  try {
    for (const chunk of [Buffer.alloc(64 * 1024, 1), Buffer.alloc(4096, 1), Buffer.alloc(1, 1)]) {
      try {
        for (;;) writeSync(fd, chunk);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "ENOSPC") throw error;
      }
    }
  } finally {
    closeSync(fd);
  }
  return path;
}

const probe = mountTmpfs("1m");
const skip = typeof probe === "string" ? probe : false;
if (typeof probe !== "string") probe.unmount();

describe("disk full: the firmware store", { skip }, () => {
  let disk: { dir: string; unmount: () => void };
  const image = buildMicroPythonImage({ size: 200_000, seed: 61 });
  const id = imageIdentity(image);

  before(() => {
    disk = mountTmpfs("2m") as { dir: string; unmount: () => void };
  });
  after(() => disk.unmount());

  it("refuses an image with the cause and the path, leaves no file, and takes it once space is back", async () => {
    const storage = await openSqliteStorage(disk.dir);
    try {
      const library = new FirmwareLibrary(storage, disk.dir, () => 1_700_000_000_000);
      const filler = fill(disk.dir);
      const error = await library.add({ bytes: image, name: "sensor", version: "1.0" }).then(
        () => assert.fail("the add succeeded on a full disk"),
        (e: unknown) => e,
      );
      assert.ok(error instanceof DiskFullError, `expected a DiskFullError, got ${String(error)}`);
      assert.equal(error.exitCode, 24);
      assert.match(error.message, /No space left to write the image of firmware [0-9a-f]{32}/);
      assert.ok(error.message.includes(join(disk.dir, "firmware", `${id}.bin`)), error.message);
      assert.match(error.message, /the disk is full\. Nothing was kept\. Free space/);
      assert.deepEqual(readdirSync(join(disk.dir, "firmware")), []);
      assert.deepEqual(await storage.firmware.list(), []);

      rmSync(filler);
      const { record } = await library.add({ bytes: image, name: "sensor", version: "1.0" });
      assert.equal(record.id, id);
      assert.deepEqual(readdirSync(join(disk.dir, "firmware")), [`${id}.bin`]);
    } finally {
      await storage.close();
    }
  });
});

describe("disk full: the server", { skip, timeout: 60_000 }, () => {
  let disk: { dir: string; unmount: () => void };
  let s: HttpTestServer;
  const t = tempDir();
  const image = buildMicroPythonImage({ size: 200_000, seed: 62 });
  const file = join(t.dir, "sensor.bin");
  writeFileSync(file, image);

  before(async () => {
    disk = mountTmpfs("8m") as { dir: string; unmount: () => void };
    s = await startHttpServer(disk.dir);
  });
  after(async () => {
    await s?.stop();
    disk.unmount();
    t.remove();
  });

  /** `mpota firmware add` over the bridge, as main() runs it: output and exit code. */
  async function firmwareAdd(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
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
        ...args,
        "--mqtt",
        s.brokerUrl,
        "--data",
        disk.dir,
      ]);
      return { code: 0, stdout: io.stdout, stderr: io.stderrText };
    } catch (error) {
      if (!(error instanceof MpotaError)) throw error;
      return { code: error.exitCode, stdout: io.stdout, stderr: `${io.stderrText}mpota: ${error.message}\n` };
    }
  }

  const firmwareDir = () =>
    existsSync(join(disk.dir, "firmware")) ? readdirSync(join(disk.dir, "firmware")) : [];

  it("answers an upload 507 with the cause, over the bridge too, keeps serving, and takes it once space is back", async () => {
    const filler = fill(disk.dir);

    const refused = await call(s, "POST", "/api/v1/firmware?name=sensor&version=1.0", { body: image });
    assert.equal(refused.status, 507);
    assert.equal(refused.body.cause, "disk-full");
    assert.match(
      refused.body.error,
      /^No space left to write the image of firmware [0-9a-f]{32} \(.+\): the disk is full/,
    );
    assert.ok(refused.body.error.includes(join(disk.dir, "firmware")), refused.body.error);
    assert.doesNotMatch(refused.body.error, /please report/);
    assert.deepEqual(firmwareDir(), []);

    const cli = await firmwareAdd("--name", "sensor", "--version", "1.0");
    assert.equal(cli.code, 24, cli.stderr); // as locally: the reply carries the exit code
    assert.match(cli.stderr, /mpota: No space left to write the image of firmware .* the disk is full/);
    assert.deepEqual(firmwareDir(), []);

    // Still serving: a read answers, and the refusal was logged once, without a stack.
    assert.equal((await call(s, "GET", "/api/v1/firmware")).status, 200);
    assert.equal(s.logs.lines.filter((l) => String(l.err ?? "").includes("at ")).length, 0);

    rmSync(filler);
    const added = await call(s, "POST", "/api/v1/firmware?name=sensor&version=1.0", { body: image });
    assert.equal(added.status, 201, JSON.stringify(added.body));
    assert.deepEqual(firmwareDir(), [`${imageIdentity(image)}.bin`]);
    const again = await firmwareAdd("--name", "sensor", "--version", "1.1");
    assert.equal(again.code, 22); // the same bytes are refused as a duplicate, which shows the bridge works again
    assert.match(again.stderr, /already in the store as sensor 1\.0/);
  });

  it("drops device states while the database is full, with one log line for the outage, and stores them again after", {
    timeout: 30_000,
  }, async () => {
    const devices = await Promise.all(
      ["full-a", "full-b", "full-c"].map((id) => MqttDevice.connect(s.url, id)),
    );
    const before = s.logs.lines.length;
    // SQLite on the full tmpfs keeps writing into pages its files already hold (minutes of states
    // would be needed to grow them), so the database's answer on a full disk is injected, as
    // better-sqlite3 gives it (PostgreSQL's "could not extend file" is recognised the same way).
    const devicesStore = s.server.storage.devices;
    const recordState = devicesStore.recordState.bind(devicesStore);
    let refused = 0;
    devicesStore.recordState = async () => {
      refused += 1;
      throw Object.assign(new Error("database or disk is full"), { code: "SQLITE_FULL" });
    };
    try {
      const state = (n: number) =>
        JSON.stringify({ v: 2, fw: n.toString(16).padStart(32, "0"), ip: "10.0.0.7" });
      for (let n = 0; n < 3000; n++) {
        const device = devices[n % 3] as MqttDevice;
        if (n >= 2997) await device.publish("state", state(n), false);
        else device.client.publish(`mpota/${device.id}/state`, state(n), { qos: 0 });
      }
      const outage = "disk full: device messages are dropped until space is freed (logged once per outage)";
      await eventually(() => s.logs.find(outage).length > 0, "the disk-full line");
      // The disk stays full until the server has been handed the states (on a loaded machine the
      // broker can still hold hundreds of them a second later); then every device queue finishes.
      await eventually(
        () => refused > 2900,
        `the states handled while the disk is full (${refused})`,
        20_000,
      );
      for (let i = 0; i < 3; i++) {
        await new Promise((resolve) => setTimeout(resolve, 200));
        await s.server.inbox.idle();
      }
      const during = s.logs.lines.slice(before).filter((l) => l.level >= 40);
      assert.deepEqual(
        during.map((l) => l.msg),
        [outage],
      );
      assert.match(String(during[0]?.reason), /database or disk is full|SQLITE_FULL/);
    } finally {
      devicesStore.recordState = recordState;
    }
    await devices[0]?.publish("state", JSON.stringify({ v: 2, fw: "af".repeat(16), ip: "10.0.0.7" }), false);
    await eventually(
      async () => (await s.server.storage.devices.get("full-a"))?.state?.fw === "af".repeat(16),
      "the state sent after the outage to be stored",
    );
    const back = s.logs.find("disk space is back: device messages are stored again");
    assert.equal(back.length, 1);
    assert.ok(Number(back[0]?.dropped) > 2900, `dropped ${back[0]?.dropped}`);
    for (const device of devices) await device.client.endAsync();
  });
});

describe("disk full: recognised from every store's own words", () => {
  it("knows fs, better-sqlite3, node:sqlite and PostgreSQL (wrapped as mpota wraps it), and nothing else", () => {
    const pg = new StorageError("PostgreSQL mpota failed while storing a state: could not extend file", {
      cause: Object.assign(new Error('could not extend file "base/16384/16402": No space left on device'), {
        code: "53100",
      }),
    });
    assert.ok(isDiskFull(pg));
    assert.ok(
      isDiskFull(Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" })),
    );
    assert.ok(isDiskFull(Object.assign(new Error("database or disk is full"), { code: "SQLITE_FULL" })));
    assert.ok(
      isDiskFull(
        Object.assign(new Error("database or disk is full"), { code: "ERR_SQLITE_ERROR", errcode: 13 }),
      ),
    );
    assert.ok(
      !isDiskFull(Object.assign(new Error("database is locked"), { code: "SQLITE_BUSY", errcode: 5 })),
    );
    assert.ok(!isDiskFull(Object.assign(new Error("EACCES: permission denied"), { code: "EACCES" })));
    assert.ok(!isDiskFull(undefined));
  });
});
