import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { BridgeClient } from "../../src/server/bridge/bridge-client.ts";
import { SimulatedDevice } from "../../src/simulator/simulated-device.ts";
import {
  FAST_TIMINGS,
  startTestServer,
  type TestServer,
  tempDir,
  testKey,
} from "../server/support/test-server.ts";
import { eventually } from "../server/support/wait.ts";
import { addressPool, FAST, provisioned, SHORT_GPIO } from "../simulator/support.ts";
import { b64, ID1, ID2, V1, V2 } from "./support.ts";

// A rollout with nothing faked but the radio: the real server, devices that
// are the emulated yaota8266 running the real MicroPython agent from device/.
describe("a rollout across simulated devices (real MicroPython agent)", () => {
  const data = tempDir("mpota-rollout-sim-");
  const nextAddress = addressPool();
  let s: TestServer;
  let bridge: BridgeClient;
  const devices: SimulatedDevice[] = [];

  before(async () => {
    s = await startTestServer(data.dir, {
      timings: { ...FAST_TIMINGS, firstAnswerMs: 8000, verifyTimeoutMs: 8000 },
    });
    bridge = await BridgeClient.connect({ connection: { url: s.url } });
    await bridge.request("firmware/add", { image: b64(V2), name: "sensor", version: "2.0" });
  });
  after(async () => {
    for (const d of devices) await d.stop();
    await bridge.close();
    await s.stop();
    data.remove();
  });

  it("updates always-on and sleepy devices group by group, each verified once", async () => {
    for (const [id, sleepSeconds] of [
      ["sim-a", 0],
      ["sim-b", 0],
      ["sim-s", 2],
    ] as const) {
      const d = new SimulatedDevice({
        id,
        address: nextAddress(),
        ...(await provisioned(s, id)),
        key: testKey,
        firmware: V1,
        sleepSeconds,
        timing: FAST,
        settings: SHORT_GPIO,
      });
      devices.push(d);
      await d.start();
    }
    await eventually(
      async () => (await bridge.request("devices", {})).filter((d) => d.fw === ID1).length === 3,
      "three devices on 1.0",
      30_000,
    );
    const created = await bridge.request("rollout/create", {
      firmware: "sensor@2.0",
      devices: ["sim-a", "sim-s", "sim-b"],
      groups: "1,rest",
      timeout: 60,
    });
    const end = await eventually(
      async () => {
        const r = await bridge.request("rollout/show", { id: created.id, events: 100 });
        return r.state === "running" ? undefined : r;
      },
      "rollout ended",
      50_000,
    );
    assert.equal(end.state, "completed", end.reason ?? "");
    assert.equal(end.reason, "All 3 devices verified on sensor 2.0.");
    assert.equal(end.devices.find((d) => d.device === "sim-s")?.sleepy, true);
    for (const d of devices) {
      assert.equal(d.fw, ID2, `${d.id} runs 2.0`);
      assert.equal(d.summary().updates, 1, `${d.id} changed firmware once`);
    }
  });
});
