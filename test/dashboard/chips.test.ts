import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { Browser, Page } from "playwright-core";
import { call, type HttpTestServer, startHttpServer } from "../http/support.ts";
import { MqttDevice } from "../server/support/mqtt-device.ts";
import { tempDir } from "../server/support/test-server.ts";
import { eventually } from "../server/support/wait.ts";
import { buildEsp32AppImage, esp32Identity } from "../support/esp32-image.ts";
import { buildMicroPythonImage, imageIdentity } from "../support/images.ts";
import { launchChromium, logIn, SKIP } from "./support.ts";

// One line ("board") built for two chips, added in turns so that the newest of the line is always
// the other chip's; an ESP8266 (a v2 agent: its chip known by the firmware it runs) and an ESP32
// (a v3 agent reporting its chip), both scripted, side by side in headless Chromium.
const E1 = buildMicroPythonImage({ size: 40 * 1024, seed: 41 });
const E2 = buildMicroPythonImage({ size: 44 * 1024, seed: 42 });
const S1 = buildEsp32AppImage({ size: 200_000, seed: 31 });
const S3 = buildEsp32AppImage({ size: 210_000, seed: 33 });
const E1_ID = imageIdentity(E1);
const E2_ID = imageIdentity(E2);
const S1_ID = esp32Identity({ seed: 31 }).slice(0, 32);
const S3_ID = esp32Identity({ seed: 33 }).slice(0, 32);

describe("the dashboard with ESP8266 and ESP32 devices side by side", { skip: SKIP }, () => {
  const data = tempDir("mpota-dashboard-chips-");
  let s: HttpTestServer;
  let browser: Browser;
  let page: Page;
  const devices: MqttDevice[] = [];
  const text = async (selector: string) => (await page.locator(selector).first().textContent())?.trim();

  before(async () => {
    s = await startHttpServer(data.dir);
    await s.server.library.add({ bytes: E1, name: "board", version: "1.0" });
    await s.server.library.add({ bytes: S1, name: "board", version: "1.5" });
    await s.server.library.add({ bytes: E2, name: "board", version: "2.0" });
    await s.server.library.add({ bytes: S3, name: "board", version: "3.0" });
    const hall = await MqttDevice.connect(s.url, "hall");
    await hall.state({ fw: E1_ID, ip: "127.0.0.1" });
    const porch = await MqttDevice.connect(s.url, "porch");
    await porch.state({ v: 3, fw: S1_ID, ip: "127.0.0.1", chip: "esp32", slot: 0x180000, run: "ota_0" });
    devices.push(hall, porch);
    await eventually(async () => (await call(s, "GET", "/api/v1/devices")).body.length === 2, "both devices");
    browser = await launchChromium();
    page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
    await logIn(page, s);
  });
  after(async () => {
    await browser?.close();
    for (const device of devices) await device.close();
    await s?.stop();
    data.remove();
  });

  test("the firmware page shows each release's chip; a line's update is offered per chip", async () => {
    await page.goto(`${s.base}/#/firmware`);
    await page.locator(`tr[data-firmware="${S3_ID}"]`).waitFor();
    const chips: Record<string, string | undefined> = {};
    for (const id of [E1_ID, S1_ID, E2_ID, S3_ID])
      chips[id] = await text(`tr[data-firmware="${id}"] td.chip`);
    assert.deepEqual(chips, { [E1_ID]: "esp8266", [S1_ID]: "esp32", [E2_ID]: "esp8266", [S3_ID]: "esp32" });
    // The newest of the line for each chip offers to update that chip's one device behind it.
    assert.equal(await text(`tr[data-firmware="${E2_ID}"] button:not(.danger)`), "Update all on board (1)");
    assert.equal(await text(`tr[data-firmware="${S3_ID}"] button:not(.danger)`), "Update all on board (1)");
    assert.equal(await page.locator(`tr[data-firmware="${E1_ID}"] button:not(.danger)`).count(), 0);
  });

  test("the device list shows each device's chip and offers the newest release for that chip", async () => {
    await page.goto(`${s.base}/#/devices`);
    await page.locator('tr[data-device="porch"] .badge-newer').waitFor();
    assert.equal(await text('tr[data-device="hall"] td.chip'), "esp8266");
    assert.equal(await text('tr[data-device="porch"] td.chip'), "esp32");
    assert.equal(await text('tr[data-device="hall"] .badge-newer'), "2.0 available");
    assert.equal(await text('tr[data-device="porch"] .badge-newer'), "3.0 available");
    assert.equal(await text('tr[data-device="hall"] .update-cell button'), "Update to 2.0");
    assert.equal(await text('tr[data-device="porch"] .update-cell button'), "Update to 3.0");
  });

  test("a device's page shows its chip and its Update offers only releases for that chip", async () => {
    const options = async () =>
      (await page.getByLabel("Firmware to install").locator("option").allTextContents()).map((o) => o.trim());
    await page.goto(`${s.base}/#/device/hall`);
    await page.getByRole("button", { name: "Update hall" }).waitFor();
    assert.equal(await text(".device-chip"), "esp8266");
    assert.deepEqual(await options(), ["board 2.0"]);
    await page.goto(`${s.base}/#/device/porch`);
    await page.getByRole("button", { name: "Update porch" }).waitFor();
    assert.equal(await text(".device-chip"), "esp32");
    assert.deepEqual(await options(), ["board 3.0"]);
  });

  test("Update on the ESP32's row starts a job to the ESP32 release", async () => {
    await page.goto(`${s.base}/#/devices`);
    await page.locator('tr[data-device="porch"] .update-cell button').click();
    const job = await eventually(async () => {
      const jobs = (await call(s, "GET", "/api/v1/jobs")).body;
      return (Array.isArray(jobs) ? jobs : jobs.items)?.find((j: { device: string }) => j.device === "porch");
    }, "a job for porch");
    assert.equal(job.firmware.id, S3_ID);
    assert.equal(job.firmware.version, "3.0");
  });
});
