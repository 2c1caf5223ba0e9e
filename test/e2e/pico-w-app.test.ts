import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { type AppKey, defaultAppKeyPath, loadAppKey } from "../../src/apps/app-key.ts";
import { BridgeClient } from "../../src/server/bridge/bridge-client.ts";
import { SimulatedPicoWDevice } from "../../src/simulator/simulated-pico-w-device.ts";
import { buildSyntheticFirmware } from "../../src/simulator/synthetic-firmware.ts";
import { jobEnd } from "../server/support/job-suite.ts";
import { FAST_TIMINGS, startTestServer, type TestServer, tempDir } from "../server/support/test-server.ts";
import { eventually } from "../server/support/wait.ts";
import { provisioned } from "../simulator/support.ts";
import { addAppRelease, twentyFiles } from "../support/app-releases.ts";
import { buildEsp32AppImage } from "../support/esp32-image.ts";

// A Raspberry Pi Pico W in the fleet: the real server, the unmodified agent,
// loader and updater from device/ under MicroPython with the rp2 port's
// modules (no esp module, LittleFS of 848 KiB). It takes its app as an
// ESP32 does, in place; a firmware update for it is refused with the reason.

describe("server + real MicroPython agent on a simulated Pico W: app updates only", () => {
  const data = tempDir("mpota-e2e-pico-");
  let s: TestServer;
  let bridge: BridgeClient;
  let key: AppKey;
  let d: SimulatedPicoWDevice;

  before(async () => {
    s = await startTestServer(data.dir, {
      http: { host: "127.0.0.1", port: 0 },
      timings: { ...FAST_TIMINGS, firstAnswerMs: 15_000, verifyTimeoutMs: 20_000 },
    });
    bridge = await BridgeClient.connect({ connection: { url: s.url } });
    key = loadAppKey(defaultAppKeyPath(data.dir), { create: true });
    await addAppRelease(bridge, key, "thermostat", "1.0.0", twentyFiles("1.0.0"), ["rp2"]);
    await addAppRelease(bridge, key, "thermostat", "1.0.1", twentyFiles("1.0.1", { changed: 7 }), ["rp2"]);
    for (const [name, image] of [
      ["esp8266-sensor", buildSyntheticFirmware({ size: 40_000, seed: 81 })],
      ["esp32-sensor", buildEsp32AppImage({ size: 120_000, seed: 82 })],
    ] as const) {
      await bridge.request("firmware/add", {
        image: Buffer.from(image).toString("base64"),
        name,
        version: "2.0",
      });
    }
    const access = await provisioned(s, "pico-1");
    d = new SimulatedPicoWDevice({
      id: "pico-1",
      broker: access.broker,
      agent: { ...access.agent, appKeys: [key.modulusHex] },
    });
    await d.start();
  });
  after(async () => {
    await d?.stop();
    await bridge.close();
    await s.stop();
    data.remove();
  });

  const served = (job: string) => s.logs.find("device app fetch", { job }).map((l) => l.file as string);

  test("it reports an rp2 board with its MicroPython build as fw", async () => {
    const device = await eventually(
      async () =>
        (await bridge.request("devices", {})).find((x) => x.id === "pico-1" && x.app?.board === "rp2"),
      "pico-1 reports its app",
      30_000,
    );
    assert.equal(device.chip, "rp2");
    assert.match(device.fw ?? "", /^[0-9a-f]{32}$/);
    const state = d.agent.published.filter((m) => m.topic === "mpota/pico-1/state").at(-1);
    const json = JSON.parse(state?.payload.toString() ?? "{}") as Record<string, unknown>;
    assert.equal(json.flash, undefined, "no esp.flash_size() on an rp2");
    assert.equal(json.wake, "power");
    assert.equal(
      (json.app as { mpy?: number }).mpy,
      0x1306,
      "sys.implementation._mpy of v1.27 on the RP2040",
    );
  });

  test("a 20-file app, then a one-file change that moves the manifest and that file", async () => {
    const first = await bridge.request("update", { device: "pico-1", firmware: "thermostat@1.0.0" });
    const end1 = await jobEnd(bridge, first.id, 60_000);
    assert.equal(end1.state, "succeeded", end1.error ?? "");
    assert.equal(served(first.id).length, 21, "the manifest and 20 files");
    assert.ok(d.agent.output.includes("thermostat 1.0.0 1.0.0"), "the new app ran");

    const second = await bridge.request("update", { device: "pico-1", firmware: "thermostat@1.0.1" });
    const end2 = await jobEnd(bridge, second.id, 60_000);
    assert.equal(end2.state, "succeeded", end2.error ?? "");
    assert.deepEqual(served(second.id), ["manifest", "m07.py"]);
    assert.ok(d.agent.output.includes("thermostat 1.0.0 1.0.1"));
    assert.ok(
      !d.agent.output.some((l) => l.startsWith("mpota: update boot")),
      "updated in place, under the agent",
    );
    const device = await bridge.request("device", { id: "pico-1" });
    assert.deepEqual([device.app?.name, device.app?.version], ["thermostat", "1.0.1"]);
  });

  test("a firmware update is refused before anything is sent: the board takes app updates only", async () => {
    for (const firmware of ["esp8266-sensor@2.0", "esp32-sensor@2.0"]) {
      await assert.rejects(bridge.request("update", { device: "pico-1", firmware }), (error: Error) => {
        assert.match(
          error.message,
          /the device is a Raspberry Pi Pico W \(rp2\), which takes app updates only: mpota does not update its firmware\. Update its app with an app release/,
        );
        return true;
      });
    }
    const jobs = await bridge.request("jobs", {});
    assert.deepEqual(
      jobs.filter((j) => j.firmware?.name?.endsWith("-sensor")).map((j) => j.id),
      [],
      "no firmware job was made",
    );
  });
});
