import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { connectAsync, type IClientOptions, type MqttClient } from "mqtt";
import type { BridgeDeviceEntry, BridgeInfoMessage } from "../../src/server/api/api.ts";
import { BridgeClient } from "../../src/server/bridge/bridge-client.ts";
import { buildMicroPythonImage, imageIdentity } from "../support/images.ts";
import { MOSQUITTO_SKIP, startMosquitto } from "./support/brokers.ts";
import { MqttDevice } from "./support/mqtt-device.ts";
import { startTestServer, type TestServer, tempDir } from "./support/test-server.ts";

const packageVersion = (
  JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string }
).version;

/** The retained messages of one topic as a fresh subscriber gets them, then the live ones. */
class TopicReader<T> {
  readonly messages: Array<{ value: T; retain: boolean }> = [];

  private constructor(readonly client: MqttClient) {}

  static async open<T>(url: string, topic: string, options: IClientOptions = {}): Promise<TopicReader<T>> {
    const client = await connectAsync(url, { ...options, reconnectPeriod: 0 });
    const reader = new TopicReader<T>(client);
    client.on("message", (t, payload, packet) => {
      if (t === topic)
        reader.messages.push({ value: JSON.parse(payload.toString()) as T, retain: packet.retain });
    });
    await client.subscribeAsync(topic, { qos: 1 });
    return reader;
  }

  async next(predicate: (value: T) => boolean, timeoutMs = 15_000): Promise<{ value: T; retain: boolean }> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.messages.find((m) => predicate(m.value));
      if (found) return found;
      if (Date.now() > deadline)
        throw new Error(`no matching message in ${timeoutMs} ms; got ${JSON.stringify(this.messages)}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  close(): Promise<void> {
    return this.client.endAsync();
  }
}

async function bridgeTopicsStory(
  s: TestServer,
  readerOptions: IClientOptions,
  deviceOptions: IClientOptions,
) {
  const url = s.url;
  const info = await TopicReader.open<BridgeInfoMessage>(url, "mpota/bridge/info", readerOptions);
  const devices = await TopicReader.open<BridgeDeviceEntry[]>(url, "mpota/bridge/devices", readerOptions);
  const bridge = await BridgeClient.connect({ connection: s.server.connection });
  const dev = await MqttDevice.connect(url, "sim-1", "mpota", deviceOptions);
  try {
    const first = await info.next(() => true);
    assert.equal(first.retain, true, "bridge/info is retained");
    assert.deepEqual(first.value, {
      version: packageVersion,
      base: "mpota",
      storage: s.server.storage.description,
      keyBits: 512,
      devices: { count: 0, listed: 0 },
      firmware: 0,
    });
    assert.deepEqual((await devices.next(() => true)).value, []);

    const image = buildMicroPythonImage({ size: 64 * 1024, seed: 3 });
    await bridge.request("firmware/add", {
      image: Buffer.from(image).toString("base64"),
      name: "sensor",
      version: "1.0",
    });
    await dev.state({ fw: imageIdentity(image), ip: "192.168.4.21", ver: "v1.27.0", sleep: 300, rssi: -60 });
    const listed = await devices.next((list) => list.length === 1 && list[0]?.firmware !== null);
    const entry = listed.value[0] as BridgeDeviceEntry;
    assert.deepEqual(
      { ...entry, firstSeen: typeof entry.firstSeen },
      {
        id: "sim-1",
        fw: imageIdentity(image),
        firmware: { id: imageIdentity(image), name: "sensor", version: "1.0" },
        ver: "v1.27.0",
        ip: "192.168.4.21",
        sleep: 300,
        v: 2,
        chip: null,
        firstSeen: "number",
      },
    );
    assert.equal("rssi" in entry, false, "volatile fields stay on the device's own topics");
    const counted = await info.next((m) => m.devices.count === 1);
    assert.deepEqual([counted.value.devices, counted.value.firmware], [{ count: 1, listed: 1 }, 1]);

    // A newcomer gets both as retained messages, the way Zigbee2MQTT users read them.
    const late = await TopicReader.open<BridgeDeviceEntry[]>(url, "mpota/bridge/devices", readerOptions);
    const replay = await late.next(() => true);
    assert.equal(replay.retain, true);
    assert.equal(replay.value[0]?.id, "sim-1");
    await late.close();
  } finally {
    await dev.close();
    await bridge.close();
    await info.close();
    await devices.close();
  }
}

describe("retained bridge/info and bridge/devices", () => {
  it("on the embedded broker: what the server is, and each device with its firmware", async () => {
    const t = tempDir();
    const s = await startTestServer(t.dir);
    try {
      await bridgeTopicsStory(s, {}, await s.provision("sim-1"));
    } finally {
      await s.stop();
      t.remove();
    }
  });

  it("on Mosquitto", { skip: MOSQUITTO_SKIP }, async () => {
    const broker = await startMosquitto();
    const t = tempDir();
    try {
      const s = await startTestServer(t.dir, { broker: { kind: "external", connection: broker.connection } });
      try {
        await bridgeTopicsStory(s, broker.clientOptions, broker.clientOptions);
      } finally {
        await s.stop();
      }
    } finally {
      await broker.stop();
      t.remove();
    }
  });
});
