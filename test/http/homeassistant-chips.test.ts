import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { connectAsync, type MqttClient } from "mqtt";
import { MqttDevice } from "../server/support/mqtt-device.ts";
import { startTestServer, type TestServer, tempDir } from "../server/support/test-server.ts";
import { eventually } from "../server/support/wait.ts";
import { buildEsp32AppImage, esp32Identity } from "../support/esp32-image.ts";
import { buildMicroPythonImage, imageIdentity } from "../support/images.ts";

// One line of firmware ("board") built for two chips: ESP8266 images and ESP32 app images,
// added in turns so that the newest of the line is always the other chip's.
const E1 = buildMicroPythonImage({ size: 40 * 1024, seed: 81 });
const E2 = buildMicroPythonImage({ size: 44 * 1024, seed: 82 });
const E4 = buildMicroPythonImage({ size: 48 * 1024, seed: 84 });
const S1 = buildEsp32AppImage({ size: 200_000, seed: 71 });
const S3 = buildEsp32AppImage({ size: 210_000, seed: 73 });
const S1_ID = esp32Identity({ seed: 71 }).slice(0, 32);
const S3_ID = esp32Identity({ seed: 73 }).slice(0, 32);

interface EntityState {
  installed_version: string;
  latest_version: string;
  title: string;
  in_progress: boolean;
}

describe("Home Assistant with ESP8266 and ESP32 devices in one fleet", () => {
  const data = tempDir("mpota-ha-chips-");
  let s: TestServer;
  let watcher: MqttClient;
  const last = new Map<string, string>();
  let esp8266: MqttDevice;
  let esp32: MqttDevice;
  const entity = (id: string) => JSON.parse(last.get(`mpota/bridge/homeassistant/${id}/state`) ?? "{}");
  const config = (id: string) => JSON.parse(last.get(`ha/update/${id}/config`) ?? "{}");

  before(async () => {
    // The HTTP listener is the ESP32's way to fetch its image: without it an ESP32 update is refused.
    s = await startTestServer(data.dir, {
      homeAssistant: { prefix: "ha" },
      http: { host: "127.0.0.1", port: 0 },
    });
    await s.server.library.add({ bytes: E1, name: "board", version: "1.0" });
    await s.server.library.add({ bytes: S1, name: "board", version: "1.5" });
    await s.server.library.add({ bytes: E2, name: "board", version: "2.0" });
    await s.server.library.add({ bytes: S3, name: "board", version: "3.0" });
    watcher = await connectAsync(s.url, { clientId: `ha-${Math.random().toString(16).slice(2)}` });
    watcher.on("message", (topic, payload) => last.set(topic, payload.toString()));
    await watcher.subscribeAsync(["ha/#", "mpota/bridge/homeassistant/#"], { qos: 1 });
    esp8266 = await MqttDevice.connect(s.url, "hall");
    await esp8266.state({ fw: imageIdentity(E1), ip: "127.0.0.1", chip: "esp8266" });
    esp32 = await MqttDevice.connect(s.url, "porch");
    await esp32.state({ v: 3, fw: S1_ID, ip: "127.0.0.1", chip: "esp32", slot: 0x180000, run: "ota_0" });
  });
  after(async () => {
    await esp8266.close();
    await esp32.close();
    await watcher.endAsync();
    await s.stop();
    data.remove();
  });

  test("each device's model is its chip's; each is offered the newest release of its line for its own chip", async () => {
    await eventually(() => entity("hall").installed_version && entity("porch").installed_version, "states");
    assert.equal(config("hall").device.model, "ESP8266 with yaota8266");
    assert.equal(config("porch").device.model, "ESP32 with MicroPython's OTA partition layout");
    // The newest "board" is the ESP32's 3.0: the ESP8266 is offered its own 2.0.
    assert.deepEqual(pick(entity("hall")), {
      installed_version: "1.0",
      latest_version: "2.0",
      title: "board",
    });
    assert.deepEqual(pick(entity("porch")), {
      installed_version: "1.5",
      latest_version: "3.0",
      title: "board",
    });
  });

  test("a newer ESP8266 release is not offered to the ESP32", async () => {
    await s.server.library.add({ bytes: E4, name: "board", version: "4.0" });
    // Home Assistant comes online: the server publishes every entity again, from the store as it is now.
    last.clear();
    await watcher.publishAsync("ha/status", "online", { qos: 1 });
    await eventually(() => last.has("mpota/bridge/homeassistant/porch/state"), "the ESP32's entity again");
    await eventually(() => last.has("mpota/bridge/homeassistant/hall/state"), "the ESP8266's entity again");
    assert.deepEqual(pick(entity("hall")), {
      installed_version: "1.0",
      latest_version: "4.0",
      title: "board",
    });
    assert.deepEqual(pick(entity("porch")), {
      installed_version: "1.5",
      latest_version: "3.0",
      title: "board",
    });
  });

  test("install from Home Assistant sends each device the release for its chip", async () => {
    await watcher.publishAsync("mpota/bridge/homeassistant/porch/install", "install", { qos: 1 });
    await watcher.publishAsync("mpota/bridge/homeassistant/hall/install", "install", { qos: 1 });
    const porch = await esp32.command();
    const hall = await esp8266.command();
    assert.ok(porch !== "" && hall !== "");
    assert.deepEqual([porch.op, porch.fw], ["pull", S3_ID]);
    assert.deepEqual([hall.op, hall.fw], ["ota", imageIdentity(E4)]);
  });
});

function pick(state: EntityState) {
  return {
    installed_version: state.installed_version,
    latest_version: state.latest_version,
    title: state.title,
  };
}
