import assert from "node:assert/strict";
import { connect as tcpConnect } from "node:net";
import { after, before, describe, it } from "node:test";
import { connect, connectAsync, type IClientOptions, type MqttClient } from "mqtt";
import pino from "pino";
import { MAX_FIRMWARE_REQUEST_BYTES } from "../../src/server/bridge/bridge.ts";
import { DEFAULT_ADMIN_PACKET_BYTES, DEFAULT_BROKER_LIMITS } from "../../src/server/mqtt/broker-limits.ts";
import { EmbeddedBroker } from "../../src/server/mqtt/embedded-broker.ts";
import { MqttDevice } from "../server/support/mqtt-device.ts";
import { startTestServer, type TestServer, tempDir } from "../server/support/test-server.ts";
import { eventually } from "../server/support/wait.ts";

/**
 * Issue 16's abuse of the embedded broker and the device registry, scaled
 * down: big retained messages, packets over the limits, a flood of new
 * device ids. Each is refused, logged once per source, and what the server
 * keeps stays within its limits.
 */

function tryConnect(url: string, options: IClientOptions = {}): Promise<MqttClient> {
  return connectAsync(url, { reconnectPeriod: 0, connectTimeout: 3000, ...options });
}

/** Resolves when the broker closes the client's connection. */
function closed(client: MqttClient): Promise<void> {
  if (!client.connected) return Promise.resolve();
  return new Promise((resolve) => client.once("close", () => resolve()));
}

/** The retained messages a new subscriber to `filter` gets, read until `marker` (published retained last) arrives. */
async function retainedUnder(url: string, filter: string, marker: string): Promise<Map<string, number>> {
  const reader = await tryConnect(url);
  const found = new Map<string, number>();
  try {
    const done = new Promise<void>((resolve) =>
      reader.on("message", (topic, payload, packet) => {
        if (topic === marker) resolve();
        else if (packet.retain) found.set(topic, payload.length);
      }),
    );
    await reader.subscribeAsync([filter, marker], { qos: 0 });
    await done;
  } finally {
    await reader.endAsync();
  }
  return found;
}

describe("the embedded broker under abuse", { timeout: 60_000 }, () => {
  const t = tempDir();
  let s: TestServer;
  const retainedTotal = 256 * 1024;

  before(async () => {
    s = await startTestServer(t.dir, {
      broker: { kind: "embedded", host: "127.0.0.1", port: 0, limits: { retainedTotalBytes: retainedTotal } },
    });
  });
  after(async () => {
    await s?.stop();
    t.remove();
  });

  const warnings = (msg: string) => s.logs.lines.filter((l) => l.level === 40 && l.msg === msg);
  const overPacket =
    "MQTT packet over the limit: connection closed before reading it (logged once per source per minute)";
  const overRetained = "MQTT retained message refused: connection closed (logged once per source per minute)";

  it("closes an admin's connection at a packet over its limit, before reading the packet", async () => {
    // The 100 MB retained messages, scaled to 4 MiB: over the admin's 3 MiB + 16 KiB.
    for (let n = 0; n < 3; n++) {
      const admin = await tryConnect(s.url);
      admin.on("error", () => undefined);
      admin.publish(`junk/${n}`, Buffer.alloc(4 * 1024 * 1024, 1), { qos: 0, retain: true });
      await closed(admin);
    }
    await eventually(() => warnings(overPacket).length > 0, "the refusal logged");
    const lines = warnings(overPacket);
    assert.equal(lines.length, 1, "three refusals from one source in a minute are one line");
    assert.match(String(lines[0]?.source), /^mpota-admin at /);
    assert.equal(lines[0]?.limit, DEFAULT_ADMIN_PACKET_BYTES);
    assert.ok(Number(lines[0]?.bytes) > 3 * 1024 * 1024);
    assert.equal(s.server.embeddedBroker?.hooks?.retained.bytes, 0);
    const admin = await tryConnect(s.url);
    await admin.publishAsync("junk-marker", "m", { qos: 1, retain: true });
    await admin.endAsync();
    assert.deepEqual([...(await retainedUnder(s.url, "junk/#", "junk-marker")).keys()], []);
  });

  it("closes a connection whose first packet says it is larger than the limit of a client not yet known, without waiting for its bytes", async () => {
    const socket = tcpConnect(s.server.embeddedBroker?.port as number, "127.0.0.1");
    await new Promise<void>((resolve) => socket.once("connect", () => resolve()));
    socket.on("error", () => undefined);
    const ended = new Promise<void>((resolve) => socket.once("close", () => resolve()));
    // A CONNECT whose remaining length says 100,000,000 bytes; only its header is sent.
    socket.write(Buffer.from([0x10, 0x80, 0xc2, 0xd7, 0x2f]));
    await ended;
    const line = s.logs.lines.find((l) => l.msg === overPacket && l.bytes === 100_000_005);
    assert.ok(line, "the refusal names the declared size");
    assert.equal(line.limit, DEFAULT_BROKER_LIMITS.devicePacketBytes);
    assert.equal(line.source, "127.0.0.1");
  });

  it("takes a bridge request as large as the bridge takes from the admin", async () => {
    assert.ok(DEFAULT_ADMIN_PACKET_BYTES >= MAX_FIRMWARE_REQUEST_BYTES + 5 + 2 + 64, "header and topic fit");
    const admin = await tryConnect(s.url);
    const replies: string[] = [];
    admin.on("message", (_topic, payload) => replies.push(payload.toString()));
    await admin.subscribeAsync("mpota/bridge/response/firmware/add", { qos: 1 });
    await admin.publishAsync(
      "mpota/bridge/request/firmware/add",
      Buffer.alloc(MAX_FIRMWARE_REQUEST_BYTES, 0x20),
      {
        qos: 1,
      },
    );
    await eventually(() => replies.length > 0, "the bridge's reply");
    assert.equal(admin.connected, true);
    assert.match(replies[0] as string, /"status":"error"/);
    await admin.endAsync();
  });

  it("closes a device's connection at a packet over the device limit; its normal state still passes", async () => {
    const device = await MqttDevice.connect(s.url, "big-talker");
    device.client.on("error", () => undefined);
    device.client.publish("mpota/big-talker/telemetry", Buffer.alloc(20 * 1024, 1), { qos: 0 });
    await closed(device.client);
    await eventually(
      () => s.logs.lines.some((l) => l.msg === overPacket && l.source === "device big-talker at 127.0.0.1"),
      "the device's refusal",
    );
    const again = await MqttDevice.connect(s.url, "big-talker");
    await again.state({ fw: "ab".repeat(16), ip: "127.0.0.1" });
    await eventually(
      async () => (await s.server.storage.devices.get("big-talker"))?.state?.fw === "ab".repeat(16),
      "the state stored",
    );
    await again.client.endAsync();
  });

  it("refuses a retained message over the per-message limit, then over the total", async () => {
    const admin = await tryConnect(s.url);
    admin.on("error", () => undefined);
    admin.publish("junk/big", Buffer.alloc(DEFAULT_BROKER_LIMITS.retainedMessageBytes + 1, 1), {
      qos: 0,
      retain: true,
    });
    await closed(admin);
    // 60 KiB messages: four fit in the 256 KiB budget, the fifth does not.
    const kept: string[] = [];
    for (let n = 0; n < 8; n++) {
      const client = await tryConnect(s.url);
      client.on("error", () => undefined);
      const topic = `junk/fill/${n}`;
      const outcome = await Promise.race([
        client.publishAsync(topic, Buffer.alloc(60 * 1024, 1), { qos: 1, retain: true }).then(
          () => "kept",
          () => "closed",
        ),
        closed(client).then(() => "closed"),
      ]);
      if (outcome === "kept") {
        kept.push(topic);
        await client.endAsync();
      }
    }
    const retained = s.server.embeddedBroker?.hooks?.retained;
    assert.ok(retained && retained.bytes <= retainedTotal, `${retained?.bytes} bytes retained`);
    const marker = await tryConnect(s.url);
    await marker.publishAsync("junk-marker", "m2", { qos: 1, retain: true });
    await marker.endAsync();
    assert.deepEqual(kept, ["junk/fill/0", "junk/fill/1", "junk/fill/2", "junk/fill/3"]);
    const stored = await retainedUnder(s.url, "junk/#", "junk-marker");
    assert.deepEqual([...stored.keys()].sort(), ["junk/fill/0", "junk/fill/1", "junk/fill/2", "junk/fill/3"]);
    const lines = warnings(overRetained);
    assert.equal(lines.length, 1, "refusals from one admin address in a minute are one line");
    assert.match(String(lines[0]?.reason), /at most 65536 bytes/);
    // A cleared topic frees its bytes, and a device can always send its state again.
    const clearer = await tryConnect(s.url);
    await clearer.publishAsync("junk/fill/0", "", { qos: 1, retain: true });
    await clearer.publishAsync("junk/fill/9", Buffer.alloc(60 * 1024, 1), { qos: 1, retain: true });
    assert.equal(clearer.connected, true);
    await clearer.endAsync();
  });
});

describe("a flood of new device ids", { timeout: 60_000 }, () => {
  const t = tempDir();
  let open: EmbeddedBroker;

  before(async () => {
    // A broker without credentials, as an external one on a LAN may be: anyone can publish any id.
    open = await EmbeddedBroker.start({ host: "127.0.0.1", port: 0, logger: pino({ level: "silent" }) });
  });
  after(async () => {
    await open?.close();
    t.remove();
  });

  /** Publishes a state for `count` new ids under `base`, then waits for the server to handle them. */
  async function flood(s: TestServer, base: string, count: number): Promise<void> {
    const client = await tryConnect(open.localUrl);
    for (let n = 0; n < count; n++)
      client.publish(
        `${base}/fake-${n}/state`,
        JSON.stringify({ v: 2, fw: "cd".repeat(16), ip: "10.0.0.9" }),
        {
          qos: 0,
        },
      );
    // An invalid state last: once the server has logged it, it has queued every state before it.
    await client.publishAsync(`${base}/fake-last/state`, "{}", { qos: 1 });
    await client.endAsync();
    await eventually(
      () => s.logs.lines.some((l) => l.topic === `${base}/fake-last/state`),
      "the last state read",
    );
    await s.server.inbox.idle();
  }

  it("registers at most --max-devices ids; a known device's states are still stored", async () => {
    const s = await startTestServer(`${t.dir}/cap`, {
      broker: { kind: "external", connection: { url: open.localUrl } },
      base: "cap",
      deviceLimits: { maxDevices: 20, newPerMinute: 10_000 },
    });
    try {
      await flood(s, "cap", 300);
      assert.equal(await s.server.storage.devices.count(), 20);
      const refused = s.logs.lines.filter((l) => l.msg.startsWith("new device refused:"));
      assert.equal(refused.length, 1, refused.map((l) => l.msg).join("\n"));
      assert.equal(refused[0]?.limit, "max-devices");
      assert.match(String(refused[0]?.msg), /at most 20 devices \(--max-devices\)/);
      const known = (await s.server.storage.devices.list())[0]?.id as string;
      const device = await tryConnect(open.localUrl);
      await device.publishAsync(
        `cap/${known}/state`,
        JSON.stringify({ v: 2, fw: "ef".repeat(16), ip: "10.0.0.9" }),
        {
          qos: 1,
        },
      );
      await device.endAsync();
      await eventually(
        async () => (await s.server.storage.devices.get(known))?.state?.fw === "ef".repeat(16),
        "the known device's state stored",
      );
    } finally {
      await s.stop();
    }
  });

  it("registers at most --new-devices-per-minute new ids a minute, and provisioned ones over it", async () => {
    const s = await startTestServer(`${t.dir}/rate`, {
      broker: { kind: "external", connection: { url: open.localUrl } },
      base: "rate",
      deviceLimits: { maxDevices: 10_000, newPerMinute: 25 },
    });
    try {
      await flood(s, "rate", 300);
      // 25 at once, and perhaps one more refilled while the flood was handled (25 a minute: one in 2.4 s).
      const count = await s.server.storage.devices.count();
      assert.ok(count >= 25 && count <= 27, `${count} devices registered`);
      const refused = s.logs.lines.filter((l) => l.msg.startsWith("new device refused:"));
      assert.equal(refused.length, 1);
      assert.equal(refused[0]?.limit, "new-devices-per-minute");
      // A provisioned id (`mpota devices add`) is let in over the rate: an admin let it in.
      await s.provision("added-1");
      const device = await tryConnect(open.localUrl);
      await device.publishAsync(
        "rate/added-1/state",
        JSON.stringify({ v: 2, fw: "ef".repeat(16), ip: "10.0.0.9" }),
        {
          qos: 1,
        },
      );
      await device.endAsync();
      await eventually(
        async () => (await s.server.storage.devices.get("added-1")) !== undefined,
        "added-1 registered",
      );
    } finally {
      await s.stop();
    }
  });
});

describe("connections beyond the broker's limit", { timeout: 60_000 }, () => {
  const t = tempDir();
  const limit = 6;
  let s: TestServer;

  before(async () => {
    s = await startTestServer(t.dir, {
      broker: { kind: "embedded", host: "127.0.0.1", port: 0, limits: { connections: limit } },
    });
  });
  after(async () => {
    await s?.stop();
    t.remove();
  });

  /** A client that got its CONNACK, or undefined when the broker closed the connection first. */
  const attempt = (): Promise<MqttClient | undefined> =>
    new Promise((resolve) => {
      const client = connect(s.url, { reconnectPeriod: 0, connectTimeout: 10_000 });
      client.on("error", () => undefined);
      client.once("connect", () => resolve(client));
      client.once("close", () => {
        client.end(true);
        resolve(undefined);
      });
    });

  it("closes connections over the limit at once, logs it once per address, and takes new ones when one leaves", async () => {
    const kept: MqttClient[] = [];
    let refused = 0;
    try {
      // The server's own connections count too: admins connect until the listener is full.
      for (let n = 0; n < limit + 3; n++) {
        const client = await attempt();
        if (client) kept.push(client);
        else refused++;
      }
      assert.ok(kept.length >= 1 && kept.length < limit, `${kept.length} kept`);
      assert.equal(kept.length + refused, limit + 3);
      assert.ok(refused >= 3, `${refused} refused`);
      await eventually(
        () => s.logs.lines.some((l) => l.msg.startsWith("MQTT connection refused")),
        "the refusal logged",
      );
      const lines = s.logs.lines.filter((l) => l.msg.startsWith("MQTT connection refused"));
      assert.equal(lines.length, 1, "refusals from one address in a minute are one line");
      assert.deepEqual([lines[0]?.source, lines[0]?.limit, lines[0]?.listener], ["127.0.0.1", limit, "mqtt"]);
      // One leaves: the next one is taken.
      await kept.pop()?.endAsync();
      await eventually(async () => {
        const client = await attempt();
        if (client) kept.push(client);
        return client !== undefined;
      }, "a connection taken once one left");
    } finally {
      await Promise.all(kept.map((c) => c.endAsync()));
    }
  });
});
