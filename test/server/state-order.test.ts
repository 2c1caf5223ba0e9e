import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { BridgeClient } from "../../src/server/bridge/bridge-client.ts";
import { DeviceTwin } from "./support/device-twin.ts";
import { ID1, ID2, kinds, V1, V2 } from "./support/job-suite.ts";
import { startTestServer, type TestServer, tempDir } from "./support/test-server.ts";
import { eventually } from "./support/wait.ts";

// With several instances one device's messages can be handled out of order: the broker gives each
// to one instance of the shared group, and one instance's may wait for the database while another's
// go through. An older state handled late must neither overwrite the stored one nor fail a push
// that ended after it was received (seen in CI: two instances, a database restart, a job failed
// as wrong-firmware by the state its device sent before the push).
describe("device states handled out of order", () => {
  let t: ReturnType<typeof tempDir> | undefined;
  let s: TestServer | undefined;
  let bridge: BridgeClient | undefined;
  let twin: DeviceTwin | undefined;
  afterEach(async () => {
    await twin?.close();
    await bridge?.close();
    await s?.stop();
    t?.remove();
    twin = bridge = s = t = undefined;
  });

  async function start(id: string) {
    t = tempDir();
    s = await startTestServer(t.dir, { maxAttempts: 3 });
    bridge = await BridgeClient.connect({ connection: { url: s.url } });
    await bridge.request("firmware/add", {
      image: Buffer.from(V2).toString("base64"),
      name: "sensor",
      version: "2.0",
    });
    twin = new DeviceTwin({ url: s.url, id, image: V1 });
    await twin.start();
    const b = bridge;
    await eventually(
      async () => (await b.request("devices", {})).some((d) => d.id === id && d.fw === ID1),
      `${id} reports its firmware`,
    );
    return { s, bridge: b, twin };
  }

  it("keeps the stored state when an older one arrives after it", async () => {
    const { s, bridge, twin } = await start("porch");
    // Another instance stored the state the device sends next (received later than anything here).
    const storage = s.server.storage;
    const later = Date.now() + 60_000;
    const newer = { v: 1 as const, fw: ID2, ip: "127.0.0.1" };
    await storage.devices.recordState({
      id: "porch",
      state: newer,
      at: later,
      receivedAt: later,
      digest: "from-the-other-instance",
      nextWakeAt: null,
      historyLimit: 50,
    });
    const before = await storage.devices.history("porch", 50);
    // The device's older state (it still runs ID1) is handled now, after the newer one.
    await twin.mqtt?.state({ fw: ID1, ip: "127.0.0.1" });
    await eventually(
      () =>
        s.logs.lines.some(
          (l) => l.msg === "older state ignored: a later one is stored" && l.device === "porch",
        ),
      "the older state to be ignored",
    );
    const device = await bridge.request("device", { id: "porch" });
    assert.equal(device.fw, ID2, "the newer state stays");
    assert.deepEqual(
      (await storage.devices.history("porch", 50)).map((h) => h.state.fw),
      before.map((h) => h.state.fw),
      "the history is unchanged",
    );
  });

  it("a state received before the push ended does not fail it; one received after does", async () => {
    const { s, bridge, twin } = await start("shed");
    // The device takes the push and then stays silent: the job waits in verifying.
    twin.emulator.events.on("otaFinished", () => {
      twin.agentEnabled = false;
    });
    const job = await bridge.request("update", { device: "shed", firmware: "sensor@2.0" });
    const pushed = await eventually(
      async () => {
        const j = await s.server.storage.jobs.get(job.id);
        return j?.phase === "verifying" && j.pushedAt !== null ? j : undefined;
      },
      "the push to end",
      20_000,
    );
    const pushedAt = pushed.pushedAt as number;
    const device = await s.server.storage.devices.get("shed");
    assert.ok(device);
    const old = { v: 1 as const, fw: ID1, ip: "127.0.0.1" };

    // Received by an instance before the push ended, handled after it.
    await s.server.runner.handleState(device, old, pushedAt - 50);
    let now = await bridge.request("job", { id: job.id });
    assert.equal(now.finishedAt, null);
    assert.equal(now.attempt, 1, "no try failed");
    assert.ok(!kinds(now).includes("wrong-firmware"));
    assert.match(
      now.steps.at(-1)?.message ?? "",
      new RegExp(
        `^Device reported firmware .*${ID1}.* before the push ended; waiting for its state after the switch\\.$`,
      ),
    );

    // Received after the push ended: the device came back on the old firmware.
    await s.server.runner.handleState(device, old, pushedAt + 50);
    now = await bridge.request("job", { id: job.id });
    assert.ok(kinds(now).includes("wrong-firmware"), kinds(now).join(", "));
  });
});
