import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { connectAsync, type MqttClient } from "mqtt";
import { UsageError } from "../../src/errors.ts";
import { dashboardBase, HA_SUMMARY_MAX } from "../../src/server/homeassistant/homeassistant.ts";
import { MqttDevice } from "../server/support/mqtt-device.ts";
import { startTestServer, type TestServer, tempDir } from "../server/support/test-server.ts";
import { eventually } from "../server/support/wait.ts";
import { buildMicroPythonImage, imageIdentity } from "../support/images.ts";

const V1 = buildMicroPythonImage({ size: 40 * 1024, seed: 91 });
const V2 = buildMicroPythonImage({ size: 44 * 1024, seed: 92 });

// Home Assistant's MQTT update platform (home-assistant.io/integrations/update.mqtt): the keys its
// discovery schema takes that mpota uses, and its JSON state schema, MQTT_JSON_UPDATE_SCHEMA in
// homeassistant/components/mqtt/update.py: every key optional; installed_version, latest_version,
// title, release_summary cv.string (null fails); release_url and entity_picture cv.url (http or https
// with a host); in_progress cv.boolean; update_percentage a number 0-100 or null. A key outside it
// makes Home Assistant drop the whole message. The frontend shows 255 characters of release_summary.
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
  release_url: "url",
  entity_picture: "url",
  in_progress: "boolean",
  update_percentage: "number|null",
};

function checkState(state: Record<string, unknown>): void {
  for (const [key, value] of Object.entries(state)) {
    const type = STATE_TYPES[key];
    assert.ok(type, `key ${key} is outside Home Assistant's update state schema`);
    const actual = value === null ? "null" : typeof value;
    if (type === "url") {
      assert.equal(actual, "string", `${key} is ${actual}, schema says an http(s) URL`);
      const url = new URL(value as string);
      assert.ok(
        ["http:", "https:"].includes(url.protocol) && url.host !== "",
        `${key} ${value} is not http(s)`,
      );
      continue;
    }
    assert.ok(type.split("|").includes(actual), `${key} is ${actual}, schema says ${type}`);
  }
  if (typeof state.update_percentage === "number")
    assert.ok(state.update_percentage >= 0 && state.update_percentage <= 100, "update_percentage in 0-100");
  if (typeof state.release_summary === "string") assert.ok(state.release_summary.length <= HA_SUMMARY_MAX);
}

/** An MQTT client standing in for Home Assistant: it keeps every message it gets, in order. */
async function watch(url: string, filters: string[]) {
  const client = await connectAsync(url, { clientId: `ha-${Math.random().toString(16).slice(2)}` });
  const seen: Array<{ topic: string; text: string; retain: boolean }> = [];
  client.on("message", (topic, payload, packet) =>
    seen.push({ topic, text: payload.toString(), retain: packet.retain }),
  );
  await client.subscribeAsync(filters, { qos: 1 });
  const last = (topic: string) => seen.findLast((m) => m.topic === topic)?.text;
  return { client, seen, last };
}

describe("Home Assistant MQTT discovery", () => {
  const data = tempDir("mpota-ha-");
  let s: TestServer;
  let watcher: MqttClient;
  let seen: Array<{ topic: string; text: string; retain: boolean }>;
  let last: (topic: string) => string | undefined;
  let dev: MqttDevice;
  const porchStates = () =>
    seen
      .filter((m) => m.topic === "mpota/bridge/homeassistant/porch/state" && m.text !== "")
      .map((m) => JSON.parse(m.text) as Record<string, unknown>);

  before(async () => {
    s = await startTestServer(data.dir, {
      homeAssistant: { prefix: "ha", dashboardUrl: "http://mpota.test:8080" },
    });
    await s.server.library.add({ bytes: V1, name: "sensor", version: "1.0" });
    await s.server.library.add({
      bytes: V2,
      name: "sensor",
      version: "2.0",
      notes: "Faster wake. ".repeat(40),
    });
    ({ client: watcher, seen, last } = await watch(s.url, ["ha/#", "mpota/bridge/#"]));
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
    const text = await eventually(() => last("ha/update/porch/config"), "discovery config");
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
    const state = JSON.parse(
      await eventually(() => {
        const t = last(config.state_topic);
        return t && JSON.parse(t).latest_version === "2.0" ? t : undefined;
      }, "state"),
    );
    checkState(state);
    assert.deepEqual(state, {
      installed_version: "1.0",
      latest_version: "2.0",
      title: "sensor",
      in_progress: false,
      update_percentage: null,
      release_summary: state.release_summary,
      release_url: `http://mpota.test:8080/#/firmware/${imageIdentity(V2)}`,
    });
    assert.ok(state.release_summary.length <= HA_SUMMARY_MAX);
    assert.match(state.release_summary, /^Faster wake\./);
  });

  test("a state equal to the last one is not sent again; Home Assistant coming online gets every entity again", async () => {
    const shed = await MqttDevice.connect(s.url, "shed");
    try {
      await shed.state({ fw: imageIdentity(V1), ip: "127.0.0.1" });
      await eventually(() => last("ha/update/shed/config"), "shed's entity");
      await eventually(() => last("mpota/bridge/homeassistant/shed/state"), "shed's state");
      // The device checks in again with the same state (nothing for Home Assistant changed), then with
      // new firmware. A device's messages are published in order, so once the new state is there,
      // anything sent for the repeated check-in is there before it.
      const before = seen.length;
      await shed.state({ fw: imageIdentity(V1), ip: "127.0.0.1" });
      await shed.state({ fw: imageIdentity(V2), ip: "127.0.0.1" });
      await eventually(
        () => JSON.parse(last("mpota/bridge/homeassistant/shed/state") ?? "{}").installed_version === "2.0",
        "shed on 2.0",
      );
      const sent = seen.slice(before).filter((m) => m.topic.includes("/shed/"));
      assert.deepEqual(
        sent.map((m) => [m.topic, JSON.parse(m.text).installed_version]),
        [["mpota/bridge/homeassistant/shed/state", "2.0"]],
        "one state message, no repeated config or state",
      );

      // Home Assistant restarts and announces itself: every config and state is published again.
      const mark = seen.length;
      await watcher.publishAsync("ha/status", "online", { qos: 1 });
      const wanted = [
        "ha/update/porch/config",
        "mpota/bridge/homeassistant/porch/state",
        "ha/update/shed/config",
        "mpota/bridge/homeassistant/shed/state",
      ];
      await eventually(
        () => wanted.every((topic) => seen.slice(mark).some((m) => m.topic === topic && m.text !== "")),
        "every entity published again",
      );
      for (const m of seen.slice(mark))
        if (m.topic.endsWith("/state") && m.text) checkState(JSON.parse(m.text));
      assert.equal(JSON.parse(last("ha/update/shed/config") ?? "{}").unique_id, "mpota_mpota_shed_firmware");
    } finally {
      await shed.close();
    }
  });

  test("a job waiting for a sleeping device shows in progress without a percentage and stays available", async () => {
    const mark = porchStates().length;
    await watcher.publishAsync("mpota/bridge/homeassistant/porch/install", "install", { qos: 1 });
    const command = await dev.command();
    assert.ok(command !== "" && command.fw === imageIdentity(V2));
    const waiting = await eventually(
      () =>
        porchStates()
          .slice(mark)
          .find((st) => st.in_progress === true),
      "in_progress true",
    );
    // The job is scheduled: the device has not woken to take it. Home Assistant shows an install
    // under way with no percentage, and the entity stays available (the bridge is online).
    assert.equal((await s.server.storage.jobs.activeForDevice("porch"))?.phase, "waiting");
    checkState(waiting);
    assert.equal(waiting.update_percentage, null);
    assert.equal(waiting.installed_version, "1.0");
    assert.equal(waiting.latest_version, "2.0");
    assert.deepEqual(JSON.parse(last("mpota/bridge/state") ?? "{}"), { state: "online" });
    const config = JSON.parse(last("ha/update/porch/config") ?? "{}");
    assert.deepEqual(
      config.availability.map((a: { topic: string }) => a.topic),
      ["mpota/bridge/state"],
    );
  });

  test("the device wakes with the new firmware: the state shows the new installed version", async () => {
    await dev.state({ fw: imageIdentity(V2), ip: "127.0.0.1", sleep: 300, vbat: 3.0 });
    await eventually(
      () => porchStates().some((st) => st.installed_version === "2.0" && st.in_progress === false),
      "installed 2.0",
    );
    for (const st of porchStates()) checkState(st);
    const jobs = await s.server.storage.jobs.list({ deviceId: "porch" });
    assert.deepEqual(
      jobs.map((j) => j.phase),
      ["succeeded"],
    );
  });

  test("a device running firmware the store does not know gets strings, never null, and its device page as release_url", async () => {
    const other = await MqttDevice.connect(s.url, "attic");
    try {
      await other.state({ fw: "0123456789abcdef0123456789abcdef", ip: "127.0.0.1" });
      const state = JSON.parse(
        await eventually(() => last("mpota/bridge/homeassistant/attic/state"), "state"),
      );
      checkState(state);
      assert.equal(state.installed_version, "unknown 01234567");
      assert.equal(state.latest_version, state.installed_version);
      assert.equal(state.release_url, "http://mpota.test:8080/#/device/attic");
    } finally {
      await other.close();
    }
  });

  test("clearing a device's retained state removes its entity, also when Home Assistant comes online later", async () => {
    await dev.publish("state", "", true);
    await eventually(() => last("ha/update/porch/config") === "", "config cleared");
    await eventually(() => last("mpota/bridge/homeassistant/porch/state") === "", "state cleared");
    const mark = seen.length;
    await watcher.publishAsync("ha/status", "online", { qos: 1 });
    await eventually(
      () => seen.slice(mark).some((m) => m.topic === "mpota/bridge/homeassistant/attic/state"),
      "the other entities published again",
    );
    assert.deepEqual(
      seen.slice(mark).filter((m) => m.topic.includes("/porch/")),
      [],
      "the removed entity is not brought back",
    );
  });
});

describe("Home Assistant without a dashboard URL", () => {
  const data = tempDir("mpota-ha-nourl-");
  let s: TestServer;

  before(async () => {
    s = await startTestServer(data.dir, { homeAssistant: {} });
    await s.server.library.add({ bytes: V1, name: "sensor", version: "1.0" });
  });
  after(async () => {
    await s.stop();
    data.remove();
  });

  test("release_url is left out, never null", async () => {
    const ha = await watch(s.url, ["homeassistant/update/#", "mpota/bridge/homeassistant/#"]);
    const dev = await MqttDevice.connect(s.url, "porch");
    try {
      await dev.state({ fw: imageIdentity(V1), ip: "127.0.0.1" });
      const state = JSON.parse(
        await eventually(() => ha.last("mpota/bridge/homeassistant/porch/state"), "state"),
      );
      checkState(state);
      assert.deepEqual(state, {
        installed_version: "1.0",
        latest_version: "1.0",
        title: "sensor",
        in_progress: false,
        update_percentage: null,
      });
    } finally {
      await dev.close();
      await ha.client.endAsync();
    }
  });

  test("a dashboard URL that Home Assistant would refuse is refused at start", () => {
    assert.equal(dashboardBase("http://pi.local:8080"), "http://pi.local:8080/");
    assert.equal(dashboardBase("https://example.org/mpota/#/devices"), "https://example.org/mpota/");
    for (const bad of ["pi.local:8080", "ftp://pi.local/", "http://", "/dashboard"])
      assert.throws(() => dashboardBase(bad), UsageError, bad);
  });
});
