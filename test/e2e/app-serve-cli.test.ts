import assert from "node:assert/strict";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { BridgeClient } from "../../src/server/bridge/bridge-client.ts";
import { ADMIN_USERNAME } from "../../src/server/mqtt/principals.ts";
import { SimulatedEsp32Device } from "../../src/simulator/simulated-esp32-device.ts";
import { testDatabase, withCredentials } from "../server/support/test-server.ts";
import { eventually } from "../server/support/wait.ts";
import { twentyFiles } from "../support/app-releases.ts";
import {
  type CliProcess,
  type CliResult,
  makeTempDir,
  runCliProcess,
  startCliProcess,
} from "../support/cli.ts";
import { buildEsp32AppImage } from "../support/esp32-image.ts";

// An app update as a user runs it: `mpota serve` as its own process (SQLite
// in a temp data directory, or PostgreSQL in the second pass), releases
// added and the board provisioned with the CLI, the board's mpota_config.py
// the very file `mpota devices add` wrote, updates started with
// `mpota update --follow`. Only the chip is emulated: the real agent,
// loader and updater from device/ under MicroPython fetch the files over
// loopback HTTP from the server's device route.

const DEVICE = "app-cli-1";

interface LogLine {
  msg: string;
  [field: string]: unknown;
}

describe("mpota serve (a CLI process) + real MicroPython agent + emulated ESP32: app updates with the CLI", () => {
  const t = makeTempDir("mpota-e2e-serve-cli-");
  const data = join(t.dir, "data");
  let serve: CliProcess | undefined;
  let board: SimulatedEsp32Device | undefined;
  let bridge: BridgeClient | undefined;
  let broker = "";
  let modulus = "";

  /** `mpota ARGS`, a process of its own, in the temp folder. */
  const mpota = (args: string[]): Promise<CliResult> => runCliProcess(args, { cwd: t.dir });
  /** The options every command that asks the running server gets: its broker and its data directory. */
  const server = () => ["--mqtt", broker, "--data", data, "--timeout", "10"];
  const ok = (r: CliResult, what: string) =>
    assert.equal(r.code, 0, `${what} exited ${r.code}:\n${r.stdout}\n${r.stderr}`);

  /** The server's JSON log lines (its stderr is no terminal) with this message and these fields. */
  function logs(msg: string, fields: Record<string, unknown> = {}): LogLine[] {
    const lines: LogLine[] = [];
    for (const text of (serve?.output().stderr ?? "").split("\n")) {
      if (!text.startsWith("{")) continue;
      const line = JSON.parse(text) as LogLine;
      if (line.msg === msg && Object.entries(fields).every(([k, v]) => line[k] === v)) lines.push(line);
    }
    return lines;
  }

  function appFolder(name: string, files: Map<string, Buffer>): string {
    const dir = join(t.dir, name);
    mkdirSync(dir);
    for (const [path, bytes] of files) writeFileSync(join(dir, path), bytes);
    return dir;
  }

  before(async () => {
    const db = await testDatabase(data);
    serve = startCliProcess(
      [
        "serve",
        "--data",
        data,
        ...(db !== undefined ? ["--db", db] : []),
        "--mqtt-host",
        "127.0.0.1",
        "--mqtt-port",
        "0",
        "--http-port",
        "0",
      ],
      { cwd: t.dir },
    );
    await serve.waitForOutput("Stop with Ctrl-C.");
    const banner = serve.output().stderr;
    const mqtt = /^MQTT broker: (mqtt:\/\/127\.0\.0\.1:\d+) \(/m.exec(banner);
    assert.ok(mqtt?.[1], `no broker line in:\n${banner}`);
    broker = mqtt[1];
    // No ./priv.key: only the ESP8266's push needs it, and the banner says so; and where boards fetch.
    assert.match(
      banner,
      /; no signing key \(\.\/priv\.key does not exist\): ESP8266 firmware updates \(the push to yaota8266\) are refused until you restart with --key FILE \(`mpota keys new` makes one\); app updates and ESP32 firmware updates do not need it \(the devices fetch them over HTTP\)\./,
    );
    assert.match(
      banner,
      /^Devices fetch ESP32 firmware at (http:\/\/\S+)\/device\/firmware\/<fw> and apps below \1\/device\/app\/<sha>\/ \(/m,
    );
    const token = readFileSync(join(data, "admin-token"), "utf8").trim();
    // The test's own view of the registry, polled while the board boots.
    bridge = await BridgeClient.connect({
      connection: { url: withCredentials(broker, ADMIN_USERNAME, token) },
    });
  });

  after(async () => {
    await board?.stop();
    await bridge?.close();
    if (serve) {
      serve.kill("SIGINT");
      const stopped = await Promise.race([
        serve.done,
        new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 10_000).unref()),
      ]);
      if (stopped === undefined) {
        serve.kill("SIGKILL");
        await serve.done;
      }
    }
    t.remove();
  });

  test("two releases added with `mpota app add`, a board provisioned with `mpota devices add`, `mpota update --follow` twice: the second moves the manifest and the one changed file", async () => {
    const first = await mpota([
      "app",
      "add",
      appFolder("v1", twentyFiles("1.0.0")),
      "--name",
      "thermostat",
      "--version",
      "1.0.0",
      "--data",
      data,
    ]);
    ok(first, "app add 1.0.0");
    assert.match(first.stdout, /^Added thermostat 1\.0\.0: 20 files, /m);
    assert.match(first.stdout, /^Stored 20 new files /m);
    const second = await mpota([
      "app",
      "add",
      appFolder("v2", twentyFiles("1.0.1", { changed: 7 })),
      "--name",
      "thermostat",
      "--version",
      "1.0.1",
      "--data",
      data,
    ]);
    ok(second, "app add 1.0.1");
    assert.match(
      second.stdout,
      /^Stored 1 new file \(1,000 bytes\) in .*; the others were there already\.$/m,
    );
    const release = /^Release ([0-9a-f]{12}), signed with app key/m.exec(second.stdout)?.[1];
    assert.ok(release, second.stdout);

    // The modulus `mpota app key` prints is the one `mpota devices add` writes into APP_KEYS.
    const key = await mpota(["app", "key", "--data", data]);
    ok(key, "app key");
    modulus = key.stdout.trim();
    assert.match(modulus, /^[0-9a-f]{512}$/);
    const configFile = join(t.dir, `${DEVICE}.mpota_config.py`);
    const port = new URL(broker).port;
    const added = await mpota([
      "devices",
      "add",
      DEVICE,
      ...server(),
      "--host",
      "127.0.0.1",
      "--port",
      port,
      "-o",
      configFile,
    ]);
    ok(added, "devices add");
    assert.match(
      added.stdout,
      new RegExp(`^Provisioned ${DEVICE}: MQTT user ${DEVICE}, broker 127\\.0\\.0\\.1:${port}`, "m"),
    );
    const config = readFileSync(configFile, "utf8");
    assert.match(config, new RegExp(`^APP_KEYS = \\("${modulus}",\\)$`, "m"));

    // The board: the agent files with the app loader, and as its mpota_config.py the file written above.
    board = new SimulatedEsp32Device({
      id: DEVICE,
      broker,
      firmware: buildEsp32AppImage({ size: 120_000, seed: 71 }),
      agent: { appKeys: [modulus], files: { "mpota_config.py": config } },
    });
    await board.start();
    const registry = bridge as BridgeClient;
    await eventually(
      async () =>
        (await registry.request("devices", {})).find((x) => x.id === DEVICE && x.app?.board === "esp32"),
      `${DEVICE} reports its app`,
      30_000,
    );

    /** `mpota update DEVICE REF --follow`; the job id it printed; the server's log of that job's fetches. */
    async function update(
      ref: string,
      version: string,
    ): Promise<{ job: string; served: string[]; run: CliResult }> {
      const run = await mpota(["update", DEVICE, ref, "--follow", ...server()]);
      ok(run, `update ${ref}`);
      const job = new RegExp(
        `^Job (\\S+): update ${DEVICE} to app thermostat ${version.replace(/\./g, "\\.")} \\(`,
        "m",
      ).exec(run.stdout)?.[1];
      assert.ok(job, run.stdout);
      assert.match(
        run.stdout,
        new RegExp(`^${DEVICE} now runs app thermostat ${version.replace(/\./g, "\\.")}\\.$`, "m"),
      );
      assert.match(run.stderr, new RegExp(`^${job}: succeeded$`, "m"));
      // The server logs the job's end after every fetch of it: once that line is out, so are they.
      await eventually(
        async () => logs("job succeeded", { job })[0],
        `the server's log of ${job}'s end`,
        10_000,
      );
      return { job, served: logs("device app fetch", { job }).map((l) => l.file as string), run };
    }

    const install = await update("thermostat@1.0.0", "1.0.0");
    assert.equal(install.served.length, 21, "the manifest and 20 files");
    assert.ok(board.agent.output.includes("thermostat 1.0.0 1.0.0"), "the first app ran");

    const change = await update("thermostat@1.0.1", "1.0.1");
    assert.deepEqual(change.served, ["manifest", "m07.py"]);
    assert.ok(board.agent.output.includes("thermostat 1.0.0 1.0.1"), "the new app ran");

    // What --follow said: the board fetches and stages; no push, no rate, no total it did not know.
    const total = /^Added thermostat 1\.0\.1: 20 files, ([\d,]+) bytes \((\d+\.\d) KiB\)/m.exec(
      second.stdout,
    );
    assert.ok(total?.[1] && total[2], second.stdout);
    assert.match(
      change.run.stdout,
      /^The board fetches the signed manifest and only the files it does not hold; the others it stages from its own flash\. Progress counts the files staged\.$/m,
    );
    assert.match(
      change.run.stderr,
      new RegExp(
        `^${change.job}: fetching, 20 of 20 files staged \\(${total[2].replace(".", "\\.")} KiB\\)$`,
        "m",
      ),
    );
    assert.doesNotMatch(change.run.stderr, /pushing|KiB\/s/);

    const jobs = await mpota(["jobs", "show", change.job, ...server()]);
    ok(jobs, "jobs show");
    assert.match(jobs.stdout, /^ {2}state {6}succeeded$/m);
    // The release's files and bytes, not the manifest's; no ESP8266 push address.
    assert.match(
      jobs.stdout,
      new RegExp(
        `^Job ${change.job}: ${DEVICE} to app thermostat 1\\.0\\.1 \\([0-9a-f]{32}, 20 files, ${total[2].replace(".", "\\.")} KiB, ${total[1]} bytes\\)$`,
        "m",
      ),
    );
    assert.doesNotMatch(jobs.stdout, /address/);
    const text = await mpota(["devices", "show", DEVICE, ...server()]);
    ok(text, "devices show (text)");
    assert.match(
      text.stdout,
      new RegExp(`^ {2}app {8}thermostat 1\\.0\\.1, release ${release} \\(esp32 board, .* free\\)$`, "m"),
    );
    const table = await mpota(["devices", ...server()]);
    ok(table, "devices");
    assert.match(table.stdout, new RegExp(`^${DEVICE} +\\S+ +.+ +thermostat 1\\.0\\.1 +`, "m"));
    const shown = await mpota(["devices", "show", DEVICE, "--json", ...server()]);
    ok(shown, "devices show");
    const device = JSON.parse(shown.stdout) as { app?: { name?: string; version?: string; id?: string } };
    assert.equal(device.app?.name, "thermostat");
    assert.equal(device.app?.version, "1.0.1");
    assert.ok(device.app?.id?.startsWith(release), `the board runs release ${release}: ${device.app?.id}`);
  });
});
