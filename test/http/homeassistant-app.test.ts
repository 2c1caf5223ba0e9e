import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { connectAsync, type MqttClient } from "mqtt";
import { defaultAppKeyPath, loadAppKey } from "../../src/apps/app-key.ts";
import type { SignedAppManifest } from "../../src/apps/app-manifest.ts";
import { signAppManifest } from "../../src/apps/app-signature.ts";
import { AppReleases } from "../../src/server/releases/app-releases.ts";
import { MqttDevice } from "../server/support/mqtt-device.ts";
import { startTestServer, type TestServer, tempDir } from "../server/support/test-server.ts";
import { eventually } from "../server/support/wait.ts";
import { buildMicroPythonImage, imageIdentity } from "../support/images.ts";

const FW = buildMicroPythonImage({ size: 40 * 1024, seed: 95 });
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

describe("Home Assistant: a second update entity per device for its app", () => {
  const data = tempDir("mpota-ha-app-");
  let s: TestServer;
  let watcher: MqttClient;
  const seen: Array<{ topic: string; text: string }> = [];
  const last = (topic: string) => seen.findLast((m) => m.topic === topic)?.text;
  const releases = new Map<string, SignedAppManifest>();
  let hall: MqttDevice;
  let porch: MqttDevice;
  let attic: MqttDevice;

  /** Stores thermostat `version` for `boards` (one file whose text names the version), signed with the server's app key. */
  async function addRelease(apps: AppReleases, version: string, boards: string[], notes?: string) {
    const key = loadAppKey(defaultAppKeyPath(data.dir), { create: true });
    const main = Buffer.from(`print("thermostat ${version}")\n`);
    const manifest = signAppManifest(
      {
        name: "thermostat",
        version,
        boards,
        mpy: undefined,
        files: [{ path: "main.py", size: main.length, sha256: sha(main) }],
      },
      key.privateKey,
    );
    await apps.add({ manifest: manifest.bytes, files: new Map([[sha(main), main]]), notes: notes ?? null });
    releases.set(version, manifest);
  }

  const appState = (id: string, version: string, extra: Record<string, unknown> = {}) => ({
    v: 3 as const,
    fw: imageIdentity(FW),
    ip: "127.0.0.1",
    chip: id === "porch" ? "esp32" : "esp8266",
    app: {
      name: "thermostat",
      ver: version,
      id: releases.get(version)?.id,
      board: id === "porch" ? "esp32" : "esp8266",
      mpy: 6,
      free: 200_000,
      ...extra,
    },
  });

  const entity = (id: string) => JSON.parse(last(`mpota/bridge/homeassistant/${id}/app/state`) || "{}");

  before(async () => {
    s = await startTestServer(data.dir, {
      homeAssistant: { prefix: "ha", dashboardUrl: "http://mpota.test:8080" },
      http: { host: "127.0.0.1", port: 0 },
    });
    await s.server.library.add({ bytes: FW, name: "micropython", version: "1.22" });
    const apps = new AppReleases(s.server.library, data.dir);
    await addRelease(apps, "1.0", ["esp32", "esp8266"]);
    await addRelease(apps, "1.1", ["esp8266"], "Steadier readings on the ESP8266.");
    await addRelease(apps, "1.5", ["esp32"], "Humidity too.");
    watcher = await connectAsync(s.url, { clientId: `ha-${Math.random().toString(16).slice(2)}` });
    watcher.on("message", (topic, payload) => seen.push({ topic, text: payload.toString() }));
    await watcher.subscribeAsync(["ha/#", "mpota/bridge/homeassistant/#"], { qos: 1 });
    hall = await MqttDevice.connect(s.url, "hall");
    porch = await MqttDevice.connect(s.url, "porch");
    attic = await MqttDevice.connect(s.url, "attic");
    await hall.state(appState("hall", "1.0"));
    await porch.state(appState("porch", "1.0"));
    // A device without an app (contract v2): its firmware entity only.
    await attic.state({ fw: imageIdentity(FW), ip: "127.0.0.1" });
  });
  after(async () => {
    await hall.close();
    await porch.close();
    await attic.close();
    await watcher.endAsync();
    await s.stop();
    data.remove();
  });

  test("beside the firmware entity, the app entity: its own topics and id, the same device, no device class", async () => {
    const text = await eventually(() => last("ha/update/porch/app/config") || undefined, "app config");
    const config = JSON.parse(text);
    const firmware = JSON.parse(await eventually(() => last("ha/update/porch/config"), "firmware config"));
    assert.equal(config.name, "App");
    assert.equal(config.unique_id, "mpota_mpota_porch_app");
    assert.equal(firmware.unique_id, "mpota_mpota_porch_firmware");
    assert.equal(config.state_topic, "mpota/bridge/homeassistant/porch/app/state");
    assert.equal(config.command_topic, "mpota/bridge/homeassistant/porch/app/install");
    assert.equal(config.payload_install, "install");
    assert.equal("device_class" in config, false);
    assert.deepEqual(config.device, firmware.device);
    assert.deepEqual(config.availability, firmware.availability);
  });

  test("installed = the app's version, latest = the newest release of its name for the device's board", async () => {
    await eventually(() => entity("hall").installed_version && entity("porch").installed_version, "states");
    assert.deepEqual(entity("hall"), {
      installed_version: "1.0",
      latest_version: "1.1",
      title: "thermostat",
      in_progress: false,
      update_percentage: null,
      release_summary: "Steadier readings on the ESP8266.",
      release_url: `http://mpota.test:8080/#/apps/${releases.get("1.1")?.id.slice(0, 32)}`,
    });
    // 1.1 is for the ESP8266 only: the ESP32 is offered its own 1.5.
    assert.equal(entity("porch").latest_version, "1.5");
    assert.equal(entity("porch").release_summary, "Humidity too.");
    // The firmware entity is untouched by the app.
    const fw = JSON.parse(
      await eventually(() => last("mpota/bridge/homeassistant/porch/state"), "porch's firmware state"),
    );
    assert.deepEqual([fw.title, fw.installed_version], ["micropython", "1.22"]);
  });

  test("a device without an app has no app entity", async () => {
    await eventually(() => last("ha/update/attic/config"), "attic's firmware entity");
    // Cleared once (a retained one from before would be stale), never published with content.
    assert.equal(last("ha/update/attic/app/config") ?? "", "");
    assert.equal(
      seen.some((m) => m.topic.startsWith("ha/update/attic/app") && m.text !== ""),
      false,
    );
  });

  test("a device on the newest release for its board is offered nothing; a rollback shows its reason", async () => {
    await hall.state(
      appState("hall", "1.1", { rb: { job: "j-77", why: "ImportError: no module named 'sensors'" } }),
    );
    await eventually(() => entity("hall").installed_version === "1.1", "hall on 1.1");
    assert.equal(entity("hall").latest_version, "1.1");
    assert.equal(
      entity("hall").release_summary,
      "The last update (job j-77) was rolled back: ImportError: no module named 'sensors'",
    );
    assert.equal(entity("hall").release_url, "http://mpota.test:8080/#/device/hall");
  });

  test("install on the app entity of a device on its newest release changes nothing", async () => {
    const before = seen.length;
    await watcher.publishAsync("mpota/bridge/homeassistant/hall/app/install", "install", { qos: 1 });
    await watcher.publishAsync("mpota/bridge/homeassistant/hall/app/install", "please", { qos: 1 });
    // The firmware entity's refresh after its own ignored install is the sign the server has read both.
    await watcher.publishAsync("ha/status", "online", { qos: 1 });
    await eventually(
      () => seen.slice(before).some((m) => m.topic === "ha/update/hall/app/config"),
      "republish",
    );
    assert.equal(await s.server.storage.jobs.activeForDevice("hall"), undefined);
  });

  test("the app entity is removed (empty retained config and state) when the device stops reporting an app", async () => {
    await hall.state({ v: 2, fw: imageIdentity(FW), ip: "127.0.0.1" });
    await eventually(() => last("ha/update/hall/app/config") === "", "app config removed");
    await eventually(() => last("mpota/bridge/homeassistant/hall/app/state") === "", "app state removed");
    // The firmware entity stays.
    assert.notEqual(last("ha/update/hall/config") ?? "", "");
    // A new subscriber (Home Assistant restarting) gets no retained app entity for hall.
    const late = await connectAsync(s.url, { clientId: `late-${Math.random().toString(16).slice(2)}` });
    const retained: string[] = [];
    late.on("message", (topic, payload) => {
      if (payload.length > 0) retained.push(topic);
    });
    await late.subscribeAsync(["ha/update/+/app/config"], { qos: 1 });
    await eventually(() => retained.includes("ha/update/porch/app/config"), "porch's retained app config");
    assert.equal(retained.includes("ha/update/hall/app/config"), false);
    await late.endAsync();
  });

  test("install creates a job for the newest release of the app for the device's board; the entity follows it to the end", async () => {
    await watcher.publishAsync("mpota/bridge/homeassistant/porch/app/install", "install", { qos: 1 });
    const job = await eventually(() => s.server.storage.jobs.activeForDevice("porch"), "the app job");
    assert.equal(job.firmwareId, releases.get("1.5")?.id.slice(0, 32));
    assert.deepEqual([job.firmwareName, job.firmwareVersion], ["thermostat", "1.5"]);
    await eventually(() => entity("porch").in_progress === true, "in progress on the app entity");
    // The firmware entity does not show the app's job as its own.
    // (published again on Home Assistant's birth message, from the records as they are now).
    const mark = seen.length;
    await watcher.publishAsync("ha/status", "online", { qos: 1 });
    const firmwareState = await eventually(
      () => seen.slice(mark).find((m) => m.topic === "mpota/bridge/homeassistant/porch/state"),
      "porch's firmware state again",
    );
    assert.equal(JSON.parse(firmwareState.text).in_progress, false);
    // The board gets the signed app command for that release, fetches, reports half, then the switch.
    const command = (await porch.command(
      (c) => c !== "" && (c as { op: string }).op === "app",
    )) as unknown as {
      job: string;
      sha: string;
      ver: string;
    };
    const m = releases.get("1.5") as SignedAppManifest;
    assert.deepEqual([command.job, command.sha, command.ver], [job.id, m.id, "1.5"]);
    await porch.ack({ job: job.id, ready: true, pull: true });
    await porch.ack({ job: job.id, got: Math.floor(m.total / 2), total: m.total, files: 0, of: 1 });
    await eventually(() => entity("porch").update_percentage === 50, "50 % on the app entity");
    await porch.ack({ job: job.id, got: m.total, total: m.total, files: 1, of: 1, done: true });
    await porch.state(appState("porch", "1.5"));
    await eventually(
      () => entity("porch").installed_version === "1.5" && entity("porch").in_progress === false,
      "the app entity on 1.5, the job over",
    );
    assert.equal(entity("porch").latest_version, "1.5");
    assert.equal((await s.server.storage.jobs.get(job.id))?.phase, "succeeded");
  });
});
