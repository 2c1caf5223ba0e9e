// The embedded broker forgets its sessions and retained messages when the
// server restarts, and the last wills of the devices connected to it go with
// it. A device stored as online must then read offline until it connects
// again: one that died while the server was down would otherwise show online
// for good.
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { BridgeClient } from "../../src/server/bridge/bridge-client.ts";
import { MqttDevice } from "./support/mqtt-device.ts";
import { startTestServer, type TestServer, tempDir } from "./support/test-server.ts";
import { eventually } from "./support/wait.ts";

describe("devices after the embedded broker restarts", () => {
  const t = tempDir("mpota-broker-restart-");
  const open: Array<{ close(): Promise<void> }> = [];
  let s: TestServer | undefined;
  after(async () => {
    for (const c of open.splice(0)) await c.close().catch(() => undefined);
    await s?.stop();
    t.remove();
  });

  async function devicesOf(server: TestServer) {
    const bridge = await BridgeClient.connect({ connection: { url: server.url } });
    try {
      return new Map((await bridge.request("devices", {})).map((d) => [d.id, d]));
    } finally {
      await bridge.close();
    }
  }

  it("shows the devices that were online as offline until they connect again; sleepers stay asleep", async () => {
    s = await startTestServer(t.dir);
    const lamp = await MqttDevice.connect(s.url, "lamp");
    open.push(lamp);
    await lamp.state({ fw: "1".repeat(32), ip: "192.168.4.20" });
    await lamp.status("online");
    const bee = await MqttDevice.connect(s.url, "bee");
    await bee.state({ fw: "2".repeat(32), ip: "192.168.4.21", sleep: 600 });
    await bee.status("sleeping");
    await bee.close();
    const server1 = s;
    // Both the lamp's state and its status stored: each sets its last seen, and they come on topics
    // of their own, so either may be stored last.
    const before = await eventually(async () => {
      const d = await devicesOf(server1);
      const lamp = d.get("lamp");
      return lamp?.status === "online" && lamp.fw === "1".repeat(32) && d.get("bee")?.status === "sleeping"
        ? d
        : undefined;
    }, "lamp online, bee asleep");
    await s.stop();
    s = undefined;

    // The lamp loses power while the server is down: it never connects to the new broker.
    s = await startTestServer(t.dir);
    const after1 = await devicesOf(s);
    assert.equal(after1.get("lamp")?.status, "offline");
    assert.equal(
      after1.get("lamp")?.lastSeen,
      before.get("lamp")?.lastSeen,
      "last seen stays when it was seen",
    );
    assert.equal(after1.get("bee")?.status, "sleeping");
    assert.equal(after1.get("bee")?.nextWakeAt, before.get("bee")?.nextWakeAt);
    assert.equal(
      s.logs.find("devices stored as online are offline until they connect to this broker").length,
      1,
    );

    // It comes back: online again.
    const again = await MqttDevice.connect(s.url, "lamp");
    open.push(again);
    await again.status("online");
    const server2 = s;
    await eventually(
      async () => (await devicesOf(server2)).get("lamp")?.status === "online" || undefined,
      "lamp online again",
    );
  });
});
