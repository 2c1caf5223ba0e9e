import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { connectAsync, type MqttClient } from "mqtt";
import { verifyCommand } from "../../src/protocol/command-signature.ts";
import { BridgeClient } from "../../src/server/bridge/bridge-client.ts";
import { newSecret } from "../../src/server/mqtt/credentials.ts";
import { ADMIN_USERNAME, SERVER_USERNAME } from "../../src/server/mqtt/principals.ts";
import { MOSQUITTO_SKIP, type MpotaMosquitto, startMpotaMosquitto } from "../server/support/brokers.ts";
import { ID1, ID2, V2 } from "../server/support/job-suite.ts";
import { MqttDevice } from "../server/support/mqtt-device.ts";
import { startTestServer, type TestServer, tempDir } from "../server/support/test-server.ts";
import { eventually } from "../server/support/wait.ts";

/**
 * The server-level attacks of issue 14 with a real mpota server on Mosquitto
 * configured by `mpota broker-config mosquitto`'s files: the broker's ACL is
 * what makes a state evidence and keeps devices away from the bridge.
 * (test/attacks/mosquitto-acl.test.ts covers the ACL itself, topic by topic.)
 */
describe("attacks through Mosquitto configured by broker-config, with a real server", {
  skip: MOSQUITTO_SKIP,
}, () => {
  const victim = { id: "victim", secret: newSecret() };
  const intruder = { id: "intruder", secret: newSecret() };
  let broker: MpotaMosquitto;
  let t: ReturnType<typeof tempDir>;
  let s: TestServer;
  let admin: BridgeClient;
  let device: MqttDevice;
  let witness: MqttClient;
  const seen: Array<{ topic: string; payload: string }> = [];

  const connectIntruder = () =>
    connectAsync(broker.deviceUrl, {
      username: intruder.id,
      password: intruder.secret,
      clientId: intruder.id,
      reconnectPeriod: 0,
    });

  before(async () => {
    broker = await startMpotaMosquitto({
      base: "mpota",
      haPrefix: "homeassistant",
      devices: [victim, intruder],
    });
    t = tempDir();
    s = await startTestServer(t.dir, {
      broker: {
        kind: "external",
        connection: { url: broker.serverUrl, username: SERVER_USERNAME, password: broker.serverPassword },
      },
    });
    // The registry holds their credentials (the command counters live there).
    await s.provision(victim.id);
    await s.provision(intruder.id);
    admin = await BridgeClient.connect({
      connection: { url: broker.serverUrl, username: ADMIN_USERNAME, password: broker.adminPassword },
    });
    witness = await connectAsync(broker.serverUrl, {
      username: SERVER_USERNAME,
      password: broker.serverPassword,
      clientId: "witness",
      reconnectPeriod: 0,
    });
    await witness.subscribeAsync("mpota/#", { qos: 1 });
    witness.on("message", (topic, payload) => seen.push({ topic, payload: payload.toString() }));
    device = await MqttDevice.connect(broker.deviceUrl, victim.id, "mpota", {
      username: victim.id,
      password: victim.secret,
    });
    await device.state({ fw: ID1, ip: "127.0.0.1" });
    await admin.request("firmware/add", {
      image: Buffer.from(V2).toString("base64"),
      name: "sensor",
      version: "2.0",
    });
    await eventually(
      async () => (await admin.request("devices", {})).some((d) => d.id === victim.id && d.fw === ID1),
      "victim registered",
    );
  });
  after(async () => {
    await device?.close();
    await witness?.endAsync();
    await admin?.close();
    await s?.stop();
    t?.remove();
    await broker?.stop();
  });

  it("a device's bridge request and commands go nowhere", async () => {
    const client = await connectIntruder();
    const before = seen.length;
    await client.publishAsync(
      "mpota/bridge/request/update",
      JSON.stringify({ device: victim.id, firmware: "sensor@2.0", transaction: "x" }),
      { qos: 1 },
    );
    await client.publishAsync(
      `mpota/${victim.id}/cmd`,
      JSON.stringify({ op: "ota", job: "j-evil", fw: "1".repeat(32), size: 614400 }),
      { qos: 1, retain: true },
    );
    await new Promise((r) => setTimeout(r, 500));
    assert.deepEqual(seen.slice(before), [], "Mosquitto delivered nothing of it");
    assert.deepEqual(device.commands, []);
    assert.deepEqual(await admin.request("jobs", {}), []);
    await client.endAsync();
  });

  it("sends the victim a signed command, and a forged state does not end its job", async () => {
    const job = await admin.request("update", { device: victim.id, firmware: "sensor@2.0" });
    const command = await device.command((c) => c !== "" && c.job === job.id);
    const checked = verifyCommand(command, s.server.commandKey.publicKey);
    assert.equal(checked.dev, victim.id);
    const client = await connectIntruder();
    await client.publishAsync(
      `mpota/${victim.id}/state`,
      JSON.stringify({ v: 2, fw: ID2, ip: "127.0.0.1" }),
      {
        qos: 1,
        retain: true,
      },
    );
    await new Promise((r) => setTimeout(r, 500));
    assert.notEqual((await admin.request("job", { id: job.id })).state, "succeeded");
    assert.equal((await admin.request("devices", {})).find((d) => d.id === victim.id)?.fw, ID1);
    await client.endAsync();
    await admin.request("job/cancel", { id: job.id });
  });

  it("the victim's own state is evidence", async () => {
    await device.state({ fw: ID2, ip: "127.0.0.1" });
    await eventually(
      async () => (await admin.request("devices", {})).find((d) => d.id === victim.id)?.fw === ID2,
      "the device's own state reaches the registry",
    );
  });
});
