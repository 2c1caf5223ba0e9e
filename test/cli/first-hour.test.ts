import assert from "node:assert/strict";
import { copyFileSync, existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { MqttDevice } from "../server/support/mqtt-device.ts";
import { startTestServer, type TestServer, tempDir } from "../server/support/test-server.ts";
import { eventually } from "../server/support/wait.ts";
import { makeTempDir, runCli } from "../support/cli.ts";
import { fixturePath } from "../support/fixtures.ts";

/** What a newcomer runs into in the first hour (issue 17), command by command. */
describe("the first hour with the CLI", () => {
  const tmp = makeTempDir("mpota-first-hour-");
  before(() => {
    copyFileSync(fixturePath("reference/priv-pkcs8.key"), join(tmp.dir, "priv.key"));
  });
  after(() => tmp.remove());

  test("simulate writes a sample firmware and a synthetic yaota8266.bin with the key: inspect and flash-plan take them", async () => {
    const wrote = await runCli(
      [
        "simulate",
        "--write-firmware",
        "firmware-ota.bin",
        "--write-bootloader",
        "yaota8266.bin",
        "--key",
        "priv.key",
      ],
      { cwd: tmp.dir },
    );
    assert.equal(wrote.code, 0, wrote.stderr);
    assert.match(wrote.stdout, /^Wrote firmware-ota\.bin: synthetic MicroPython OTA image, 614400 bytes/m);
    assert.match(
      wrote.stdout,
      /^Wrote yaota8266\.bin: a SYNTHETIC yaota8266 bootloader, 102400 bytes, laid out as upstream's build with the 512-bit modulus of priv\.key, GPIO mask 0xf035, MAIN_APP_OFFSET 0x3c000\.\nIt runs nothing: .*Do not flash it/m,
    );

    const inspect = await runCli(["inspect", "yaota8266.bin", "--key", "priv.key"], { cwd: tmp.dir });
    assert.equal(inspect.code, 0, inspect.stderr);
    assert.match(
      inspect.stdout,
      /^yaota8266\.bin: yaota8266 bootloader \(boot8266 \+ ota-server\), GPIO mask 0xf035, wait 3000 ms, holds the key's modulus/,
    );
    assert.match(
      inspect.stdout,
      /the 512-bit modulus is at 0x[0-9a-f]+: updates signed with this key are accepted/,
    );
    assert.match(
      inspect.stdout,
      /This is a synthetic yaota8266\.bin made by `mpota simulate --write-bootloader`.*do not flash it/,
    );

    const plan = await runCli(
      [
        "flash-plan",
        "--bootloader",
        "yaota8266.bin",
        "--firmware",
        "firmware-ota.bin",
        "--board",
        "sonoff-basic",
        "--key",
        "priv.key",
        "-o",
        "full.bin",
      ],
      { cwd: tmp.dir },
    );
    assert.equal(plan.code, 0, plan.stderr);
    const output = plan.stdout + plan.stderr;
    assert.match(output, /bootloader yaota8266\.bin: GPIO mask 0xf035, wait 3000 ms, key matches/);
    assert.match(output, /write_flash -fm dout -fs 1MB 0x0 full\.bin/);
    assert.match(output, /warning: This is a synthetic yaota8266\.bin/);
    const full = readFileSync(join(tmp.dir, "full.bin"));
    const boot = readFileSync(join(tmp.dir, "yaota8266.bin"));
    // The merged image holds the bootloader, its header set to the Sonoff's dout mode (3).
    assert.equal(full[2], 3);
    assert.deepEqual(full.subarray(4, boot.length), boot.subarray(4));

    // Another key: the bootloader does not hold it, and inspect says so (exit 11).
    const other = await runCli(["keys", "new", "--dir", "other"], { cwd: tmp.dir });
    assert.equal(other.code, 0, other.stderr);
    const wrong = await runCli(["inspect", "yaota8266.bin", "--key", "other/priv.key"], { cwd: tmp.dir });
    assert.equal(wrong.code, 11, wrong.stderr);
    assert.match(wrong.stdout, /the 512-bit modulus is NOT in this bootloader/);
  });

  test("sign on an already signed .ota says exactly that, and to push it as is", async () => {
    const signed = await runCli(["sign", "firmware-ota.bin"], { cwd: tmp.dir });
    assert.equal(signed.code, 0, signed.stderr);
    for (const extra of [[], ["--no-preflight"], ["--force"]]) {
      const again = await runCli(["sign", "firmware-ota.bin.ota", ...extra], { cwd: tmp.dir });
      assert.equal(again.code, 2, again.stderr);
      assert.equal(
        again.stderr,
        "mpota: firmware-ota.bin.ota is already signed: it is a canned .ota update (made by `mpota sign` or ota_client.py sign). Push it as it is: `mpota push firmware-ota.bin.ota --to <device address>`. To sign with another key or block size, sign the firmware image it was made from (firmware-ota.bin).\n",
      );
      assert.doesNotMatch(again.stderr, /too large|not a firmware image/);
    }
    assert.equal(existsSync(join(tmp.dir, "firmware-ota.bin.ota.ota")), false);
  });
});

describe("mpota devices <id>", () => {
  const t = tempDir("mpota-devices-id-");
  let server: TestServer;
  before(async () => {
    server = await startTestServer(t.dir);
  });
  after(async () => {
    await server.stop();
    t.remove();
  });

  test("is `devices show <id>`; a plain `devices` still lists", async () => {
    const dev = await MqttDevice.connect(server.url, "sim-2", "mpota", await server.provision("sim-2"));
    try {
      await dev.state({ fw: "0123456789abcdef0123456789abcdef", ip: "127.0.1.2" });
      await dev.status("online");
      const ask = (...args: string[]) => runCli(["devices", ...args, "--mqtt", server.url]);
      await eventually(async () => (await ask()).stdout.includes("sim-2"), "sim-2 listed");
      const byId = await ask("sim-2");
      assert.equal(byId.code, 0, byId.stderr);
      assert.doesNotMatch(byId.stderr, /too many arguments/);
      const show = await ask("show", "sim-2");
      assert.equal(show.code, 0, show.stderr);
      assert.match(byId.stdout, /^Device sim-2\n {2}status {5}online/);
      assert.equal(byId.stdout.split("\n")[0], show.stdout.split("\n")[0]);
      assert.match(byId.stdout, /address {4}127\.0\.1\.2/);
      const list = await ask();
      assert.match(list.stdout, /^DEVICE +STATUS/);
      const unknown = await ask("sim-9");
      assert.notEqual(unknown.code, 0);
      assert.match(unknown.stderr, /sim-9/);
    } finally {
      await dev.close();
    }
  });
});
