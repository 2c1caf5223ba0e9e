import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { type AppKey, defaultAppKeyPath, loadAppKey } from "../../src/apps/app-key.ts";
import { progressText } from "../../src/cli/jobs.ts";
import { BridgeClient } from "../../src/server/bridge/bridge-client.ts";
import { SimulatedDevice } from "../../src/simulator/simulated-device.ts";
import { SimulatedEsp32Device } from "../../src/simulator/simulated-esp32-device.ts";
import { buildSyntheticFirmware } from "../../src/simulator/synthetic-firmware.ts";
import { jobEnd, kinds } from "../server/support/job-suite.ts";
import { FAST_TIMINGS, startTestServer, type TestServer, tempDir } from "../server/support/test-server.ts";
import { eventually } from "../server/support/wait.ts";
import { addressPool, FAST, provisioned, SHORT_GPIO, key as yaotaKey } from "../simulator/support.ts";
import { addAppRelease, twentyFiles } from "../support/app-releases.ts";
import { buildEsp32AppImage } from "../support/esp32-image.ts";

// App updates with nothing faked but the chip: the real server (embedded
// Aedes, SQLite or PostgreSQL, the device route on its HTTP listener), the
// unmodified agent, loader and updater from device/ under MicroPython on
// the emulated ESP32, the files fetched over loopback HTTP. Checked: what a
// user sees (the job's end and reason, the registry's app) and what
// travelled (the server's log of each file it served).

describe("server + real MicroPython agent + emulated ESP32 and ESP8266: app updates", () => {
  const data = tempDir("mpota-e2e-app-");
  let s: TestServer;
  let bridge: BridgeClient;
  let key: AppKey;
  const devices: { stop(): Promise<void> }[] = [];
  const released = new Map<string, string>();

  async function release(version: string, files: Map<string, Buffer>): Promise<string> {
    const m = await addAppRelease(bridge, key, "thermostat", version, files);
    released.set(version, m.id);
    return m.id;
  }

  before(async () => {
    s = await startTestServer(data.dir, {
      http: { host: "127.0.0.1", port: 0 },
      timings: { ...FAST_TIMINGS, firstAnswerMs: 15_000, verifyTimeoutMs: 20_000 },
    });
    bridge = await BridgeClient.connect({ connection: { url: s.url } });
    key = loadAppKey(defaultAppKeyPath(data.dir), { create: true });
    await release("1.0.0", twentyFiles("1.0.0"));
    await release("1.0.1", twentyFiles("1.0.1", { changed: 7 }));
    await release(
      "1.0.2",
      twentyFiles("1.0.2", { changed: 7, main: 'import m01\nraise ValueError("no sensor on pin 4")\n' }),
    );
  });
  after(async () => {
    for (const d of devices) await d.stop();
    await bridge.close();
    await s.stop();
    data.remove();
  });

  async function board(id: string, options: { sleepSeconds?: number; config?: Record<string, number> } = {}) {
    const access = await provisioned(s, id);
    const d = new SimulatedEsp32Device({
      id,
      broker: access.broker,
      firmware: buildEsp32AppImage({ size: 120_000, seed: 71 }),
      sleepSeconds: options.sleepSeconds ?? 0,
      agent: {
        ...access.agent,
        appKeys: [key.modulusHex],
        config: { ...access.agent.config, ...options.config },
      },
    });
    devices.push(d);
    await d.start();
    await eventually(
      async () => (await bridge.request("devices", {})).find((x) => x.id === id && x.app?.board === "esp32"),
      `${id} reports its app`,
      30_000,
    );
    return d;
  }

  /** The server's log of what it served a job from the app route: manifest or a file's path. */
  const served = (job: string) => s.logs.find("device app fetch", { job }).map((l) => l.file as string);

  test("a first install, a one-file change that moves one file and the manifest, a new app that raises rolled back", async () => {
    const d = await board("app-e2e-1");
    const first = await bridge.request("update", { device: "app-e2e-1", firmware: "thermostat@1.0.0" });
    const end1 = await jobEnd(bridge, first.id, 60_000);
    assert.equal(end1.state, "succeeded", end1.error ?? "");
    assert.equal(served(first.id).length, 21, "the manifest and 20 files");
    assert.ok(d.agent.output.includes("thermostat 1.0.0 1.0.0"), "the new app ran");

    const second = await bridge.request("update", { device: "app-e2e-1", firmware: "thermostat@1.0.1" });
    const end2 = await jobEnd(bridge, second.id, 60_000);
    assert.equal(end2.state, "succeeded", end2.error ?? "");
    assert.deepEqual(served(second.id), ["manifest", "m07.py"]);
    assert.ok(d.agent.output.includes("thermostat 1.0.0 1.0.1"));
    assert.match(
      end2.steps.find((x) => x.kind === "push-done")?.message ?? "",
      /^Board app-e2e-1 staged thermostat 1\.0\.1 \(20 files, \d+ bytes\) in \d+\.\d s/,
    );
    const device = await bridge.request("device", { id: "app-e2e-1" });
    assert.deepEqual(
      [device.app?.name, device.app?.version, device.app?.id],
      ["thermostat", "1.0.1", released.get("1.0.1")],
    );

    const third = await bridge.request("update", { device: "app-e2e-1", firmware: "thermostat@1.0.2" });
    const end3 = await jobEnd(bridge, third.id, 60_000);
    assert.equal(end3.state, "failed");
    assert.equal(end3.attempt, 1);
    assert.match(
      end3.error ?? "",
      /^rolled back thermostat 1\.0\.2: File "\/app\/[ab]\/main\.py", line 2, in <module>: ValueError: no sensor on pin 4; it runs thermostat 1\.0\.1 again\./,
    );
    assert.deepEqual(kinds(end3).slice(-2), ["rolled-back", "failed"]);
    const after3 = await bridge.request("device", { id: "app-e2e-1" });
    assert.equal(after3.app?.version, "1.0.1", "the previous app runs");
    assert.equal(after3.app?.rolledBack?.job, third.id, "the registry shows the rollback");
  });

  test("an ESP8266 (yaota8266 build, FAT) installs and changes its app in a boot without its agent", async () => {
    const id = "app-e2e-8266";
    const access = await provisioned(s, id);
    const d = new SimulatedDevice({
      id,
      address: addressPool()(),
      broker: access.broker,
      key: yaotaKey,
      firmware: buildSyntheticFirmware({ size: 40_000, seed: 72 }),
      timing: FAST,
      settings: SHORT_GPIO,
      agent: { ...access.agent, appKeys: [key.modulusHex], filesystem: "fat" },
    });
    devices.push(d);
    await d.start();
    await eventually(
      async () =>
        (await bridge.request("devices", {})).find((x) => x.id === id && x.app?.board === "esp8266"),
      `${id} reports its app`,
      30_000,
    );
    for (const [version, files] of [
      ["1.0.0", 21],
      ["1.0.1", 2],
    ] as const) {
      const job = await bridge.request("update", { device: id, firmware: `thermostat@${version}` });
      const end = await jobEnd(bridge, job.id, 60_000);
      assert.equal(end.state, "succeeded", end.error ?? "");
      assert.equal(served(job.id).length, files);
      assert.ok(
        d.agent.output.includes(`mpota: update boot for job ${job.id}`),
        "fetched in the update boot",
      );
      assert.ok(d.agent.output.includes(`thermostat 1.0.0 ${version}`), "the new app ran");
      // The update boot's own MQTT publisher carried the board's reports: the done one names the files.
      assert.match(
        end.steps.find((x) => x.kind === "push-done")?.message ?? "",
        new RegExp(
          `^Board ${id} staged thermostat ${version.replaceAll(".", "\\.")} \\(20 files, \\d+ bytes\\)`,
        ),
      );
    }
  });

  test("a sleepy board takes its app over several wakes", async () => {
    // APP_WAKE_MS 0: each wake's time is over after one fetched file.
    const d = await board("app-e2e-sleepy", { sleepSeconds: 1, config: { APP_WAKE_MS: 0 } });
    const job = await bridge.request("update", { device: "app-e2e-sleepy", firmware: "thermostat@1.0.0" });
    // While the board sleeps between wakes, the stored job (what `mpota jobs`, the API and a page
    // opened now read, from this instance or another) counts the files staged so far.
    const between = await eventually(
      async () => {
        const j = (await bridge.request("jobs", { device: "app-e2e-sleepy" })).find((x) => x.id === job.id);
        return j?.state === "pushing" && (j.files ?? 0) > 0 && (j.files ?? 0) < 20 ? j : undefined;
      },
      "the stored job to count the files staged",
      60_000,
    );
    assert.equal(between.of, 20);
    assert.match(progressText(between), /^\d+ of 20 files staged \(\d+\.\d of \d+\.\d KiB\)$/);
    const end = await jobEnd(bridge, job.id, 120_000);
    assert.deepEqual([end.files, end.of], [20, 20], "the stored job keeps the files of its fetch");
    assert.equal(end.state, "succeeded", end.error ?? "");
    assert.equal(new Set(served(job.id)).size, 21, "each file once");
    assert.ok(d.agent.output.includes("thermostat 1.0.0 1.0.0"));
    // The agent says where each wake stopped: one file a wake, the rest at the next.
    const stops = d.agent.output.filter((l) => l.includes(`job ${job.id} stops at file`));
    assert.ok(stops.length >= 2, `the fetch spanned several wakes (${stops.length} stops)`);
    assert.ok(d.summary().boots > stops.length, "a boot for each wake");
  });
});
