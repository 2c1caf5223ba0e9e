import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { MqttDevice } from "../server/support/mqtt-device.ts";
import { tempDir } from "../server/support/test-server.ts";
import { eventually } from "../server/support/wait.ts";
import { buildEsp32AppImage, esp32Identity } from "../support/esp32-image.ts";
import { buildMicroPythonImage, imageIdentity } from "../support/images.ts";
import { call, type HttpTestServer, startHttpServer } from "./support.ts";

// One line ("board") built for two chips, and one fleet holding both.
const E1 = buildMicroPythonImage({ size: 40 * 1024, seed: 61 });
const E2 = buildMicroPythonImage({ size: 44 * 1024, seed: 62 });
const S1 = buildEsp32AppImage({ size: 200_000, seed: 51 });
const S3 = buildEsp32AppImage({ size: 210_000, seed: 53 });
const S1_ID = esp32Identity({ seed: 51 }).slice(0, 32);
const S3_ID = esp32Identity({ seed: 53 }).slice(0, 32);
const UNKNOWN = "0123456789abcdef0123456789abcdef";

describe("HTTP API and rollouts over a fleet of ESP8266 and ESP32 devices", () => {
  const data = tempDir("mpota-esp32-fleet-");
  let s: HttpTestServer;
  const devices: MqttDevice[] = [];

  before(async () => {
    s = await startHttpServer(data.dir);
    await s.server.library.add({ bytes: E1, name: "board", version: "1.0" });
    await s.server.library.add({ bytes: S1, name: "board", version: "1.5" });
    await s.server.library.add({ bytes: E2, name: "board", version: "2.0" });
    await s.server.library.add({ bytes: S3, name: "board", version: "3.0" });
    const esp32 = { v: 3, ip: "127.0.0.1", chip: "esp32", slot: 0x180000, run: "ota_0" } as const;
    const states = {
      // ESP8266s: one on a release the store knows, one (a v3 agent) on firmware it does not know.
      hall: { fw: imageIdentity(E1), ip: "127.0.0.1" },
      attic: { v: 3 as const, fw: UNKNOWN, ip: "127.0.0.1", chip: "esp8266" },
      // ESP32s: the same, the unknown one known as an ESP32 by the chip it reports.
      porch: { ...esp32, fw: S1_ID },
      shed: { ...esp32, fw: UNKNOWN },
    };
    for (const [id, state] of Object.entries(states)) {
      const device = await MqttDevice.connect(s.url, id);
      devices.push(device);
      await device.state(state);
      await s.server.storage.tags.set(id, ["garden"]);
    }
    await eventually(async () => (await s.server.storage.devices.list()).length === 4, "four devices");
  });
  after(async () => {
    for (const device of devices) await device.close();
    await s.stop();
    data.remove();
  });

  test("POST /update refuses a release for another chip, in both directions, saying which to pick", async () => {
    const toEsp8266 = await call(s, "POST", "/api/v1/update", {
      json: { device: "hall", firmware: "board@3.0" },
    });
    assert.equal(toEsp8266.status, 400);
    assert.equal(
      toEsp8266.body.error,
      "Device hall runs board 1.0, built for esp8266; board 3.0 is built for esp32, which the device cannot run. Pick a release built for esp8266.",
    );
    const toEsp32 = await call(s, "POST", "/api/v1/update", {
      json: { device: "porch", firmware: "board@2.0" },
    });
    assert.equal(toEsp32.status, 400);
    assert.equal(
      toEsp32.body.error,
      "Device porch runs board 1.5, built for esp32; board 2.0 is built for esp8266, which the device cannot run. Pick a release built for esp32.",
    );
    // Running firmware the store does not know: the chip the device reports decides.
    const unknown = await call(s, "POST", "/api/v1/update", {
      json: { device: "attic", firmware: "board@3.0" },
    });
    assert.equal(unknown.status, 400);
    assert.match(unknown.body.error, /esp8266/);
    assert.equal((await s.server.storage.jobs.list({ active: true })).length, 0);
  });

  test("a rollout over a tag holding both chips updates the release's chip and leaves the others out, saying so", async () => {
    const created = await call(s, "POST", "/api/v1/rollouts", {
      json: { firmware: "board@3.0", tag: "garden", groups: "rest", name: "esp32s of the garden" },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.equal(created.body.firmware.id, S3_ID);
    const detail = await call(s, "GET", `/api/v1/rollouts/${created.body.id}`);
    assert.deepEqual(detail.body.devices.map((d: { device: string }) => d.device).sort(), ["porch", "shed"]);
    const event = detail.body.events.find((e: { kind: string }) => e.kind === "created");
    assert.equal(
      event.message,
      "Rollout of board 3.0 to 2 devices created: groups of 2; 2 devices of another chip left out (board 3.0 is built for esp32): attic, hall run esp8266.",
    );
    await call(s, "POST", `/api/v1/rollouts/${created.body.id}/abort`, { json: {} });
    await eventually(
      async () => (await call(s, "GET", `/api/v1/rollouts/${created.body.id}`)).body.state === "aborted",
      "aborted",
    );
  });

  test("a rollout naming a device of another chip is refused, naming it", async () => {
    const refused = await call(s, "POST", "/api/v1/rollouts", {
      json: { firmware: "board@2.0", devices: ["hall", "porch", "shed"] },
    });
    assert.equal(refused.status, 400);
    assert.equal(
      refused.body.error,
      "Refused: board 2.0 is built for esp8266, and porch, shed run esp32. Leave those devices out, or roll out a release built for their chip to them in a rollout of its own.",
    );
  });

  test("a rollout whose selection holds no device of the release's chip is refused", async () => {
    await s.server.storage.tags.set("porch", ["porch"]);
    const refused = await call(s, "POST", "/api/v1/rollouts", {
      json: { firmware: "board@2.0", tag: "porch" },
    });
    assert.equal(refused.status, 400);
    assert.equal(
      refused.body.error,
      "Refused: board 2.0 is built for esp8266, and no selected device runs esp8266 (porch runs esp32). Pick a release built for their chip.",
    );
  });

  test("POST /update/line of an ESP8266 release updates the line's ESP8266s only", async () => {
    const started = await call(s, "POST", "/api/v1/update/line", { json: { firmware: "board@2.0" } });
    assert.equal(started.status, 201, JSON.stringify(started.body));
    const detail = await call(
      s,
      "GET",
      `/api/v1/rollouts/${started.body.rollout.id ?? started.body.rollout}`,
    );
    assert.deepEqual(
      detail.body.devices.map((d: { device: string }) => d.device),
      ["hall"],
    );
    assert.match(
      detail.body.events.find((e: { kind: string }) => e.kind === "created").message,
      /1 device of another chip left out \(board 2\.0 is built for esp8266\): porch runs esp32\.$/,
    );
  });
});
