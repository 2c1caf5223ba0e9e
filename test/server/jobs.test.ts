import assert from "node:assert/strict";
import { createSocket } from "node:dgram";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, afterEach, before, beforeEach, describe, it } from "node:test";
import { connectAsync, type IClientOptions } from "mqtt";
import { verifyCommand } from "../../src/protocol/command-signature.ts";
import type { OtaCommand } from "../../src/protocol/mqtt-contract.ts";
import { BridgeClient } from "../../src/server/bridge/bridge-client.ts";
import { EmbeddedBroker } from "../../src/server/mqtt/embedded-broker.ts";
import { startAedesBroker } from "./support/brokers.ts";
import { DeviceTwin } from "./support/device-twin.ts";
import { defineJobSuite, ID1, ID2, jobEnd, V1, V2 } from "./support/job-suite.ts";
import { LogCapture } from "./support/log-capture.ts";
import { MqttDevice } from "./support/mqtt-device.ts";
import { startTestServer, type TestServer, tempDir } from "./support/test-server.ts";
import { eventually } from "./support/wait.ts";

/** The next command published on a device's command topic, as a tool subscribed to it sees it. */
async function nextCommand(url: string, options: IClientOptions, id: string): Promise<OtaCommand> {
  const topic = `mpota/${id}/cmd`;
  const client = await connectAsync(url, { ...options, reconnectPeriod: 0 });
  const command = new Promise<OtaCommand>((resolve) => {
    client.on("message", (t, payload) => {
      if (t === topic && payload.length > 0) resolve(JSON.parse(payload.toString()) as OtaCommand);
    });
  });
  await client.subscribeAsync(topic, { qos: 1 });
  return command.finally(() => client.endAsync());
}

const kindsOf = (job: { steps: Array<{ kind: string }> }) => job.steps.map((s) => s.kind);

defineJobSuite("the embedded broker", { embedded: true, external: startAedesBroker });

describe("update jobs: devices that decline", () => {
  let t: ReturnType<typeof tempDir>;
  let s: TestServer;
  let bridge: BridgeClient;
  const twins: DeviceTwin[] = [];

  beforeEach(async () => {
    t = tempDir();
    s = await startTestServer(t.dir, { maxAttempts: 3 });
    bridge = await BridgeClient.connect({ connection: { url: s.url } });
    await bridge.request("firmware/add", {
      image: Buffer.from(V2).toString("base64"),
      name: "sensor",
      version: "2.0",
    });
  });
  afterEach(async () => {
    for (const twin of twins.splice(0)) await twin.close();
    await bridge.close();
    await s.stop();
    t.remove();
  });

  const twin = async (options: Partial<ConstructorParameters<typeof DeviceTwin>[0]> & { id: string }) => {
    const d = new DeviceTwin({ url: s.url, image: V1, ...options });
    twins.push(d);
    await d.start();
    return d;
  };
  const known = (id: string, fw = ID1) =>
    eventually(
      async () => (await bridge.request("devices", {})).some((d) => d.id === id && d.fw === fw),
      `${id} reports ${fw}`,
    );

  it("retries a device that declines for a low battery, and fails after the limit", async () => {
    await twin({ id: "mailbox", decline: "battery low" });
    await known("mailbox");
    const job = await bridge.request("update", { device: "mailbox", firmware: "sensor@2.0" });
    const end = await jobEnd(bridge, job.id);
    assert.equal(end.state, "failed");
    assert.equal(end.attempt, 3);
    assert.equal(kindsOf(end).filter((k) => k === "declined").length, 3);
    assert.match(
      end.error ?? "",
      /^Device mailbox declined the update: "battery low"\. It will be asked again; charge it .* Gave up after 3 tries\./,
    );
  });

  it("fails at once when the device declines for a reason retries cannot fix", async () => {
    await twin({ id: "tiny", decline: "not enough flash" });
    await known("tiny");
    const job = await bridge.request("update", { device: "tiny", firmware: "sensor@2.0" });
    const end = await jobEnd(bridge, job.id);
    assert.equal(end.state, "failed");
    assert.equal(end.attempt, 1);
    assert.match(
      end.error ?? "",
      /declined the update: "not enough flash"\. Trying again will not change that/,
    );
  });
});

describe("update jobs: addresses the server refuses", () => {
  let t: ReturnType<typeof tempDir>;
  let s: TestServer;
  let bridge: BridgeClient;
  before(async () => {
    t = tempDir();
    s = await startTestServer(t.dir, { maxAttempts: 2 });
    bridge = await BridgeClient.connect({ connection: { url: s.url } });
    await bridge.request("firmware/add", {
      image: Buffer.from(V2).toString("base64"),
      name: "sensor",
      version: "2.0",
    });
  });
  after(async () => {
    await bridge.close();
    await s.stop();
    t.remove();
  });

  /** A UDP socket that counts datagrams: nothing may reach it. */
  async function listener() {
    const socket = createSocket("udp4");
    let received = 0;
    socket.on("message", () => received++);
    await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", resolve));
    return {
      port: socket.address().port,
      received: () => received,
      close: () => new Promise<void>((r) => socket.close(() => r())),
    };
  }

  it("refuses an ack naming a public address", async () => {
    const dev = await MqttDevice.connect(s.url, "rogue1");
    await dev.state({ fw: ID1, ip: "192.168.9.9" });
    await eventually(
      async () => (await bridge.request("devices", {})).some((d) => d.id === "rogue1"),
      "rogue1 known",
    );
    const job = await bridge.request("update", { device: "rogue1", firmware: "sensor" });
    const cmd = await dev.command();
    assert.notEqual(cmd, "");
    await dev.ack({ job: job.id, ready: true, ip: "8.8.8.8", port: 8266 });
    const end = await jobEnd(bridge, job.id);
    assert.equal(end.state, "failed");
    assert.match(
      end.error ?? "",
      /^Refused to push: the ack names 8\.8\.8\.8, but device rogue1 reported 192\.168\.9\.9 in its state/,
    );
    assert.ok(s.logs.find("push refused: ack names another address than the state").length >= 1);
    await dev.close();
  });

  it("refuses a public address even when the state reports it too", async () => {
    const dev = await MqttDevice.connect(s.url, "rogue2");
    await dev.state({ fw: ID1, ip: "192.168.9.10" });
    await eventually(
      async () => (await bridge.request("devices", {})).some((d) => d.id === "rogue2"),
      "rogue2 known",
    );
    const job = await bridge.request("update", { device: "rogue2", firmware: "sensor" });
    await dev.command();
    // The device "moves" to a public address, then acks from there.
    await dev.state({ fw: ID1, ip: "1.2.3.4" });
    await eventually(
      async () => (await bridge.request("device", { id: "rogue2" })).ip === "1.2.3.4",
      "new address stored",
    );
    await dev.ack({ job: job.id, ready: true, ip: "1.2.3.4" });
    const end = await jobEnd(bridge, job.id);
    assert.equal(end.state, "failed");
    assert.match(
      end.error ?? "",
      /^Refused to push to device rogue2: 1\.2\.3\.4 is outside the networks this server pushes to/,
    );
    assert.ok(s.logs.find("push refused: address outside the allowed networks").length >= 1);
    await dev.close();
  });

  it("refuses an ack naming another device's address, and sends it nothing", async () => {
    const victim = await listener();
    const dev = await MqttDevice.connect(s.url, "rogue3");
    await dev.state({ fw: ID1, ip: "127.0.0.5" });
    await eventually(
      async () => (await bridge.request("devices", {})).some((d) => d.id === "rogue3"),
      "rogue3 known",
    );
    const job = await bridge.request("update", { device: "rogue3", firmware: "sensor" });
    await dev.command();
    await dev.ack({ job: job.id, ready: true, ip: "127.0.0.1", port: victim.port });
    const end = await jobEnd(bridge, job.id);
    assert.equal(end.state, "failed");
    assert.match(end.error ?? "", /the ack names 127\.0\.0\.1, but device rogue3 reported 127\.0\.0\.5/);
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(victim.received(), 0);
    await victim.close();
    await dev.close();
  });

  it("never pushes an image whose file no longer matches its identity", async () => {
    const device = await listener();
    const dev = await MqttDevice.connect(s.url, "tamper");
    await dev.state({ fw: ID1, ip: "127.0.0.1" });
    await eventually(
      async () => (await bridge.request("devices", {})).some((d) => d.id === "tamper"),
      "tamper known",
    );
    const job = await bridge.request("update", { device: "tamper", firmware: "sensor" });
    await dev.command();
    const damaged = new Uint8Array(V2);
    damaged[0x9400] = (damaged[0x9400] as number) ^ 0x01;
    writeFileSync(join(s.dataDir, "firmware", `${ID2}.bin`), damaged);
    await dev.ack({ job: job.id, ready: true, ip: "127.0.0.1", port: device.port });
    const end = await jobEnd(bridge, job.id);
    assert.equal(end.state, "failed");
    assert.match(
      end.error ?? "",
      new RegExp(
        `^The image file .*${ID2}\\.bin does not match firmware identity ${ID2}: .* will not be pushed`,
      ),
    );
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(device.received(), 0);
    writeFileSync(join(s.dataDir, "firmware", `${ID2}.bin`), V2);
    await device.close();
    await dev.close();
  });

  it("gives up on a device that acks but never answers in OTA mode", async () => {
    const silent = await listener(); // closed at once: a port nothing listens on
    await silent.close();
    const dev = await MqttDevice.connect(s.url, "mute");
    await dev.state({ fw: ID1, ip: "127.0.0.1" });
    await eventually(
      async () => (await bridge.request("devices", {})).some((d) => d.id === "mute"),
      "mute known",
    );
    // Ack every command, as a device whose bootloader lacks the RTC-magic patch would (it reboots into the app).
    dev.client.on("message", (topic, payload) => {
      if (topic !== "mpota/mute/cmd" || payload.length === 0) return;
      const c = JSON.parse(payload.toString()) as { job: string };
      void dev.ack({ job: c.job, ready: true, ip: "127.0.0.1", port: silent.port });
    });
    const job = await bridge.request("update", { device: "mute", firmware: "sensor" });
    const end = await jobEnd(bridge, job.id, 30_000);
    assert.equal(end.state, "failed");
    assert.equal(end.attempt, 2);
    assert.match(end.error ?? "", /Gave up after 2 tries/);
    assert.match(
      end.error ?? "",
      /took the command but did not answer in OTA mode at 127\.0\.0\.1:\d+ within 2 s\. Likely causes: its yaota8266 lacks the RTC-magic patch/,
    );
    await dev.close();
  });
});

describe("update jobs across broker restarts", () => {
  it("reconnects, and publishes its state and the commands of active jobs again", async () => {
    const t = tempDir();
    let broker = await EmbeddedBroker.start({
      host: "127.0.0.1",
      port: 0,
      logger: new LogCapture("silent").logger,
    });
    const port = broker.port;
    const connection = { url: broker.url };
    const s = await startTestServer(t.dir, { broker: { kind: "external", connection } });
    try {
      let bridge = await BridgeClient.connect({ connection });
      await bridge.request("firmware/add", {
        image: Buffer.from(V2).toString("base64"),
        name: "sensor",
        version: "2.0",
      });
      const dev = await MqttDevice.connect(broker.url, "owl");
      await dev.state({ fw: ID1, ip: "192.168.2.9", sleep: 3600 });
      await dev.close();
      await eventually(async () => (await bridge.request("devices", {})).length === 1, "owl known");
      const published = nextCommand(broker.url, {}, "owl");
      const job = await bridge.request("update", { device: "owl", firmware: "sensor" });
      const first = await published;
      await eventually(
        async () => (await bridge.request("job", { id: job.id })).state === "waiting",
        "waiting",
      );
      await bridge.close();
      await broker.close();
      broker = await EmbeddedBroker.start({
        host: "127.0.0.1",
        port,
        logger: new LogCapture("silent").logger,
      });
      await eventually(
        () => s.logs.find("MQTT connection back").length > 0 || undefined,
        "server reconnected",
        15_000,
      );
      const woke = await MqttDevice.connect(broker.url, "owl");
      // The same signed command as before the broker went away (a device that took it sees no second one).
      const command = await woke.command();
      assert.deepEqual(command, first);
      assert.deepEqual(verifyCommand(command, s.server.commandKey.publicKey), {
        op: "ota",
        dev: "owl",
        seq: 1,
        job: job.id,
        fw: ID2,
        size: V2.length,
        ver: "2.0",
        down: 0,
        kid: s.server.commandKey.kid,
      });
      const state = await MqttDevice.connect(broker.url, "probe");
      await state.client.subscribeAsync("mpota/bridge/state", { qos: 1 });
      const online = await new Promise<string>((resolve) =>
        state.client.once("message", (_t, p) => resolve(p.toString())),
      );
      assert.equal(online, '{"state":"online"}');
      bridge = await BridgeClient.connect({ connection });
      assert.equal((await bridge.request("job", { id: job.id })).state, "waiting");
      await Promise.all([woke.close(), state.close(), bridge.close()]);
    } finally {
      await s.stop();
      await broker.close();
      t.remove();
    }
  });
});

describe("update jobs across server restarts", () => {
  it("republishes the command of a waiting job when the server (and its embedded broker) restarts", async () => {
    const t = tempDir();
    try {
      let s = await startTestServer(t.dir);
      let bridge = await BridgeClient.connect({ connection: { url: s.url } });
      await bridge.request("firmware/add", {
        image: Buffer.from(V2).toString("base64"),
        name: "sensor",
        version: "2.0",
      });
      const dev = await MqttDevice.connect(s.url, "sleeper");
      await dev.state({ fw: ID1, ip: "192.168.2.2", sleep: 3600 });
      await dev.close();
      await eventually(async () => (await bridge.request("devices", {})).length === 1, "sleeper known");
      const published = nextCommand(s.url, {}, "sleeper");
      const job = await bridge.request("update", { device: "sleeper", firmware: "sensor" });
      const first = verifyCommand(await published, s.server.commandKey.publicKey);
      await eventually(
        async () => (await bridge.request("job", { id: job.id })).state === "waiting",
        "waiting",
      );
      await bridge.close();
      await s.stop();
      s = await startTestServer(t.dir);
      const woke = await MqttDevice.connect(s.url, "sleeper");
      // The same job's command, signed again by the restarted server with the device's next counter.
      const command = verifyCommand(await woke.command(), s.server.commandKey.publicKey);
      assert.deepEqual(command, { ...first, seq: first.seq + 1 });
      assert.deepEqual(first, {
        op: "ota",
        dev: "sleeper",
        seq: 1,
        job: job.id,
        fw: ID2,
        size: V2.length,
        ver: "2.0",
        down: 0,
        kid: s.server.commandKey.kid,
      });
      bridge = await BridgeClient.connect({ connection: { url: s.url } });
      assert.equal((await bridge.request("job", { id: job.id })).state, "waiting");
      await woke.close();
      await bridge.close();
      await s.stop();
    } finally {
      t.remove();
    }
  });
});
