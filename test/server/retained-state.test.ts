import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { connectAsync } from "mqtt";
import { Topics } from "../../src/server/api/topics.ts";
import { MqttLink } from "../../src/server/mqtt/mqtt-link.ts";
import { readState } from "../../src/server/mqtt/topic-readers.ts";
import { MOSQUITTO_SKIP, startAedesBroker, startMosquitto, type TestBroker } from "./support/brokers.ts";
import { LogCapture } from "./support/log-capture.ts";

// An instance in a shared group reads a device's retained state itself before pushing it again
// (MqttLink.readRetained): the broker hands each live message to one instance only, and the
// instance that got it may have died before storing it.
function defineReadRetained(label: string, start: () => Promise<TestBroker>, sharedGroup?: string) {
  it(`reads the retained message of one topic, and only that, over ${label}`, async () => {
    const broker = await start();
    const logs = new LogCapture();
    const link = await MqttLink.connect(
      broker.connection,
      { timeoutMs: 5000, reconnect: false, ...(sharedGroup ? { sharedGroup } : {}) },
      logs.logger,
    );
    const device = await connectAsync(broker.connection.url, { ...broker.clientOptions, clean: true });
    try {
      const topics = new Topics("mpota");
      const state = (fw: string) => JSON.stringify({ v: 1, fw: fw.repeat(32), ip: "10.0.0.7" });
      const seen: string[] = [];
      await link.subscribe(topics.allDevices("state"), readState, (m) => void seen.push(m.topic), {
        shared: true,
      });
      await device.publishAsync("mpota/attic/state", state("a"), { qos: 1, retain: true });
      // The live message went to the subscription; wait for it so that it is not counted below.
      for (let i = 0; i < 100 && seen.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
      assert.deepEqual(seen, ["mpota/attic/state"]);

      const message = await link.readRetained(topics.device("attic", "state"), readState);
      assert.equal(message?.bytes.toString(), state("a"));
      assert.equal(message?.payload.fw, "a".repeat(32), "read by the contract's reader");
      assert.equal(
        await link.readRetained(topics.device("cellar", "state"), readState, 300),
        null,
        "no retained message: null",
      );
      assert.equal(
        await link.readRetained(topics.allDevices("state"), readState),
        null,
        "a filter is not a topic",
      );
      // The reads reached no handler, and the link's own subscription still works.
      await device.publishAsync("mpota/cellar/state", state("b"), { qos: 1, retain: true });
      for (let i = 0; i < 100 && seen.length < 2; i++) await new Promise((r) => setTimeout(r, 20));
      await new Promise((r) => setTimeout(r, 100));
      assert.deepEqual(seen, ["mpota/attic/state", "mpota/cellar/state"]);
    } finally {
      await device.endAsync();
      await link.close();
      await broker.stop();
    }
  });
}

describe("reading a device's retained state", () => {
  defineReadRetained("the embedded broker (MQTT 3.1.1)", startAedesBroker);
});

describe("reading a device's retained state with shared subscriptions", { skip: MOSQUITTO_SKIP }, () => {
  defineReadRetained("Mosquitto (MQTT 5, shared group)", () => startMosquitto(), "mpota");
});
