import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { BridgeClient } from "../../src/server/bridge/bridge-client.ts";
import { SimulatedDevice } from "../../src/simulator/simulated-device.ts";
import { jobEnd } from "../server/support/job-suite.ts";
import {
  FAST_TIMINGS,
  startTestServer,
  type TestServer,
  tempDir,
  testKey,
} from "../server/support/test-server.ts";
import { eventually } from "../server/support/wait.ts";
import { addressPool, FAST, provisioned, SHORT_GPIO } from "../simulator/support.ts";
import { buildMicroPythonImage, imageIdentity } from "../support/images.ts";

// The whole story with nothing faked but the radio: the real server (embedded
// Aedes, SQLite), devices that are the emulated yaota8266 running the real
// MicroPython agent from device/, pushes over real loopback UDP.
const V1 = buildMicroPythonImage({ size: 48 * 1024, seed: 41 });
const V2 = buildMicroPythonImage({ size: 52 * 1024, seed: 42 });

describe("server + real MicroPython agent + emulated yaota8266", () => {
  const data = tempDir("mpota-e2e-");
  const nextAddress = addressPool();
  let s: TestServer;
  let bridge: BridgeClient;
  const devices: SimulatedDevice[] = [];

  before(async () => {
    s = await startTestServer(data.dir, {
      timings: { ...FAST_TIMINGS, firstAnswerMs: 8000, verifyTimeoutMs: 8000 },
    });
    bridge = await BridgeClient.connect({ connection: { url: s.url } });
    await bridge.request("firmware/add", {
      image: Buffer.from(V2).toString("base64"),
      name: "sensor",
      version: "2.0",
    });
  });
  after(async () => {
    for (const d of devices) await d.stop();
    await bridge.close();
    await s.stop();
    data.remove();
  });

  async function device(id: string, sleepSeconds: number): Promise<SimulatedDevice> {
    const d = new SimulatedDevice({
      id,
      address: nextAddress(),
      // Provisioned as `mpota devices add` does: its own login, the server's command keys.
      ...(await provisioned(s, id)),
      key: testKey,
      firmware: V1,
      sleepSeconds,
      timing: FAST,
      settings: SHORT_GPIO,
    });
    devices.push(d);
    await d.start();
    return d;
  }

  const seen = (id: string, fw: string) =>
    eventually(
      async () => (await bridge.request("devices", {})).find((d) => d.id === id && d.fw === fw),
      `${id} on ${fw}`,
      30_000,
    );

  test("an always-on device is updated at once and reports the new identity", async () => {
    const d = await device("hall", 0);
    await seen("hall", imageIdentity(V1));
    const job = await bridge.request("update", { device: "hall", firmware: "sensor@2.0" });
    const end = await jobEnd(bridge, job.id, 60_000);
    assert.equal(end.state, "succeeded", end.error ?? "");
    const view = await seen("hall", imageIdentity(V2));
    assert.equal(view.ip, d.address);
    assert.deepEqual(Buffer.from(d.emulator.flash.read(0x3c000, V2.length)), Buffer.from(V2));
  });

  test("a sleepy device takes the job at its next wake and comes back updated", async () => {
    await device("garden", 3);
    await seen("garden", imageIdentity(V1));
    const job = await bridge.request("update", { device: "garden", firmware: "sensor@2.0" });
    const end = await jobEnd(bridge, job.id, 60_000);
    assert.equal(end.state, "succeeded", end.error ?? "");
    const view = await seen("garden", imageIdentity(V2));
    assert.ok(view.status === "sleeping" || view.status === "online", String(view.status));
  });
});
