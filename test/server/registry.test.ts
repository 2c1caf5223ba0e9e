import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { connectAsync, type MqttClient } from "mqtt";
import type { DeviceView } from "../../src/server/api/api.ts";
import { BridgeClient } from "../../src/server/bridge/bridge-client.ts";
import { EmbeddedBroker } from "../../src/server/mqtt/embedded-broker.ts";
import { LogCapture } from "./support/log-capture.ts";
import { MqttDevice } from "./support/mqtt-device.ts";
import { startTestServer, type TestServer, tempDir } from "./support/test-server.ts";
import { eventually } from "./support/wait.ts";

const FW = "5d41402abc4b2a76b9719d911017c592";
const FW2 = "7d793037a0760186574b0282f2f435e7";

describe("device registry over MQTT", () => {
  let t: ReturnType<typeof tempDir>;
  let s: TestServer;
  let bridge: BridgeClient;
  let raw: MqttClient;

  before(async () => {
    t = tempDir();
    s = await startTestServer(t.dir);
    bridge = await BridgeClient.connect({ connection: { url: s.url } });
    // Malformed device messages can only come from a client allowed on every device's topics: the server principal.
    const server = s.server.connection;
    raw = await connectAsync(server.url, {
      username: server.username,
      password: server.password,
      reconnectPeriod: 0,
    });
  });
  after(async () => {
    await raw.endAsync();
    await bridge.close();
    await s.stop();
    t.remove();
  });

  const device = async (id: string) => (await bridge.request("devices", {})).find((d) => d.id === id);

  it("registers an always-on device from its state and status", async () => {
    const dev = await MqttDevice.connect(s.url, "kitchen");
    const before = Date.now();
    await dev.state({
      fw: FW,
      ip: "192.168.1.23",
      ver: "v1.19.1-ota",
      flash: 1048576,
      mem: 23120,
      rssi: -61,
      wake: "power",
      vbat: 3.05,
    });
    await dev.status("online");
    const view = await eventually(async () => {
      const d = await device("kitchen");
      return d?.status === "online" ? d : undefined;
    }, "kitchen online");
    assert.deepEqual({ ...view, statusAt: 0, firstSeen: 0, lastSeen: 0, lastStateAt: 0 }, {
      id: "kitchen",
      status: "online",
      statusAt: 0,
      firstSeen: 0,
      lastSeen: 0,
      lastStateAt: 0,
      nextWakeAt: null,
      fw: FW,
      firmware: null,
      v: 2,
      chip: null,
      ver: "v1.19.1-ota",
      ip: "192.168.1.23",
      rssi: -61,
      vbat: 3.05,
      mem: 23120,
      flash: 1048576,
      wake: "power",
      sleep: null,
      job: null,
      app: null,
    } satisfies DeviceView);
    assert.ok((view.lastStateAt as number) >= before);
    await dev.close();
  });

  it("expects a sleepy device back after its sleep period", async () => {
    const dev = await MqttDevice.connect(s.url, "garden");
    const t0 = Date.now();
    await dev.state({ fw: FW, ip: "192.168.1.24", wake: "deepsleep", sleep: 300 });
    await dev.status("sleeping");
    const view = await eventually(async () => {
      const d = await device("garden");
      return d?.status === "sleeping" ? d : undefined;
    }, "garden sleeping");
    assert.ok(
      view.nextWakeAt !== null && view.nextWakeAt >= t0 + 300_000 && view.nextWakeAt <= Date.now() + 300_000,
    );
    await dev.close();
  });

  it("shows a sleeper that woke as online from its state on, not as asleep with a new wake time", async () => {
    const dev = await MqttDevice.connect(s.url, "shed");
    await dev.state({ fw: FW, ip: "192.168.1.27", wake: "deepsleep", sleep: 300 });
    await dev.status("sleeping");
    const asleep = await eventually(async () => {
      const d = await device("shed");
      return d?.status === "sleeping" ? d : undefined;
    }, "shed sleeping");
    // It wakes: its state comes first, its status=online a moment later (here: not yet).
    await dev.state({ fw: FW, ip: "192.168.1.27", wake: "deepsleep", sleep: 300, rssi: -58 });
    const awake = await eventually(async () => {
      const d = await device("shed");
      return d?.rssi === -58 ? d : undefined;
    }, "shed's new state");
    assert.equal(awake.status, "online");
    assert.ok((awake.statusAt as number) > (asleep.statusAt as number));
    await dev.close();
  });

  it("marks a device offline when its connection drops (last will)", async () => {
    const dev = await MqttDevice.connect(s.url, "hallway");
    await dev.state({ fw: FW, ip: "192.168.1.25" });
    await dev.status("online");
    await eventually(async () => (await device("hallway"))?.status === "online", "hallway online");
    dev.client.stream.destroy();
    await eventually(async () => (await device("hallway"))?.status === "offline", "hallway offline");
    dev.client.end(true);
  });

  it("keeps a state history per device", async () => {
    const dev = await MqttDevice.connect(s.url, "attic");
    await dev.state({ fw: FW, ip: "192.168.1.26", rssi: -70 });
    await eventually(async () => (await device("attic"))?.rssi === -70, "first state");
    await dev.state({ fw: FW2, ip: "192.168.1.26", rssi: -65 });
    await eventually(async () => (await device("attic"))?.fw === FW2, "second state");
    const detail = await bridge.request("device", { id: "attic" });
    assert.deepEqual(
      detail.history.map((h) => [h.state.fw, h.state.rssi]),
      [
        [FW2, -65],
        [FW, -70],
      ],
    );
    assert.deepEqual(detail.jobs, []);
    await dev.close();
  });

  it("logs and ignores bad input, stores nothing from it, and keeps answering", async () => {
    const before = await bridge.request("devices", {});
    const historyBefore = (await bridge.request("device", { id: "kitchen" })).history.length;
    const send = (topic: string, payload: string | Buffer) => raw.publishAsync(topic, payload, { qos: 1 });
    await send("mpota/kitchen/state", "{not json");
    await send("mpota/kitchen/state", JSON.stringify({ v: 1, fw: "xyz", ip: "192.168.1.23" }));
    await send("mpota/kitchen/state", JSON.stringify({ v: 4, fw: FW, ip: "192.168.1.23" }));
    await send("mpota/kitchen/state", Buffer.alloc(5000, 0x20));
    await send("mpota/kitchen/status", "asleep");
    await send(`mpota/${"x".repeat(65)}/state`, JSON.stringify({ v: 1, fw: FW, ip: "10.0.0.1" }));
    await send("mpota/bad id/state", JSON.stringify({ v: 1, fw: FW, ip: "10.0.0.1" }));
    await send("mpota/ghost/ack", JSON.stringify({ job: "j-1", ready: true, ip: "10.0.0.1" }));
    await send("mpota/kitchen/ack", JSON.stringify({ job: "j-nope", ready: true }));
    await send("mpota/kitchen/ack", "[]");
    const expected = [
      "state ignored: state is not JSON",
      'state ignored: state has no valid "fw" (32 hex digits)',
      "state ignored: state has contract version 4; this server reads versions 1, 2 and 3",
      "state ignored: state of 5000 bytes is larger than 2048",
      'status ignored: status "asleep" is not one of online, sleeping, ota, offline',
      "device message ignored: bad device id",
      "ack ignored: device never reported its state",
      "ack ignored: it names no active job of this device",
      "ack ignored: ack is JSON but not an object",
    ];
    await eventually(
      () => expected.every((e) => s.logs.warnings().some((w) => w.startsWith(e))) || undefined,
      `all warnings logged; got ${JSON.stringify(s.logs.warnings())}`,
    );
    assert.equal(s.logs.find("device message ignored: bad device id").length, 2);
    assert.deepEqual(await bridge.request("devices", {}), before);
    assert.equal((await bridge.request("device", { id: "kitchen" })).history.length, historyBefore);
  });
});

describe("device registry across server restarts", () => {
  it("does not take a retained state replayed by the broker as news", async () => {
    const t = tempDir();
    const logs = new LogCapture();
    const broker = await EmbeddedBroker.start({ host: "127.0.0.1", port: 0, logger: logs.logger });
    const external = { kind: "external" as const, connection: { url: broker.url } };
    try {
      let s = await startTestServer(t.dir, { broker: external });
      const dev = await MqttDevice.connect(broker.url, "porch");
      await dev.state({ fw: FW, ip: "192.168.1.30", sleep: 60 });
      await dev.status("sleeping");
      await dev.close();
      const bridge = await BridgeClient.connect({ connection: { url: broker.url } });
      const first = await eventually(async () => {
        const d = await bridge.request("device", { id: "porch" });
        return d.status === "sleeping" ? d : undefined;
      }, "porch sleeping");
      await s.stop();
      await new Promise((resolve) => setTimeout(resolve, 30));
      s = await startTestServer(t.dir, { broker: external });
      await new Promise((resolve) => setTimeout(resolve, 300));
      const again = await bridge.request("device", { id: "porch" });
      assert.equal(again.status, "sleeping");
      assert.equal(again.lastSeen, first.lastSeen);
      assert.equal(again.nextWakeAt, first.nextWakeAt);
      assert.equal(again.history.length, 1);
      assert.ok(s.logs.find("retained state already known", { device: "porch" }).length === 1);
      await bridge.close();
      await s.stop();
    } finally {
      await broker.close();
      t.remove();
    }
  });
});
