import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { isDeepStrictEqual } from "node:util";
import { MqttDevice } from "../server/support/mqtt-device.ts";
import { tempDir } from "../server/support/test-server.ts";
import { eventually } from "../server/support/wait.ts";
import { buildEsp32AppImage, buildMergedFirmware, esp32Identity } from "../support/esp32-image.ts";
import { buildMicroPythonImage } from "../support/images.ts";
import { call, type HttpTestServer, startHttpServer } from "./support.ts";

// A build as large as upstream's v1.20-era ESP32_GENERIC (1,558,512 bytes), close to the 1.5 MiB slot.
const ESP32 = buildEsp32AppImage({ size: 1_558_512, seed: 81, banner: "v1.27.0 on 2025-12-09" });
const ESP32_ID = esp32Identity({ seed: 81 }).slice(0, 32);
const S3 = buildEsp32AppImage({ size: 300_000, seed: 82, chipId: 9, banner: "v1.27.0 on 2025-12-09" });
const ESP8266 = buildMicroPythonImage({ size: 40 * 1024, seed: 83 });
const octets = { "content-type": "application/octet-stream" };

describe("ESP32 app images in the release store (HTTP upload)", () => {
  const data = tempDir("mpota-esp32-");
  let s: HttpTestServer;
  let dev: MqttDevice;

  before(async () => {
    s = await startHttpServer(data.dir);
  });
  after(async () => {
    await dev?.close();
    await s.stop();
    data.remove();
  });

  test("an ESP32 micropython.bin is stored by its ELF SHA-256, with its chip and MicroPython version", async () => {
    const r = await call(s, "POST", "/api/v1/firmware?name=board&version=1.0&filename=micropython.bin", {
      body: ESP32,
      headers: octets,
    });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    assert.equal(r.body.firmware.id, ESP32_ID);
    assert.equal(r.body.firmware.size, 1_558_512);
    assert.equal(r.body.firmware.build, "esp32");
    assert.equal(r.body.firmware.micropython, "v1.27.0");
    const checks = r.body.verdicts.map((v: { check: string; level: string }) => `${v.check} ${v.level}`);
    assert.deepEqual(checks, [
      "file-kind ok",
      "chip ok",
      "app-desc ok",
      "segments ok",
      "checksum ok",
      "sha256 ok",
      "slot-size ok",
    ]);
    assert.ok(readdirSync(join(data.dir, "firmware")).includes(`${ESP32_ID}.bin`));
    const s3 = await call(s, "POST", "/api/v1/firmware?name=board-s3&version=1.0", {
      body: S3,
      headers: octets,
    });
    assert.equal(s3.status, 201);
    assert.equal(s3.body.firmware.build, "esp32s3");
    const list = (await call(s, "GET", "/api/v1/firmware")).body as Array<{ id: string; build: string }>;
    assert.deepEqual(list.map((f) => f.build).sort(), ["esp32", "esp32s3"]);
  });

  test("a merged firmware.bin is refused with the file to use, and nothing is stored", async () => {
    const r = await call(s, "POST", "/api/v1/firmware?name=board&version=1.1&filename=firmware.bin", {
      body: buildMergedFirmware(buildEsp32AppImage({ size: 200_000, seed: 84 })),
      headers: octets,
    });
    assert.equal(r.status, 400);
    assert.match(
      r.body.error,
      /^firmware\.bin must not go to this device:\n- firmware\.bin is a merged firmware\.bin for ESP32 \(bootloader at 0x1000, partition table at 0x8000, app at 0x10000\).*Use micropython\.bin from the same build \(published on micropython\.org as the \.app-bin file\)\./s,
    );
    assert.deepEqual(
      r.body.verdicts.map((v: { check: string; level: string }) => `${v.check} ${v.level}`),
      ["file-kind refusal"],
    );
    const big = await call(s, "POST", "/api/v1/firmware?name=board&version=1.2&filename=big.bin", {
      body: buildEsp32AppImage({ size: 1_712_512, seed: 85 }),
      headers: octets,
    });
    assert.equal(big.status, 400);
    assert.match(
      big.body.error,
      /1,712,512 bytes \(1\.63 MiB\) is larger than the app slot by 139,648 bytes \(136\.4 KiB\): it cannot be written there\. The slot \(.*\) holds 1,572,864 bytes \(1\.50 MiB\)\./,
    );
    assert.equal((await call(s, "GET", "/api/v1/firmware")).body.length, 2);
  });

  test("a release goes only to devices of its chip", async () => {
    const added = await call(s, "POST", "/api/v1/firmware?name=sensor&version=2.0", {
      body: ESP8266,
      headers: octets,
    });
    assert.equal(added.status, 201);
    dev = await MqttDevice.connect(s.url, "garden");
    await dev.state({ fw: ESP32_ID, ip: "127.0.0.1", rssi: -60, sleep: 0 });
    await dev.status("online");
    await eventually(
      async () => (await s.server.storage.devices.get("garden"))?.state?.fw === ESP32_ID,
      "state",
    );
    const device = (await call(s, "GET", "/api/v1/devices/garden")).body;
    assert.equal(device.firmware.name, "board");
    const wrongChip = await call(s, "POST", "/api/v1/update", {
      json: { device: "garden", firmware: "sensor@2.0" },
    });
    assert.equal(wrongChip.status, 400);
    assert.equal(
      wrongChip.body.error,
      "Device garden runs board 1.0, built for esp32; sensor 2.0 is built for esp8266, which the device cannot run. Pick a release built for esp32.",
    );
    const s3 = await call(s, "POST", "/api/v1/update", {
      json: { device: "garden", firmware: "board-s3@1.0" },
    });
    assert.equal(s3.status, 400);
    assert.equal(
      s3.body.error,
      "Device garden runs board 1.0, built for esp32; board-s3 1.0 is built for esp32s3, which the device cannot run. Pick a release built for esp32.",
    );
  });

  test("what a device reports decides whether it can take an ESP32 release (contract v3: chip and slot)", async () => {
    const next = buildEsp32AppImage({ size: 400_000, seed: 86, banner: "v1.27.0 on 2025-12-09" });
    assert.equal(
      (await call(s, "POST", "/api/v1/firmware?name=board&version=1.1", { body: next, headers: octets }))
        .status,
      201,
    );
    // A device whose running firmware the store does not know: only what it reports speaks for it.
    const lab = await MqttDevice.connect(s.url, "lab");
    const unknownFw = "ab".repeat(16);
    const update = async (state: Record<string, unknown>, firmware = "board@1.1") => {
      await lab.publish("state", JSON.stringify({ fw: unknownFw, ip: "127.0.0.1", ...state }));
      await eventually(
        async () =>
          isDeepStrictEqual((await s.server.storage.devices.get("lab"))?.state, {
            ...state,
            fw: unknownFw,
            ip: "127.0.0.1",
          }),
        "lab's state",
      );
      return call(s, "POST", "/api/v1/update", { json: { device: "lab", firmware } });
    };
    const v3 = { v: 3, seq: 0, chip: "esp32", slot: 0x180000, run: "ota_0" };
    const cases: Array<[Record<string, unknown>, string, string?]> = [
      [
        { v: 2, seq: 0 },
        "board 1.1 for lab: the device reports contract v2 without its chip, so it cannot fetch an ESP32 image into its other slot. Install the current agent (device/ of mpota, contract v3) on it first; an ESP8266 cannot run an ESP32 image at all.",
      ],
      [
        { ...v3, chip: "esp32s3" },
        "board 1.1 for lab: the image is built for ESP32, the device reports esp32s3. Pick a release built for ESP32-S3.",
      ],
      [
        { ...v3, slot: 0, run: "factory" },
        "board 1.1 for lab: the device has no second app slot: reflash it with the OTA variant (ESP32_GENERIC-OTA's firmware.bin by serial, `mpota flash-plan`) to update it over the air.",
      ],
      [
        { ...v3, slot: 0x40000 },
        "board 1.1 for lab: the image of 400000 bytes does not fit the device's app slot of 262144 bytes. Build a smaller image, or give the device a partition table with larger app slots.",
      ],
      [
        v3,
        "sensor 2.0 for lab: the release is built for esp8266, the device reports esp32. Pick a release built for esp32.",
        "sensor@2.0",
      ],
    ];
    for (const [state, error, firmware] of cases) {
      const r = await update(state, firmware);
      assert.equal(r.status, 400, JSON.stringify(state));
      assert.equal(r.body.error, error);
    }
    await lab.close();
    assert.deepEqual((await call(s, "GET", "/api/v1/jobs")).body, []);
  });
});
