import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { connectAsync, type IClientOptions, type MqttClient } from "mqtt";
import { verifyCommand } from "../../src/protocol/command-signature.ts";
import { BridgeClient } from "../../src/server/bridge/bridge-client.ts";
import type { DeviceAccess } from "../../src/simulator/fleet.ts";
import { ID1, ID2, V1, V2 } from "../server/support/job-suite.ts";
import { MqttDevice } from "../server/support/mqtt-device.ts";
import { startTestServer, type TestServer, tempDir } from "../server/support/test-server.ts";
import { eventually } from "../server/support/wait.ts";

/**
 * The findings of issue 14 against `mpota serve`'s embedded broker, each
 * tried as an attacker on the LAN would: every one must fail now.
 */

/** Connects and resolves with the client, or rejects with the broker's refusal. */
function tryConnect(url: string, options: IClientOptions): Promise<MqttClient> {
  return connectAsync(url, { reconnectPeriod: 0, connectTimeout: 3000, ...options });
}

/** Resolves true when the client is disconnected by the broker within `ms`. */
function dropped(client: MqttClient, ms = 2000): Promise<boolean> {
  if (!client.connected) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    client.once("close", () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

describe("attacks on the embedded broker", () => {
  let t: ReturnType<typeof tempDir>;
  let s: TestServer;
  let admin: BridgeClient;
  let watcher: MqttClient;
  let victim: MqttDevice;
  let other: DeviceAccess;
  const seen: Array<{ topic: string; payload: string }> = [];
  const brokerUrl = () => s.brokerUrl;

  before(async () => {
    t = tempDir();
    s = await startTestServer(t.dir);
    admin = await BridgeClient.connect({ connection: { url: s.url } });
    await admin.request("firmware/add", {
      image: Buffer.from(V2).toString("base64"),
      name: "sensor",
      version: "2.0",
    });
    await admin.request("firmware/add", {
      image: Buffer.from(V1).toString("base64"),
      name: "sensor",
      version: "1.0",
    });
    watcher = await connectAsync(s.url, { reconnectPeriod: 0 });
    await watcher.subscribeAsync("mpota/#", { qos: 1 });
    watcher.on("message", (topic, payload) => seen.push({ topic, payload: payload.toString() }));
    victim = await MqttDevice.connect(s.brokerUrl, "victim");
    await victim.state({ fw: ID1, ip: "127.0.0.1" });
    other = await s.provision("intruder");
    await eventually(
      async () => (await admin.request("devices", {})).some((d) => d.id === "victim" && d.fw === ID1),
      "victim registered",
    );
  });
  after(async () => {
    await victim?.close();
    await watcher?.endAsync();
    await admin?.close();
    await s?.stop();
    t?.remove();
  });

  it("refuses anonymous clients", async () => {
    await assert.rejects(tryConnect(brokerUrl(), {}), /Not authorized/);
    await assert.rejects(tryConnect(brokerUrl(), { clientId: "victim" }), /Not authorized/);
    assert.equal(victim.client.connected, true, "the real device stays connected");
  });

  it("refuses a wrong device credential, logging it once per client without a stack", async () => {
    for (let i = 0; i < 3; i++) {
      await assert.rejects(
        tryConnect(brokerUrl(), { clientId: "victim", username: "victim", password: "guessed-password" }),
        /Bad username or password/,
      );
    }
    const lines = s.logs
      .find("MQTT client refused")
      .filter((l) => l.client === "victim" && /wrong credential/.test(String(l.reason)));
    assert.equal(lines.length, 1);
    assert.equal(lines[0]?.reason, 'wrong credential for device "victim"');
    assert.equal(lines[0]?.err, undefined);
    assert.equal(victim.client.connected, true);
  });

  it("refuses a client id that belongs to a device, with any other credential", async () => {
    await assert.rejects(
      tryConnect(brokerUrl(), { clientId: "victim", username: other.username, password: other.password }),
      /Not authorized/,
    );
    await assert.rejects(
      tryConnect(brokerUrl(), { clientId: "victim", username: "mpota-admin", password: s.adminToken }),
      /Not authorized/,
    );
    assert.equal(victim.client.connected, true, "the real device was not thrown off");
  });

  it("lets a device publish only its own topics and read only its own commands", async () => {
    const intruder = await tryConnect(brokerUrl(), {
      clientId: other.username,
      username: other.username,
      password: other.password,
    });
    // Its own topics work.
    await intruder.publishAsync("mpota/intruder/temperature", "21.5", { qos: 1 });
    await eventually(
      () => seen.some((m) => m.topic === "mpota/intruder/temperature"),
      "own telemetry delivered",
    );
    // Reading another device's commands, the bridge or everything is refused (granted QoS 128).
    for (const filter of ["mpota/victim/cmd", "mpota/bridge/#", "#", "mpota/+/cmd"]) {
      await assert.rejects(intruder.subscribeAsync(filter, { qos: 1 }), /Subscribe error/, filter);
    }
    const granted = await intruder.subscribeAsync("mpota/intruder/cmd", { qos: 1 });
    assert.equal(granted[0]?.qos, 1);
    // Publishing as the victim gets it thrown off, and nothing is delivered.
    const before = seen.length;
    intruder.publish("mpota/victim/state", JSON.stringify({ v: 2, fw: ID2, ip: "127.0.0.1" }), { qos: 0 });
    assert.equal(await dropped(intruder), true);
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(
      seen.slice(before).filter((m) => m.topic.startsWith("mpota/victim/")),
      [],
    );
    const device = (await admin.request("devices", {})).find((d) => d.id === "victim");
    assert.equal(device?.fw, ID1, "the registry still shows what the device runs");
  });

  it("refuses commands and bridge requests from devices", async () => {
    for (const topic of ["mpota/intruder/cmd", "mpota/victim/cmd", "mpota/bridge/request/update"]) {
      const intruder = await tryConnect(brokerUrl(), {
        clientId: other.username,
        username: other.username,
        password: other.password,
      });
      const before = seen.length;
      intruder.publish(
        topic,
        JSON.stringify({
          op: "ota",
          job: "j-evil",
          fw: "1".repeat(32),
          size: 614400,
          device: "victim",
          firmware: "sensor@1.0",
        }),
        {
          qos: 0,
          retain: true,
        },
      );
      assert.equal(await dropped(intruder), true, `publishing ${topic} ends the connection`);
      await new Promise((r) => setTimeout(r, 200));
      assert.deepEqual(
        seen.slice(before).filter((m) => m.topic === topic || m.topic.startsWith("mpota/bridge/response")),
        [],
      );
    }
    assert.deepEqual(victim.commands, [], "the victim got no command");
    assert.deepEqual(await admin.request("jobs", {}), [], "no job was created");
  });

  it("keeps admins off device topics (no forged states or raw commands)", async () => {
    const tool = await tryConnect(s.url, {});
    tool.publish(
      "mpota/victim/cmd",
      JSON.stringify({ op: "ota", job: "j-evil", fw: "1".repeat(32), size: 1 }),
      {
        qos: 0,
        retain: true,
      },
    );
    assert.equal(await dropped(tool), true);
    assert.deepEqual(victim.commands, []);
  });

  it("does not end a waiting job on a forged state", async () => {
    const job = await admin.request("update", { device: "victim", firmware: "sensor@2.0" });
    const command = await victim.command((c) => c !== "" && c.job === job.id);
    // The command is signed for this device, this job and this target, with the server's command key.
    const checked = verifyCommand(command, s.server.commandKey.publicKey);
    assert.deepEqual(
      { ...checked, seq: undefined },
      {
        op: "ota",
        dev: "victim",
        seq: undefined,
        job: job.id,
        fw: ID2,
        size: V2.length,
        ver: "2.0",
        down: 0,
        kid: s.server.commandKey.kid,
      },
    );
    const intruder = await tryConnect(brokerUrl(), {
      clientId: other.username,
      username: other.username,
      password: other.password,
    });
    intruder.publish("mpota/victim/state", JSON.stringify({ v: 2, fw: ID2, ip: "127.0.0.1" }), {
      qos: 0,
      retain: true,
    });
    assert.equal(await dropped(intruder), true);
    await new Promise((r) => setTimeout(r, 500));
    const now = await admin.request("job", { id: job.id });
    assert.notEqual(now.state, "succeeded");
    assert.equal((await admin.request("devices", {})).find((d) => d.id === "victim")?.fw, ID1);
    await admin.request("job/cancel", { id: job.id });
  });

  it("provisions a device once; a second add changes nothing", async () => {
    const first = await admin.request("devices/add", { id: "porch" });
    await assert.rejects(
      admin.request("devices/add", { id: "porch" }),
      /already provisioned; nothing was changed/,
    );
    const porch = await tryConnect(brokerUrl(), {
      clientId: "porch",
      username: "porch",
      password: first.secret,
    });
    await porch.endAsync();
    await assert.rejects(
      admin.request("devices/add", { id: "mpota-admin" }),
      /kept for the broker's user names of the server and the admin/,
    );
    await assert.rejects(admin.request("devices/add", { id: "bridge" }), /reserved/);
  });

  it("ends a device's connection when its credential is replaced or revoked", async () => {
    const first = await admin.request("devices/add", { id: "shed" });
    const shed = await tryConnect(s.brokerUrl, {
      clientId: "shed",
      username: "shed",
      password: first.secret,
    });
    const second = await admin.request("devices/rotate", { id: "shed" });
    assert.equal(await dropped(shed), true, "the old credential's connection ends");
    await assert.rejects(
      tryConnect(s.brokerUrl, { clientId: "shed", username: "shed", password: first.secret }),
      /Bad username or password/,
    );
    const again = await tryConnect(s.brokerUrl, {
      clientId: "shed",
      username: "shed",
      password: second.secret,
    });
    await admin.request("devices/revoke", { id: "shed" });
    assert.equal(await dropped(again), true);
    await assert.rejects(
      tryConnect(s.brokerUrl, { clientId: "shed", username: "shed", password: second.secret }),
      /Bad username or password/,
    );
  });

  it("records the real sender of a bridge request, whatever $caller it claims", async () => {
    const tool = await tryConnect(s.url, { clientId: "tool-claims" });
    const reply = new Promise<string>((resolve) => tool.on("message", (_t, p) => resolve(p.toString())));
    await tool.subscribeAsync("mpota/bridge/response/devices/revoke", { qos: 1 });
    await tool.publishAsync(
      "mpota/bridge/request/devices/revoke",
      JSON.stringify({ id: "nobody", transaction: "t1", $caller: "http token (10.9.9.9)" }),
      { qos: 1 },
    );
    assert.match(await reply, /has no credential/);
    await tool.endAsync();
    const entry = (await admin.request("audit", { limit: 5 })).find((e) => e.action === "devices/revoke");
    assert.match(String(entry?.actor), /^mqtt mpota-admin \(client tool-claims, /);
  });

  it("records who changed what", async () => {
    const entries = await admin.request("audit", { limit: 50 });
    const update = entries.find((e) => e.action === "update" && e.target === "victim");
    assert.ok(update, "the update is in the audit list");
    assert.match(update.actor, /^mqtt mpota-admin \(client \S+, (::ffff:)?127\.0\.0\.1\)$/);
    assert.equal(update.outcome, "ok");
    const refused = entries.filter((e) => e.action === "devices/add" && e.outcome === "refused");
    assert.ok(
      refused.some((e) => /already provisioned/.test(String(e.detail?.reason)) && e.target === "porch"),
    );
    assert.ok(!JSON.stringify(entries).includes("secret"), "no secret in the audit list");
  });
});
