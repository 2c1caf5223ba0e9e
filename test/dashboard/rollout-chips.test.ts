import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { Browser, Page } from "playwright-core";
import { defaultAppKeyPath, loadAppKey } from "../../src/apps/app-key.ts";
import { BridgeClient } from "../../src/server/bridge/bridge-client.ts";
import { call, type HttpTestServer, startHttpServer } from "../http/support.ts";
import { MqttDevice } from "../server/support/mqtt-device.ts";
import { tempDir } from "../server/support/test-server.ts";
import { eventually } from "../server/support/wait.ts";
import { addAppRelease, twentyFiles } from "../support/app-releases.ts";
import { buildEsp32AppImage } from "../support/esp32-image.ts";
import { buildMicroPythonImage } from "../support/images.ts";
import { launchChromium, logIn, SKIP } from "./support.ts";

// The New rollout form in headless Chromium over a fleet of an ESP8266, an ESP32 and a Pico W
// (app updates only), scripted: for the chosen release it offers only the devices whose chip the
// release's kind serves (the release view's `chips`) and lists the others with the reason; a
// rollout naming one anyway is refused by the server, and the page shows the server's words.

const ESP8266_IMAGE = buildMicroPythonImage({ size: 40 * 1024, seed: 181 });
const ESP32_IMAGE = buildEsp32AppImage({ size: 120_000, seed: 182 });

describe("the New rollout form offers only devices the chosen release can go to", { skip: SKIP }, () => {
  const data = tempDir("mpota-dashboard-rollout-chips-");
  let s: HttpTestServer;
  let bridge: BridgeClient;
  let browser: Browser;
  let page: Page;
  const devices: MqttDevice[] = [];
  const ids = new Map<string, string>();

  const offered = () =>
    page
      .locator("#rollout-known-devices option")
      .evaluateAll((options) => options.map((o) => (o as unknown as { value: string }).value));
  const notEligible = async () =>
    (await page.locator(".rollout-form .not-eligible li").allTextContents()).map((t) => t.trim());
  const choose = async (release: string) => {
    await page.locator('select[name="firmware"]').selectOption(ids.get(release) as string);
  };

  before(async () => {
    s = await startHttpServer(data.dir);
    await s.server.library.add({ bytes: ESP8266_IMAGE, name: "board", version: "2.0" });
    await s.server.library.add({ bytes: ESP32_IMAGE, name: "board32", version: "1.0" });
    bridge = await BridgeClient.connect({ connection: { url: s.url } });
    const key = loadAppKey(defaultAppKeyPath(data.dir), { create: true });
    await addAppRelease(bridge, key, "thermostat", "1.0.0", twentyFiles("1.0.0"), [
      "rp2",
      "esp32",
      "esp8266",
    ]);
    const states = {
      hall: { v: 3 as const, fw: "0123456789abcdef0123456789abcdef", ip: "127.0.0.1", chip: "esp8266" },
      porch: {
        v: 3 as const,
        fw: "fedcba9876543210fedcba9876543210",
        ip: "127.0.0.1",
        chip: "esp32",
        slot: 0x180000,
        run: "ota_0",
      },
      pico: {
        v: 3 as const,
        fw: "00112233445566778899aabbccddeeff",
        ip: "127.0.0.1",
        chip: "rp2",
        app: { board: "rp2", free: 800_000 },
      },
    };
    for (const [id, state] of Object.entries(states)) {
      const device = await MqttDevice.connect(s.url, id);
      devices.push(device);
      await device.state(state);
    }
    await eventually(
      async () =>
        (await s.server.storage.devices.list()).filter((d) => d.state?.chip !== undefined).length === 3,
      "three devices with their chips",
    );
    const list = (await call(s, "GET", "/api/v1/firmware")).body;
    for (const f of (Array.isArray(list) ? list : list.items) as Array<{ id: string; name: string }>) {
      ids.set(f.name, f.id);
    }
    assert.equal(ids.size, 3, "three releases");
    browser = await launchChromium();
    page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
    await logIn(page, s);
    await page.goto(`${s.base}/#/rollouts`);
    await page.getByRole("button", { name: "New rollout" }).click();
    await page.locator('select[name="firmware"]').waitFor();
  });
  after(async () => {
    await browser?.close();
    await bridge?.close();
    for (const device of devices) await device.close();
    await s?.stop();
    data.remove();
  });

  test("an ESP8266 release: only the ESP8266 is offered; the ESP32 and the Pico W are listed with the reason", async () => {
    await choose("board");
    await page.locator(".rollout-form .not-eligible").waitFor();
    assert.deepEqual(await offered(), ["hall"]);
    assert.equal(
      (await page.locator(".rollout-form .not-eligible summary").textContent())?.trim(),
      "2 devices not eligible for board 2.0",
    );
    assert.deepEqual(await notEligible(), [
      "pico: its chip is rp2; board 2.0 is for esp8266 only",
      "porch: its chip is esp32; board 2.0 is for esp8266 only",
    ]);
  });

  test("naming the Pico W anyway warns on the page, and the server refuses the rollout in its own words", async () => {
    await choose("board");
    await page.locator('input[name="devices"]').fill("hall, pico");
    assert.equal(
      (await page.locator(".rollout-form .field-warning").textContent())?.trim(),
      "pico cannot take board 2.0: the server will refuse this rollout. Leave it out.",
    );
    await page.getByRole("button", { name: "Create rollout" }).click();
    const refused = page.locator(".rollout-form .result.refused pre");
    await refused.waitFor();
    assert.equal(
      (await refused.textContent())?.trim(),
      "Refused: board 2.0 for pico: the device is a Raspberry Pi Pico W (rp2), which takes app updates only: mpota does not update its firmware. Update its app with an app release (mpota update <device> <app>@<version>); flash its MicroPython by USB. Leave it out of the list.",
    );
    const rollouts = (await call(s, "GET", "/api/v1/rollouts")).body;
    assert.deepEqual(Array.isArray(rollouts) ? rollouts : rollouts.items, [], "no rollout was made");
    await page.locator('input[name="devices"]').fill("");
    assert.equal(await page.locator(".rollout-form .field-warning").count(), 0);
  });

  test("an ESP32 release offers the ESP32 only; an app release offers every device", async () => {
    await choose("board32");
    await eventually(async () => (await offered()).join() === "porch", "the ESP32 offered alone");
    const reasons = await notEligible();
    assert.equal(reasons.length, 2);
    assert.match(
      reasons[0] ?? "",
      /^hall: its chip is esp8266; board32 1\.0 is for esp32(, esp32\w+)* only$/,
    );
    assert.match(reasons[1] ?? "", /^pico: its chip is rp2; board32 1\.0 is for esp32(, esp32\w+)* only$/);
    await choose("thermostat");
    await eventually(async () => (await offered()).join() === "hall,pico,porch", "every device offered");
    assert.equal(await page.locator(".rollout-form .not-eligible").count(), 0);
  });
});
