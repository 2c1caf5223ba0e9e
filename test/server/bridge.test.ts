import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { connectAsync, type MqttClient } from "mqtt";
import { verifyCommand } from "../../src/protocol/command-signature.ts";
import { RequestError } from "../../src/server/base/request-error.ts";
import { BridgeClient, NoServerError } from "../../src/server/bridge/bridge-client.ts";
import { EmbeddedBroker } from "../../src/server/mqtt/embedded-broker.ts";
import { BrokerConnectError } from "../../src/server/mqtt/mqtt-connect.ts";
import { buildMicroPythonImage, imageIdentity } from "../support/images.ts";
import { LogCapture } from "./support/log-capture.ts";
import { MqttDevice } from "./support/mqtt-device.ts";
import { startTestServer, type TestServer, tempDir } from "./support/test-server.ts";
import { eventually } from "./support/wait.ts";

/** Publishes a raw request and returns the next reply on its response topic, as parsed JSON. */
async function rawRequest(
  client: MqttClient,
  name: string,
  payload: string | Buffer,
  options: { retain?: boolean; replyTopic?: string } = {},
): Promise<Record<string, unknown>> {
  const topic = `mpota/bridge/response/${options.replyTopic ?? name}`;
  await client.subscribeAsync(topic, { qos: 1 });
  const reply = new Promise<Record<string, unknown>>((resolve) => {
    const on = (t: string, p: Buffer) => {
      if (t !== topic) return;
      client.off("message", on);
      resolve(JSON.parse(p.toString()) as Record<string, unknown>);
    };
    client.on("message", on);
  });
  await client.publishAsync(`mpota/bridge/request/${name}`, payload, {
    qos: 1,
    retain: options.retain ?? false,
  });
  const result = await reply;
  await client.unsubscribeAsync(topic);
  return result;
}

const refused = (pattern: RegExp) => (error: unknown) => {
  assert.ok(error instanceof RequestError, `expected RequestError, got ${String(error)}`);
  assert.match(error.message, pattern);
  return true;
};

describe("bridge request/response topics", () => {
  let t: ReturnType<typeof tempDir>;
  let s: TestServer;
  let raw: MqttClient;
  let bridge: BridgeClient;
  const v1 = buildMicroPythonImage({ size: 60000, seed: 11 });
  const v2 = buildMicroPythonImage({ size: 62000, seed: 12 });

  before(async () => {
    t = tempDir();
    s = await startTestServer(t.dir);
    raw = await connectAsync(s.url, { reconnectPeriod: 0 });
    bridge = await BridgeClient.connect({ connection: { url: s.url } });
  });
  after(async () => {
    await raw.endAsync();
    await bridge.close();
    await s.stop();
    t.remove();
  });

  it("answers in Zigbee2MQTT's envelope, echoing the transaction", async () => {
    assert.deepEqual(await rawRequest(raw, "devices", JSON.stringify({ transaction: "abc-1" })), {
      status: "ok",
      data: [],
      transaction: "abc-1",
    });
    assert.deepEqual(await rawRequest(raw, "firmware/list", JSON.stringify({ transaction: 42 })), {
      status: "ok",
      data: [],
      transaction: 42,
    });
    assert.deepEqual(await rawRequest(raw, "jobs", ""), { status: "ok", data: [] });
  });

  it("answers bad requests with an error envelope", async () => {
    const notJson = await rawRequest(raw, "devices", "{oops");
    assert.equal(notJson.status, "error");
    assert.deepEqual(notJson.data, {});
    assert.match(
      String(notJson.error),
      /^The request is not JSON \(.*\)\. Send a JSON object, for example \{"transaction":"1"\}\.$/,
    );
    assert.deepEqual(await rawRequest(raw, "devices", "[1]"), {
      status: "error",
      data: {},
      error: "The request must be a JSON object.",
    });
    const unknown = await rawRequest(raw, "reboot", JSON.stringify({ transaction: "t" }));
    assert.equal(unknown.status, "error");
    assert.equal(unknown.transaction, "t");
    assert.match(
      String(unknown.error),
      /^Unknown request "reboot"\. Known: info, devices, device, firmware\/list/,
    );
    const big = await rawRequest(raw, "devices", Buffer.alloc(70_000, 0x20));
    assert.deepEqual(big, {
      status: "error",
      data: {},
      error: "The request is 70000 bytes; devices takes at most 65536.",
    });
    const device = await rawRequest(raw, "device", JSON.stringify({ transaction: "d", id: 7 }));
    assert.deepEqual(device, {
      status: "error",
      data: {},
      error: 'The request needs "id": the device id.',
      code: 22, // the exit code the CLI gives it
      transaction: "d",
    });
  });

  it("refuses retained requests, which would run again at every start", async () => {
    // A running server gets the request live (retain flag cleared by the broker) and answers it once...
    const live = await rawRequest(raw, "firmware/remove", JSON.stringify({ id: "x" }), { retain: true });
    assert.match(String(live.error), /No firmware named "x"/);
    // ...but a server starting later gets it replayed as retained, and refuses it.
    const t2 = tempDir();
    await raw.subscribeAsync("mpota/bridge/response/firmware/remove", { qos: 1 });
    const replayed = new Promise<Record<string, unknown>>((resolve) => {
      raw.once("message", (_t, p) => resolve(JSON.parse(p.toString()) as Record<string, unknown>));
    });
    const second = await startTestServer(t2.dir, {
      broker: { kind: "external", connection: s.server.connection },
    });
    try {
      const reply = await replayed;
      assert.equal(reply.status, "error");
      assert.match(
        String(reply.error),
        /^Requests must not be retained \(they would run again at every server start\)/,
      );
      assert.equal(second.logs.find("retained request ignored").length, 1);
    } finally {
      await raw.unsubscribeAsync("mpota/bridge/response/firmware/remove");
      await raw.publishAsync("mpota/bridge/request/firmware/remove", "", { retain: true, qos: 1 });
      await second.stop();
      t2.remove();
    }
  });

  it("tells what the server is", async () => {
    const info = await bridge.request("info", {});
    assert.equal(info.base, "mpota");
    assert.equal(info.keyBits, 512);
    assert.deepEqual(info.networks, ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8"]);
    assert.equal(info.storage, s.server.storage.description);
    assert.match(info.storage, /^(SQLite .*mpota\.db|PostgreSQL .*)$/);
  });

  it("adds, lists and removes firmware", async () => {
    const added = await bridge.request("firmware/add", {
      image: Buffer.from(v1).toString("base64"),
      name: "sensor",
      version: "1.0",
      notes: "first release",
      filename: "firmware-ota.bin",
    });
    assert.equal(added.firmware.id, imageIdentity(v1));
    assert.equal(added.firmware.devices, 0);
    await bridge.request("firmware/add", {
      image: Buffer.from(v2).toString("base64"),
      name: "sensor",
      version: "2.0",
    });
    assert.deepEqual(
      (await bridge.request("firmware/list", {})).map((f) => `${f.name} ${f.version}`),
      ["sensor 2.0", "sensor 1.0"],
    );
    await assert.rejects(
      bridge.request("firmware/add", { image: "!!!not base64!!!", name: "x", version: "1" }),
      refused(/"image" is not base64/),
    );
    await assert.rejects(
      bridge.request("firmware/add", {
        image: Buffer.from(buildMicroPythonImage({ size: 60000, seed: 13, ota: false })).toString("base64"),
        name: "sensor",
        version: "3.0",
        filename: "firmware.bin",
      }),
      refused(/^firmware\.bin must not go to this device:\n- This is a normal MicroPython build/),
    );
    const removed = await bridge.request("firmware/remove", { id: "sensor@2.0" });
    assert.equal(removed.id, imageIdentity(v2));
    assert.deepEqual(
      (await bridge.request("firmware/list", {})).map((f) => f.version),
      ["1.0"],
    );
  });

  it("refuses updates it cannot do, with the reason", async () => {
    const dev = await MqttDevice.connect(s.url, "pump");
    await dev.state({ fw: imageIdentity(v1), ip: "192.168.4.2" });
    const far = await MqttDevice.connect(s.url, "faraway");
    await far.state({ fw: "1".repeat(32), ip: "8.8.8.8" });
    await eventually(async () => (await bridge.request("devices", {})).length === 2, "two devices");
    await assert.rejects(
      bridge.request("update", { device: "nosuch", firmware: "sensor" }),
      refused(/No device "nosuch" has reported/),
    );
    await assert.rejects(
      bridge.request("update", { device: "bad id!", firmware: "sensor" }),
      refused(/is not a device id/),
    );
    await assert.rejects(
      bridge.request("update", { device: "pump", firmware: "other@1" }),
      refused(/No firmware "other" version "1"/),
    );
    await assert.rejects(
      bridge.request("update", { device: "pump", firmware: "sensor@1.0" }),
      refused(/already runs sensor 1\.0/),
    );
    await assert.rejects(
      bridge.request("update", { device: "faraway", firmware: "sensor@1.0" }),
      refused(
        /reports the address 8\.8\.8\.8, where this server does not push: 8\.8\.8\.8 is outside the networks/,
      ),
    );
    await assert.rejects(bridge.request("job", { id: "j-none" }), refused(/There is no job "j-none"/));
    await assert.rejects(bridge.request("job/cancel", { id: "j-none" }), refused(/There is no job "j-none"/));
    assert.deepEqual(await bridge.request("jobs", {}), []);
    await dev.close();
    await far.close();
  });

  it("creates one job per device and cancels it before the device takes it", async () => {
    const dev = await MqttDevice.connect(s.url, "fan");
    await dev.state({ fw: "2".repeat(32), ip: "192.168.4.3", sleep: 600 });
    await eventually(
      async () => (await bridge.request("devices", {})).some((d) => d.id === "fan"),
      "fan known",
    );
    const job = await bridge.request("update", { device: "fan", firmware: "sensor" });
    assert.equal(job.state, "queued");
    // The device's first command: signed for it with the server's command key, counter 1.
    assert.deepEqual(verifyCommand(await dev.command(), s.server.commandKey.publicKey), {
      op: "ota",
      dev: "fan",
      seq: 1,
      job: job.id,
      fw: imageIdentity(v1),
      size: v1.length,
      ver: "1.0",
      down: 0,
      kid: s.server.commandKey.kid,
    });
    await assert.rejects(
      bridge.request("update", { device: "fan", firmware: "sensor@1.0" }),
      refused(new RegExp(`already has job ${job.id} \\(waiting`)),
    );
    const cancelled = await bridge.request("job/cancel", { id: job.id });
    assert.equal(cancelled.state, "cancelled");
    assert.equal(await dev.command((c) => c === ""), "", "the retained command is cleared");
    await assert.rejects(bridge.request("job/cancel", { id: job.id }), refused(/already been cancelled/));
    const detail = await bridge.request("job", { id: job.id });
    assert.deepEqual(
      detail.steps.map((st) => st.kind),
      ["created", "command", "cancelled"],
    );
    await dev.close();
  });

  it("refuses to create jobs when it has no signing key", async () => {
    const t2 = tempDir();
    const keyless = await startTestServer(t2.dir, { key: undefined });
    try {
      const b = await BridgeClient.connect({ connection: { url: keyless.url } });
      await assert.rejects(
        b.request("update", { device: "x", firmware: "y" }),
        refused(/no signing key, so it cannot push updates/),
      );
      assert.equal((await b.request("info", {})).keyBits, null);
      await b.close();
    } finally {
      await keyless.stop();
      t2.remove();
    }
  });
});

describe("bridge client without a server", () => {
  it("says when nothing listens at the broker address", async () => {
    const logs = new LogCapture();
    const broker = await EmbeddedBroker.start({ host: "127.0.0.1", port: 0, logger: logs.logger });
    const url = broker.url;
    await broker.close();
    await assert.rejects(BridgeClient.connect({ connection: { url }, timeoutMs: 2000 }), (error: unknown) => {
      assert.ok(error instanceof BrokerConnectError);
      assert.match(
        error.message,
        /^Nothing accepts connections at mqtt:\/\/127\.0\.0\.1:\d+ \(connection refused\)\./,
      );
      assert.match(error.message, /Start it with `mpota serve`/);
      return true;
    });
  });

  it("says when the broker runs but no server answers", async () => {
    const logs = new LogCapture();
    const broker = await EmbeddedBroker.start({ host: "127.0.0.1", port: 0, logger: logs.logger });
    try {
      const b = await BridgeClient.connect({ connection: { url: broker.url }, timeoutMs: 300 });
      await assert.rejects(b.request("devices", {}), (error: unknown) => {
        assert.ok(error instanceof NoServerError);
        assert.match(
          error.message,
          /^No mpota server answered "devices" within 0\.3 s on the broker at mqtt:\/\/127\.0\.0\.1:\d+/,
        );
        assert.match(error.message, /No mpota server has ever announced itself on this broker/);
        return true;
      });
      await b.close();
    } finally {
      await broker.close();
    }
  });
});
