import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { connectAsync, type MqttClient } from "mqtt";
import { HA_SUMMARY_MAX } from "../../src/server/homeassistant.ts";
import { MqttDevice } from "../server/support/mqtt-device.ts";
import { startTestServer, type TestServer, tempDir } from "../server/support/test-server.ts";
import { eventually } from "../server/support/wait.ts";
import { buildMicroPythonImage, imageIdentity } from "../support/images.ts";

const V1 = buildMicroPythonImage({ size: 40 * 1024, seed: 91 });
const V2 = buildMicroPythonImage({ size: 44 * 1024, seed: 92 });

// Home Assistant's MQTT update platform (home-assistant.io/integrations/update.mqtt): the keys its
// discovery schema takes that mpota uses, and the JSON state schema (every key optional; strings
// must not be null; update_percentage 0-100 or null; release_summary at most 255 characters).
const CONFIG_KEYS = [
  "availability",
  "command_topic",
  "device",
  "device_class",
  "entity_category",
  "name",
  "origin",
  "payload_install",
  "state_topic",
  "unique_id",
];
const STATE_TYPES: Record<string, string> = {
  installed_version: "string",
  latest_version: "string",
  title: "string",
  release_summary: "string",
  release_url: "string",
  entity_picture: "string",
  in_progress: "boolean",
  update_percentage: "number|null",
};

function checkState(state: Record<string, unknown>): void {
  for (const [key, value] of Object.entries(state)) {
    const type = STATE_TYPES[key];
    assert.ok(type, `key ${key} is outside Home Assistant's update state schema`);
    const actual = value === null ? "null" : typeof value;
    assert.ok(type.split("|").includes(actual), `${key} is ${actual}, schema says ${type}`);
  }
  if (typeof state.update_percentage === "number")
    assert.ok(state.update_percentage >= 0 && state.update_percentage <= 100);
  if (typeof state.release_summary === "string") assert.ok(state.release_summary.length <= HA_SUMMARY_MAX);
}

describe("Home Assistant MQTT discovery", () => {
  const data = tempDir("mpota-ha-");
  let s: TestServer;
  let watcher: MqttClient;
  let dev: MqttDevice;
  const last = new Map<string, string>();
  const states: Array<Record<string, unknown>> = [];

  before(async () => {
    s = await startTestServer(data.dir, { homeAssistant: { prefix: "ha" } });
    await s.server.library.add({ bytes: V1, name: "sensor", version: "1.0" });
    await s.server.library.add({
      bytes: V2,
      name: "sensor",
      version: "2.0",
      notes: "Faster wake. ".repeat(40),
    });
    watcher = await connectAsync(s.url, { clientId: `ha-${Math.random().toString(16).slice(2)}` });
    watcher.on("message", (topic, payload) => {
      last.set(topic, payload.toString());
      if (topic.endsWith("/porch/state") && payload.length > 0) states.push(JSON.parse(payload.toString()));
    });
    await watcher.subscribeAsync(["ha/#", "mpota/bridge/homeassistant/#"], { qos: 1 });
    dev = await MqttDevice.connect(s.url, "porch");
    await dev.state({ fw: imageIdentity(V1), ip: "127.0.0.1", sleep: 300, vbat: 3.0 });
    await dev.status("sleeping");
  });
  after(async () => {
    await dev.close();
    await watcher.endAsync();
    await s.stop();
    data.remove();
  });

  test("one update entity per device: the documented discovery keys, available while the device sleeps", async () => {
    const text = await eventually(() => last.get("ha/update/porch/config"), "discovery config");
    const config = JSON.parse(text);
    assert.deepEqual(Object.keys(config).sort(), CONFIG_KEYS);
    assert.equal(config.device_class, "firmware");
    assert.equal(config.unique_id, "mpota_mpota_porch_firmware");
    assert.equal(config.state_topic, "mpota/bridge/homeassistant/porch/state");
    assert.equal(config.command_topic, "mpota/bridge/homeassistant/porch/install");
    assert.equal(config.payload_install, "install");
    assert.deepEqual(config.device.identifiers, ["mpota_mpota_porch"]);
    // Availability follows the server, not the device: a sleeping device is not "unavailable".
    assert.deepEqual(
      config.availability.map((a: { topic: string }) => a.topic),
      ["mpota/bridge/state"],
    );
    const state = JSON.parse(await eventually(() => last.get(config.state_topic), "state"));
    checkState(state);
    assert.equal(state.installed_version, "1.0");
    assert.equal(state.latest_version, "2.0");
    assert.equal(state.title, "sensor");
    assert.equal(state.in_progress, false);
    assert.equal(state.update_percentage, null);
    assert.ok(state.release_summary.length <= HA_SUMMARY_MAX);
    assert.match(state.release_summary, /^Faster wake\./);
  });

  test("pressing install starts a job; the state shows it in progress, then the new installed version", async () => {
    await watcher.publishAsync("mpota/bridge/homeassistant/porch/install", "install", { qos: 1 });
    const command = await dev.command();
    assert.ok(command !== "" && command.fw === imageIdentity(V2));
    await eventually(() => states.some((st) => st.in_progress === true), "in_progress true");
    await dev.state({ fw: imageIdentity(V2), ip: "127.0.0.1", sleep: 300, vbat: 3.0 });
    await eventually(
      () => states.some((st) => st.installed_version === "2.0" && st.in_progress === false),
      "installed 2.0",
    );
    for (const st of states) checkState(st);
    const jobs = await s.server.storage.jobs.list({ deviceId: "porch" });
    assert.deepEqual(
      jobs.map((j) => j.phase),
      ["succeeded"],
    );
  });

  test("a device running firmware the store does not know gets strings, never null", async () => {
    const other = await MqttDevice.connect(s.url, "shed");
    try {
      await other.state({ fw: "0123456789abcdef0123456789abcdef", ip: "127.0.0.1" });
      const state = JSON.parse(
        await eventually(() => last.get("mpota/bridge/homeassistant/shed/state"), "state"),
      );
      checkState(state);
      assert.equal(state.installed_version, "unknown 01234567");
      assert.equal(state.latest_version, state.installed_version);
    } finally {
      await other.close();
    }
  });

  test("clearing a device's retained state removes its entity", async () => {
    await dev.publish("state", "", true);
    await eventually(() => last.get("ha/update/porch/config") === "", "config cleared");
  });
});
