import assert from "node:assert/strict";
import { chmodSync, copyFileSync, mkdirSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Command, CommanderError } from "commander";
import { registerDevicesCommand } from "../../src/cli/devices.ts";
import { registerFirmwareCommand } from "../../src/cli/firmware.ts";
import { MemoryIo } from "../../src/cli/io.ts";
import { registerJobsCommand } from "../../src/cli/jobs.ts";
import { registerServeCommand, serveCommand } from "../../src/cli/serve.ts";
import type { ServeOptions } from "../../src/cli/serve-options.ts";
import { serverSettings } from "../../src/cli/serve-settings.ts";
import { loadServerKey } from "../../src/cli/serve-signing-key.ts";
import { registerUpdateCommand } from "../../src/cli/update.ts";
import { MpotaError, UsageError } from "../../src/errors.ts";
import { EmbeddedBroker } from "../../src/server/mqtt/embedded-broker.ts";
import { buildEsp32AppImage, buildMergedFirmware, esp32Identity } from "../support/esp32-image.ts";
import { fixturePath } from "../support/fixtures.ts";
import { buildMicroPythonImage, imageIdentity } from "../support/images.ts";
import { DeviceTwin } from "./support/device-twin.ts";
import { LogCapture } from "./support/log-capture.ts";
import { MqttDevice } from "./support/mqtt-device.ts";
import { tempDir } from "./support/test-server.ts";
import { eventually } from "./support/wait.ts";

/** Runs `mpota ARGS` with this area's commands, as main() does: output captured, exit code per error class. */
async function mpota(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const io = new MemoryIo();
  const program = new Command("mpota").enablePositionalOptions().exitOverride();
  program.configureOutput({ writeOut: (s) => io.out(s), writeErr: (s) => io.err(s) });
  registerServeCommand(program, io);
  registerFirmwareCommand(program, io);
  registerUpdateCommand(program, io);
  registerDevicesCommand(program, io);
  registerJobsCommand(program, io);
  const exitOverride = (cmd: Command) => {
    cmd.exitOverride().configureOutput({ writeOut: (s) => io.out(s), writeErr: (s) => io.err(s) });
    for (const sub of cmd.commands) exitOverride(sub);
  };
  exitOverride(program);
  try {
    await program.parseAsync(["node", "mpota", ...args]);
    return { code: 0, stdout: io.stdout, stderr: io.stderrText };
  } catch (error) {
    if (error instanceof CommanderError)
      return { code: error.exitCode === 0 ? 0 : 2, stdout: io.stdout, stderr: io.stderrText };
    if (error instanceof MpotaError) {
      io.err(`mpota: ${error.message}\n`);
      return { code: error.exitCode, stdout: io.stdout, stderr: io.stderrText };
    }
    throw error;
  }
}

/**
 * `dir` holding the test command key, as a data directory a server already
 * ran on would (so the test does not spend a second of CPU making one).
 */
function seededDataDir(dir: string): string {
  mkdirSync(dir, { recursive: true });
  copyFileSync(fixturePath("command-key.pem"), join(dir, "command-key.pem"));
  chmodSync(join(dir, "command-key.pem"), 0o600);
  return dir;
}

const serveDefaults = (data: string): ServeOptions => ({
  data,
  mqttHost: "127.0.0.1",
  mqttPort: 0,
  key: fixturePath("reference/priv-pkcs1.key"),
  base: "mpota",
  block: 256,
  maxAttempts: 5,
  maxPushes: 8,
  logLevel: "warn",
});

describe("mpota serve and the commands that ask it", () => {
  const t = tempDir();
  const io = new MemoryIo();
  let stop: () => void = () => undefined;
  let serving: Promise<void>;
  let url = "";
  const v1 = buildMicroPythonImage({ size: 40000, seed: 31 });
  const v2 = buildMicroPythonImage({ size: 42000, seed: 32 });
  const file = join(t.dir, "firmware-ota.bin");
  writeFileSync(file, v2);
  const data = seededDataDir(join(t.dir, "data"));
  // The CLI logs in as mpota-admin with the admin token it finds in the server's data directory.
  const ask = (...args: string[]) => mpota([...args, "--mqtt", url, "--data", data]);
  /** Provisions a device as its owner would (`mpota devices add ID --json`): its MQTT login. */
  const provision = async (id: string) => {
    const r = await ask("devices", "add", id, "--json");
    assert.equal(r.code, 0, r.stderr);
    const added = JSON.parse(r.stdout) as { username: string; secret: string };
    return { username: added.username, password: added.secret };
  };

  before(async () => {
    serving = serveCommand(
      serveDefaults(data),
      io,
      new Promise<void>((resolve) => {
        stop = resolve;
      }),
    );
    const line = await eventually(
      () => /broker (mqtt:\/\/\S+) \(embedded;/.exec(io.stderrText)?.[1],
      "server started",
    );
    url = line.replace(/,$/, "");
  });
  after(async () => {
    stop();
    await serving;
    t.remove();
  });

  it("says where it runs, what it pushes to, and how to watch it", () => {
    assert.match(
      io.stderrText,
      /^mpota server running: broker mqtt:\/\/127\.0\.0\.1:\d+ \(embedded; clients need credentials: devices their own from `mpota devices add`, tools the admin token\), data .*data, base topic mpota, pushes only to 10\.0\.0\.0\/8, 172\.16\.0\.0\/12, 192\.168\.0\.0\/16, 127\.0\.0\.0\/8; signing key .*priv-pkcs1\.key \(512-bit\)\.\nWatch it with: mosquitto_sub -h 127\.0\.0\.1 -p \d+ -u mpota-admin -P "\$\(cat .*data\/admin-token\)" -t 'mpota\/#' -v\nStop with Ctrl-C\.\n/m,
    );
    assert.match(
      io.stderrText,
      /^Created the admin token \(shown once; it is in .*data\/admin-token, mode 0600\)\. .*\n {2}\S+\n/m,
    );
    assert.match(
      io.stderrText,
      /Note: .*priv-pkcs1\.key is a 512-bit key: anyone who factors it can sign firmware for your devices\./,
    );
  });

  it("adds and lists firmware", async () => {
    const added = await ask(
      "firmware",
      "add",
      file,
      "--name",
      "sensor",
      "--version",
      "2.0",
      "--notes",
      "faster wake",
    );
    assert.equal(added.code, 0, added.stderr);
    assert.equal(
      added.stdout,
      `Added sensor 2.0: 42,000 bytes (41.0 KiB), identity ${imageIdentity(v2)}.\nUpdate a device with \`mpota update DEVICE sensor@2.0\`.\n`,
    );
    const list = await ask("firmware");
    assert.equal(list.code, 0);
    assert.match(list.stdout, /^NAME +VERSION +FOR +IDENTITY +SIZE +MICROPYTHON +DEVICES +ADDED +NOTES\n-+/);
    assert.match(
      list.stdout,
      // 109 columns whole: piped, the list keeps to 100 and the notes are cut (`firmware show` has them).
      new RegExp(`\\nsensor +2\\.0 +esp8266 +${imageIdentity(v2)} +42000 +- +0 +\\d+ s ago +faste…\\n$`),
    );
    const json = await ask("firmware", "list", "--json");
    assert.deepEqual(
      (JSON.parse(json.stdout) as Array<{ id: string }>).map((f) => f.id),
      [imageIdentity(v2)],
    );
  });

  it("adds an ESP32 micropython.bin near its 1.5 MiB slot, named by its ELF SHA-256, and refuses a merged firmware.bin", async () => {
    const app = buildEsp32AppImage({ size: 1_558_512, seed: 34, banner: "v1.27.0 on 2025-12-09" });
    const appFile = join(t.dir, "ESP32_GENERIC-OTA-v1.27.0.app-bin");
    writeFileSync(appFile, app);
    const added = await ask("firmware", "add", appFile, "--name", "board", "--version", "1.27.0");
    assert.equal(added.code, 0, added.stderr);
    const id = esp32Identity({ seed: 34 }).slice(0, 32);
    assert.equal(
      added.stdout,
      `Added board 1.27.0: 1,558,512 bytes (1.49 MiB), identity ${id}, MicroPython v1.27.0.\nUpdate a device with \`mpota update DEVICE board@1.27.0\`.\n`,
    );
    const list = await ask("firmware");
    assert.match(list.stdout, new RegExp(`\\nboard +1\\.27\\.0 +esp32 +${id} +1558512 +v1\\.27\\.0 +0 `));
    const merged = join(t.dir, "firmware.bin");
    writeFileSync(merged, buildMergedFirmware(buildEsp32AppImage({ size: 100_000, seed: 35 })));
    const r = await ask("firmware", "add", merged, "--name", "board", "--version", "1.27.1");
    assert.equal(r.code, 22);
    assert.match(
      r.stderr,
      /^mpota: firmware\.bin must not go to this device:\n- firmware\.bin is a merged firmware\.bin for ESP32 .*Use micropython\.bin from the same build \(published on micropython\.org as the \.app-bin file\)\./,
    );
  });

  it("refuses a file that is not an OTA build, with the checks' reasons", async () => {
    const bad = join(t.dir, "firmware.bin");
    writeFileSync(bad, buildMicroPythonImage({ size: 40000, seed: 33, ota: false }));
    const r = await ask("firmware", "add", bad, "--name", "sensor", "--version", "2.1");
    assert.equal(r.code, 22);
    assert.match(
      r.stderr,
      /^mpota: firmware\.bin must not go to this device:\n- This is a normal MicroPython build, not an OTA build/,
    );
    const missing = await ask("firmware", "add", join(t.dir, "nope.bin"), "--name", "x", "--version", "1");
    assert.equal(missing.code, 3);
    assert.match(missing.stderr, /Firmware .*nope\.bin does not exist/);
  });

  it("lists devices as a table and as JSON", async () => {
    const empty = await ask("devices");
    assert.equal(
      empty.stdout,
      "No devices yet. A device appears when its agent publishes <base>/<id>/state (see docs/mqtt.md).\n",
    );
    const dev = await MqttDevice.connect(url, "porch", "mpota", await provision("porch"));
    await dev.state({ fw: imageIdentity(v1), ip: "192.168.1.40", rssi: -58, vbat: 3.1, sleep: 600 });
    await dev.status("sleeping");
    await eventually(async () => (await ask("devices")).stdout.includes("sleeping"), "porch listed");
    const table = await ask("devices");
    assert.match(table.stdout, /^DEVICE +STATUS +FIRMWARE +APP +IP +RSSI +VBAT +LAST SEEN +JOB\n/);
    assert.match(
      table.stdout,
      new RegExp(
        `\\nporch +sleeping, wakes in (9|10) min +${imageIdentity(v1).slice(0, 8)} \\(unknown\\) +- +192\\.168\\.1\\.40 +-58 +3\\.10 +\\d+ s ago +-\\n$`,
      ),
    );
    const json = JSON.parse((await ask("devices", "--json")).stdout) as Array<{ id: string; ip: string }>;
    assert.deepEqual(
      json.map((d) => [d.id, d.ip]),
      [["porch", "192.168.1.40"]],
    );
    const show = await ask("devices", "show", "porch");
    assert.match(show.stdout, /^Device porch\n {2}status {5}sleeping, wakes in/);
    assert.match(show.stdout, /State history \(newest first\):/);
    assert.match(show.stdout, /\n {2}app {8}- \(the agent reports no app\)\n/);
    await dev.close();
  });

  it("takes the broker and the data directory from MPOTA_MQTT and MPOTA_DATA, so a server on another port needs no --mqtt", async () => {
    const saved = { mqtt: process.env.MPOTA_MQTT, data: process.env.MPOTA_DATA };
    try {
      // Without them the CLI asks mqtt://localhost:1883, where no server of this test listens.
      process.env.MPOTA_MQTT = url;
      process.env.MPOTA_DATA = data;
      const r = await mpota(["devices", "--json"]);
      assert.equal(r.code, 0, r.stderr);
      assert.ok(Array.isArray(JSON.parse(r.stdout)));
      // A flag still wins over the variable.
      const flag = await mpota(["devices", "--json", "--mqtt", "mqtt://127.0.0.1:9", "--timeout", "2"]);
      assert.notEqual(flag.code, 0);
      assert.match(flag.stderr, /127\.0\.0\.1:9/);
    } finally {
      for (const [name, value] of [
        ["MPOTA_MQTT", saved.mqtt],
        ["MPOTA_DATA", saved.data],
      ] as const) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
    }
  });

  it("shows the app a board runs, and the loader's reason after a rollback", async () => {
    const id = "a".repeat(64);
    const why = "rolled back thermostat 1.0.1: main.py line 3: NameError: name 'sensr' isn't defined";
    const shed = await MqttDevice.connect(url, "shed", "mpota", await provision("shed"));
    const app = { name: "thermostat", ver: "1.0.0", id, board: "esp32", free: 480_000 };
    await shed.state({
      v: 3,
      fw: "c".repeat(32),
      ip: "192.168.1.41",
      chip: "esp32",
      app: { ...app, rb: { job: "j-gone", why } },
    });
    await eventually(async () => (await ask("devices")).stdout.includes("shed"), "shed listed");
    const table = await ask("devices");
    assert.match(
      table.stdout,
      // 117 columns whole: piped, the list keeps to 100; the app's note stays (`devices show` has it all).
      /\nshed +online +cccc… \(unknown\) +t… \(rolled back\) +192\.168\.1\.41 /,
    );
    const show = await ask("devices", "show", "shed");
    assert.match(
      show.stdout,
      /\n {2}app {8}thermostat 1\.0\.0, release aaaaaaaaaaaa \(esp32 board, 468\.8 KiB, 480,000 bytes free\)\n {2}rollback {3}job j-gone: rolled back thermostat 1\.0\.1: main\.py line 3: NameError: name 'sensr' isn't defined\n/,
    );
    // A board with the app agent that runs no app yet.
    await shed.state({
      v: 3,
      fw: "c".repeat(32),
      ip: "192.168.1.41",
      chip: "esp32",
      app: { board: "esp32", free: 480_000 },
    });
    await eventually(
      async () => (await ask("devices")).stdout.match(/\nshed .* none /),
      "shed without an app",
    );
    // The longest name and a long version: the table's cell is cut, `devices show` has them whole.
    const long = { name: "a_very_long_application_name_xyz", ver: "123456789.123456789", id };
    await shed.state({ v: 3, fw: "c".repeat(32), ip: "192.168.1.41", chip: "esp32", app: long });
    const cut = await eventually(
      async () => /\nshed .* (a_very\S*) +192/.exec((await ask("devices")).stdout)?.[1],
      "shed with a long app name",
    );
    assert.equal(cut, "a_very_long_app…"); // piped: cut again to keep the row to 100 columns
    assert.match(
      (await ask("devices", "show", "shed")).stdout,
      /\n {2}app {8}a_very_long_application_name_xyz 123456789\.123456789, release a{12}\n/,
    );
    await shed.close();
  });

  it("starts an update, shows and cancels the job", async () => {
    const r = await ask("update", "porch", "sensor@2.0");
    assert.equal(r.code, 0, r.stderr);
    const id = /^Job (j-[0-9a-f]+): /.exec(r.stdout)?.[1];
    assert.ok(id, r.stdout);
    // It says what it installs: firmware (an app's says "app").
    assert.equal(
      r.stdout.split("\n")[0],
      `Job ${id}: update porch to firmware sensor 2.0 (${imageIdentity(v2)}).`,
    );
    assert.match(r.stdout, /a sleeping one at its next wake/);
    const again = await ask("update", "porch", "sensor@2.0");
    assert.equal(again.code, 22);
    assert.match(
      again.stderr,
      new RegExp(
        `^mpota: Device porch already has job ${id} \\((queued|waiting), to sensor 2\\.0\\)\\. Wait for it, or cancel it first: \`mpota jobs cancel ${id}\`\\.`,
      ),
    );
    const jobs = await ask("jobs");
    assert.match(
      jobs.stdout,
      new RegExp(
        `^JOB +DEVICE +RELEASE +STATE +TRY +PROGRESS +UPDATED\\n-+.*\\n${id} +porch +firmware sensor 2\\.0 +(queued|waiting) +0/5 +- +\\d+ s ago\\n$`,
      ),
    );
    const show = await ask("jobs", "show", id);
    assert.match(
      show.stdout,
      new RegExp(`^Job ${id}: porch to firmware sensor 2\\.0 \\(${imageIdentity(v2)}, 42000 bytes\\)\\n`),
    );
    // The ESP8266's image is pushed to the address its ack gives: not known before.
    assert.match(show.stdout, /\n {2}address {4}- \(the device reports it when it takes the command\)\n/);
    assert.match(show.stdout, /Steps:\n {2}\d\d:\d\d:\d\d\.\d{3} {2}created +Update of porch to sensor 2\.0/);
    const cancelled = await ask("jobs", "cancel", id);
    assert.equal(cancelled.stdout, `Job ${id} cancelled; the command for porch was withdrawn.\n`);
    const gone = await ask("jobs", "cancel", id);
    assert.equal(gone.code, 22);
    assert.match(gone.stderr, /has already been cancelled/);
  });

  it("says that an offline device takes the update only when it connects again", async () => {
    const attic = await MqttDevice.connect(url, "attic", "mpota", await provision("attic"));
    await attic.state({ fw: imageIdentity(v1), ip: "192.168.1.42" });
    await attic.status("offline");
    await eventually(async () => /\nattic +offline/.test((await ask("devices")).stdout), "attic offline");
    const r = await ask("update", "attic", "sensor@2.0");
    assert.equal(r.code, 0, r.stderr);
    const id = /^Job (j-[0-9a-f]+): /.exec(r.stdout)?.[1];
    assert.match(
      r.stdout,
      new RegExp(
        `\nattic is offline \\(last seen \\d+ s ago\\): the job waits until it connects again; \`mpota jobs cancel ${id}\` withdraws it\\.\n`,
      ),
    );
    assert.equal((await ask("jobs", "cancel", id as string)).code, 0);
    // An online device gets no such line.
    await attic.status("online");
    await eventually(async () => /\nattic +online/.test((await ask("devices")).stdout), "attic online");
    const online = await ask("update", "attic", "sensor@2.0");
    assert.equal(online.code, 0, online.stderr);
    assert.doesNotMatch(online.stdout, /offline/);
    const second = /^Job (j-[0-9a-f]+): /.exec(online.stdout)?.[1] as string;
    assert.equal((await ask("jobs", "cancel", second)).code, 0);
    await attic.close();
  });

  it("follows an update to its end", async () => {
    const twin = new DeviceTwin({ url, id: "kitchen", image: v1, mqttOptions: await provision("kitchen") });
    await twin.start();
    try {
      await eventually(async () => (await ask("devices")).stdout.includes("kitchen"), "kitchen listed");
      const r = await ask("update", "kitchen", "sensor", "--follow");
      assert.equal(r.code, 0, r.stderr);
      assert.match(
        r.stdout,
        /^Job j-[0-9a-f]+: update kitchen to firmware sensor 2\.0 .*\n.*\nkitchen now runs firmware sensor 2\.0\.\n$/,
      );
      assert.match(r.stderr, /^j-[0-9a-f]+: (queued|waiting)\n/);
      assert.match(r.stderr, /: pushing \d+% of 41\.0 KiB/);
      assert.match(r.stderr, /: succeeded\n$/);
    } finally {
      await twin.close();
    }
  });

  it('a broker that refuses the CLI\'s login: the reason and the --data advice, not "no server can be reached"', async () => {
    const t = tempDir();
    const r = await mpota(["devices", "--mqtt", url, "--data", join(t.dir, "no-server-here")]);
    t.remove();
    assert.equal(r.code, 20);
    assert.match(
      r.stderr,
      /^mpota: The broker at mqtt:\/\/127\.0\.0\.1:\d+ (did not authorize this client|refused the user name or password)/,
    );
    assert.match(
      r.stderr,
      /The CLI found no admin token at .*no-server-here\/admin-token\. .*pass --data DIR/,
    );
    assert.doesNotMatch(r.stderr, /No mpota server can be reached|Start it with `mpota serve`/);
  });

  it("a device provisioned but not yet reporting: devices show says what makes it appear", async () => {
    await provision("cellar");
    const r = await ask("devices", "show", "cellar");
    assert.equal(r.code, 22);
    assert.equal(
      r.stderr,
      'mpota: Device "cellar" is provisioned but has not reported its state yet: put the mpota_config.py that `mpota devices add cellar` wrote on the board with the agent and start it; it appears once its agent publishes its state.\n',
    );
    const unknown = await ask("devices", "show", "nobody");
    assert.match(unknown.stderr, /^mpota: No device "nobody" is known\./);
  });

  it("answers bad requests with the server's reason and exit code 22", async () => {
    const r = await ask("update", "nosuch", "sensor");
    assert.equal(r.code, 22);
    assert.match(r.stderr, /^mpota: No device "nosuch" has reported its state to this server\./);
    const f = await ask("update", "porch", "nothing@9");
    assert.match(f.stderr, /^mpota: No firmware "nothing" version "9" is in the store\./);
  });
});

describe("the commands without a server", () => {
  it("explain that nothing listens at the broker address", async () => {
    const logs = new LogCapture("silent");
    const broker = await EmbeddedBroker.start({ host: "127.0.0.1", port: 0, logger: logs.logger });
    const url = broker.url;
    await broker.close();
    const r = await mpota(["devices", "--mqtt", url]);
    assert.equal(r.code, 20);
    assert.equal(
      r.stderr,
      `mpota: Nothing accepts connections at ${url} (connection refused).\nNo mpota server can be reached through ${url}. Start it with \`mpota serve\` (or \`npm start\` in the mpota folder), or pass --mqtt URL for the broker your server uses.\n`,
    );
  });

  it("explain that what answers at --mqtt is not a broker (the dashboard's port)", async () => {
    const http = createServer((_request, response) => response.end("dashboard"));
    await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
    const { port } = http.address() as AddressInfo;
    try {
      const r = await mpota(["devices", "--mqtt", `mqtt://127.0.0.1:${port}`, "--timeout", "2"]);
      assert.equal(r.code, 20);
      assert.match(
        r.stderr,
        new RegExp(
          `^mpota: Cannot connect to the broker at mqtt://127\\.0\\.0\\.1:${port}: what answers there does not speak MQTT \\(.+\\)\\. Is that the dashboard's HTTP port\\? Give the broker's port`,
        ),
      );
    } finally {
      http.closeAllConnections();
      await new Promise((resolve) => http.close(resolve));
    }
  });

  it("serve --mqtt with nothing at that URL: says it starts no broker of its own, and what to do", async () => {
    const logs = new LogCapture("silent");
    const broker = await EmbeddedBroker.start({ host: "127.0.0.1", port: 0, logger: logs.logger });
    const url = broker.url;
    await broker.close();
    const t = tempDir();
    try {
      const data = seededDataDir(join(t.dir, "data"));
      const key = fixturePath("reference/priv-pkcs1.key");
      const r = await mpota([
        "serve",
        "--data",
        data,
        "--mqtt",
        url,
        "--key",
        key,
        "--no-http",
        "--log-level",
        "silent",
      ]);
      assert.equal(r.code, 20, r.stderr);
      assert.match(
        r.stderr,
        new RegExp(
          `mpota: Nothing accepts connections at ${url.replace(/\./g, "\\.")} \\(connection refused\\)\\.\nWith --mqtt, mpota serve uses that broker and starts none of its own: start it \\(Mosquitto: docs/mosquitto\\.md\\), check the URL's host and port, or leave out --mqtt to run the embedded broker\\.\n$`,
        ),
      );
    } finally {
      t.remove();
    }
  });

  it("explain that the broker runs but no server answers", async () => {
    const logs = new LogCapture("silent");
    const broker = await EmbeddedBroker.start({ host: "127.0.0.1", port: 0, logger: logs.logger });
    try {
      const r = await mpota(["jobs", "--mqtt", broker.url, "--timeout", "0.3"]);
      assert.equal(r.code, 23);
      assert.match(
        r.stderr,
        /^mpota: No mpota server answered "jobs" within 0\.3 s on the broker at mqtt:\/\/127\.0\.0\.1:\d+ \(base topic "mpota"\)\./,
      );
    } finally {
      await broker.close();
    }
  });
});

describe("mpota serve options", () => {
  it("refuses --mqtt together with the embedded broker's options", () => {
    assert.throws(
      () => serverSettings({ ...serveDefaults("x"), mqtt: "mqtt://broker:1883" }),
      (error: unknown) =>
        error instanceof UsageError &&
        /--mqtt-port and --mqtt-host set up the embedded broker/.test(error.message),
    );
  });

  it("refuses a bad network, log level, block size or base topic", () => {
    assert.throws(
      () => serverSettings({ ...serveDefaults("x"), allowNet: ["10.0.0.0/40"] }),
      /is not a network/,
    );
    assert.throws(
      () => serverSettings({ ...serveDefaults("x"), logLevel: "chatty" }),
      /--log-level must be one of/,
    );
    assert.throws(() => serverSettings({ ...serveDefaults("x"), block: 300 }), MpotaError);
    assert.throws(
      () => serverSettings({ ...serveDefaults("x"), maxPushes: 0 }),
      /--max-pushes must be between 1 and 256/,
    );
    assert.throws(
      () => serverSettings({ ...serveDefaults("x"), base: "mpota/#" }),
      /cannot be the base topic/,
    );
  });

  it("uses an external broker with credentials and TLS files", () => {
    const { mqttHost: _h, mqttPort: _p, ...rest } = serveDefaults("x");
    const settings = serverSettings({
      ...rest,
      mqtt: "mqtts://broker.lan:8883",
      mqttUsername: "mpota",
      mqttPassword: "pw",
      mqttCa: "/etc/ca.pem",
      allowNet: ["private", "100.64.0.0/10"],
    });
    assert.deepEqual(settings.broker, {
      kind: "external",
      connection: {
        url: "mqtts://broker.lan:8883",
        username: "mpota",
        password: "pw",
        caFile: "/etc/ca.pem",
      },
    });
    assert.deepEqual(settings.allowNetworks, ["private", "100.64.0.0/10"]);
  });

  it("runs without a key when ./priv.key does not exist, and says only ESP8266 pushes are refused", async () => {
    const t = tempDir();
    const previous = process.cwd();
    process.chdir(t.dir);
    const io = new MemoryIo();
    let stop: () => void = () => undefined;
    try {
      const { key: _k, ...options } = serveDefaults(seededDataDir(join(t.dir, "data")));
      const serving = serveCommand(
        { ...options, http: true, httpHost: "127.0.0.1", httpPort: 0 },
        io,
        new Promise<void>((resolve) => (stop = resolve)),
      );
      await eventually(() => io.stderrText.includes("mpota server running"), "started");
      assert.match(
        io.stderrText,
        /; no signing key \(\.\/priv\.key does not exist\): ESP8266 firmware updates \(the push to yaota8266\) are refused until you restart with --key FILE \(`mpota keys new` makes one\); app updates and ESP32 firmware updates do not need it \(the devices fetch them over HTTP\)\.\n/,
      );
      stop();
      await serving;
      // With --no-http the devices have nowhere to fetch from either: the note says so.
      assert.match(
        loadServerKey(undefined, new MemoryIo(), false).note,
        /; app updates and ESP32 firmware updates do not need it, but the devices fetch them over HTTP, which --no-http turns off$/,
      );
    } finally {
      process.chdir(previous);
      t.remove();
    }
  });

  it("reports a port that is in use, with what to do", async () => {
    const logs = new LogCapture("silent");
    const broker = await EmbeddedBroker.start({ host: "127.0.0.1", port: 0, logger: logs.logger });
    const t = tempDir();
    try {
      const r = await mpota([
        "serve",
        "--data",
        seededDataDir(join(t.dir, "data")),
        "--mqtt-host",
        "127.0.0.1",
        "--mqtt-port",
        String(broker.port),
        "--key",
        fixturePath("reference/priv-pkcs1.key"),
        "--log-level",
        "silent",
      ]);
      assert.equal(r.code, 21);
      assert.match(
        r.stderr,
        new RegExp(
          `mpota: Port ${broker.port} on 127\\.0\\.0\\.1 is in use: another MQTT broker \\(Mosquitto\\?\\) or another \`mpota serve\` runs there\\. Use that broker with --mqtt mqtt://localhost:${broker.port}, or give the embedded broker another port with --mqtt-port\\.`,
        ),
      );
    } finally {
      await broker.close();
      t.remove();
    }
  });
});
