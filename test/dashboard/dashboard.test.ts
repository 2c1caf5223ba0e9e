import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { Browser, Page } from "playwright-core";
import { SimulatedDevice } from "../../src/simulator/simulated-device.ts";
import { call, type HttpTestServer, startHttpServer } from "../http/support.ts";
import { FAST_TIMINGS, tempDir, testKey, withCredentials } from "../server/support/test-server.ts";
import { eventually } from "../server/support/wait.ts";
import { addressPool, FAST, SHORT_GPIO } from "../simulator/support.ts";
import { buildMicroPythonImage, imageIdentity } from "../support/images.ts";
import { launchChromium, type PageGlobals, SKIP, screenshot } from "./support.ts";

// A user in real headless Chromium against the real server (embedded Aedes,
// SQLite) and simulated devices running the real MicroPython agent. Every
// assertion is on what the page shows.

const V1 = buildMicroPythonImage({ size: 48 * 1024, seed: 81 });
const V2 = buildMicroPythonImage({ size: 52 * 1024, seed: 82 });
const NORMAL = buildMicroPythonImage({ size: 48 * 1024, seed: 83, ota: false });
const LAMP = buildMicroPythonImage({ size: 40 * 1024, seed: 84 });
const LAMP_NORMAL = buildMicroPythonImage({ size: 40 * 1024, seed: 85, ota: false });

describe("dashboard in headless Chromium", { skip: SKIP }, () => {
  const data = tempDir("mpota-dashboard-");
  const files = tempDir("mpota-dashboard-files-");
  const nextAddress = addressPool();
  const devices: SimulatedDevice[] = [];
  let s: HttpTestServer;
  let browser: Browser;
  let page: Page;

  before(async () => {
    s = await startHttpServer(
      data.dir,
      {},
      {
        timings: { ...FAST_TIMINGS, firstAnswerMs: 8000, verifyTimeoutMs: 8000, leaseMs: 5000 },
        maxAttempts: 2,
      },
    );
    const v1 = await call(s, "POST", "/api/v1/firmware?name=sensor&version=1.0&notes=First%20release", {
      body: V1,
      headers: { "content-type": "application/octet-stream" },
    });
    assert.equal(v1.status, 201, JSON.stringify(v1.body));
    const make = async (id: string, sleepSeconds: number, agent = {}) => {
      // Each device logs in with its own credential, as one provisioned with `mpota devices add`.
      const login = await s.provision(id);
      const d = new SimulatedDevice({
        id,
        address: nextAddress(),
        broker: withCredentials(s.brokerUrl, login.username, login.password),
        key: testKey,
        firmware: V1,
        sleepSeconds,
        timing: FAST,
        settings: SHORT_GPIO,
        agent: { vbat: 3.1, ...(login.config ? { config: login.config } : {}), ...agent },
      });
      devices.push(d);
      return d.start();
    };
    await Promise.all([make("hall", 0), make("garden", 6), make("cellar", 0, { vbat: 2.9, minVbat: 3.3 })]);
    await eventually(
      async () => (await call(s, "GET", "/api/v1/devices")).body.length === 3,
      "three devices registered",
      30_000,
    );
    // An agent of contract v1 cannot verify signed commands: the server updates it only when allowed.
    for (const d of (await call(s, "GET", "/api/v1/devices")).body as Array<{ id: string; v: number }>) {
      if (d.v !== 1) continue;
      const allowed = await call(s, "POST", `/api/v1/devices/${d.id}/allow-unsigned`, {
        json: { allow: true },
      });
      assert.equal(allowed.status, 200, JSON.stringify(allowed.body));
    }
    writeFileSync(join(files.dir, "firmware.bin"), NORMAL);
    writeFileSync(join(files.dir, "firmware-ota.bin"), V2);
    browser = await launchChromium();
    page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  });
  after(async () => {
    await browser?.close();
    await Promise.all(devices.map((d) => d.stop()));
    await s?.stop();
    data.remove();
    files.remove();
  });

  const shot = (name: string) => screenshot(page, name);

  test("log in: a wrong token is refused, the right one shows the fleet", async () => {
    await page.goto(s.base);
    await page.getByLabel("Admin token").fill("not-the-token");
    await page.getByRole("button", { name: "Log in" }).click();
    await page.getByText("That is not the admin token").waitFor();
    await page.getByLabel("Admin token").fill(s.token);
    await page.getByRole("button", { name: "Log in" }).click();
    const rows = page.locator("table.devices tbody tr");
    await eventually(async () => (await rows.count()) === 3, "three rows");
    const hall = page.locator('tr[data-device="hall"]');
    assert.match((await hall.textContent()) ?? "", /online/);
    assert.match((await hall.textContent()) ?? "", /sensor 1\.0/);
    assert.match((await hall.textContent()) ?? "", /3\.10 V/);
    await page
      .locator('tr[data-device="garden"]')
      .getByText(/sleeping, next wake in \d+ s/)
      .waitFor({ timeout: 15_000 });
    await page.getByLabel("Filter devices").fill("gard");
    await eventually(async () => (await rows.count()) === 1, "filtered to one row");
    await page.getByLabel("Filter devices").fill("");
  });

  test("upload: a normal build is refused with the reason; the OTA build is added", async () => {
    await page.goto(`${s.base}/#/firmware`);
    await page.locator('input[type="file"]').setInputFiles(join(files.dir, "firmware.bin"));
    await page.getByLabel("Name").fill("sensor");
    await page.getByLabel("Version").fill("2.0");
    await page.getByRole("button", { name: "Check and add" }).click();
    const refused = page.locator(".result.refused");
    await refused.waitFor();
    assert.match((await refused.textContent()) ?? "", /Refused; nothing was stored/);
    assert.match((await refused.textContent()) ?? "", /normal MicroPython build, not an OTA build/);
    await shot("dashboard-upload-refused.png");
    await page.locator('input[type="file"]').setInputFiles(join(files.dir, "firmware-ota.bin"));
    await page.getByLabel("Release notes").fill("Faster wake-up.");
    await page.getByRole("button", { name: "Check and add" }).click();
    await page.getByText(`Added sensor 2.0 (${imageIdentity(V2)})`).waitFor();
    await page.locator(`tr[data-firmware="${imageIdentity(V2)}"]`).waitFor();
    await shot("dashboard-firmware.png");
    await page.goto(`${s.base}/#/devices`);
    await page.locator('tr[data-device="hall"]').getByText("2.0 available").waitFor();
    await shot("dashboard-devices.png");
  });

  test("update an always-on device: the progress bar reaches done and the device shows the new firmware", async () => {
    await page.goto(`${s.base}/#/device/hall`);
    await page.getByRole("button", { name: "Update hall" }).click();
    const job = page.locator(".jobs .job").first();
    await job.locator(".job-state", { hasText: "done" }).waitFor({ timeout: 45_000 });
    assert.equal(await job.locator(".bar-text").textContent(), "100%");
    await page.locator(".facts").getByText("sensor 2.0").waitFor({ timeout: 15_000 });
    await page
      .locator(".timeline")
      .getByText(/Device reports sensor 2\.0 .*: updated\./)
      .waitFor({ timeout: 15_000 });
    await shot("dashboard-device.png");
  });

  test("a sleepy device is scheduled, waits for its wake, then is done", async () => {
    await page.goto(`${s.base}/#/device/garden`);
    // Click just after it fell asleep (6 s sleeps): a click while it is awake, or about to wake,
    // sends the command at once and "scheduled, waiting for wake" is never shown.
    await page
      .locator(".device-status", { hasText: /sleeping, next wake in [4-6] s/ })
      .waitFor({ timeout: 30_000 });
    await page.getByRole("button", { name: "Update garden" }).click();
    await page.getByText("scheduled, waiting for wake").first().waitFor();
    const job = page.locator(".jobs .job").first();
    await job.locator(".job-state", { hasText: "done" }).waitFor({ timeout: 45_000 });
    await page.locator(".facts").getByText("sensor 2.0").waitFor({ timeout: 15_000 });
  });

  test("a failed job shows its reason", async () => {
    await page.goto(`${s.base}/#/device/cellar`);
    await page.getByRole("button", { name: "Update cellar" }).click();
    const job = page.locator(".jobs .job").first();
    await job.locator(".job-state", { hasText: "failed" }).waitFor({ timeout: 30_000 });
    assert.match((await job.locator(".job-error").textContent()) ?? "", /battery low/);
    await shot("dashboard-failed-job.png");
  });
  /** Drags `bytes` as a file named `name` over the drop zone and drops it, as a file manager would. */
  const drop = async (name: string, bytes: Uint8Array) => {
    const zone = page.locator(".dropzone");
    const transfer = await page.evaluateHandle(
      ({ name, base64 }) => {
        const { atob, DataTransfer, File } = globalThis as unknown as PageGlobals;
        const raw = atob(base64);
        const data = new Uint8Array(raw.length);
        for (let i = 0; i < raw.length; i++) data[i] = raw.charCodeAt(i);
        const t = new DataTransfer();
        t.items.add(new File([data], name, { type: "application/octet-stream" }));
        return t;
      },
      { name, base64: Buffer.from(bytes).toString("base64") },
    );
    await zone.dispatchEvent("dragenter", { dataTransfer: transfer });
    await zone.dispatchEvent("dragover", { dataTransfer: transfer });
    await page.locator(".dropzone.over").waitFor();
    await zone.dispatchEvent("drop", { dataTransfer: transfer });
    await page.locator(".dropzone:not(.over) .chosen", { hasText: name }).waitFor();
  };

  test("drag and drop: a dropped normal build is refused with its reason, a dropped OTA build is stored", async () => {
    await page.goto(`${s.base}/#/firmware`);
    const before = (await call(s, "GET", "/api/v1/firmware")).body.length;
    await drop("lamp-normal.bin", LAMP_NORMAL);
    assert.match((await page.locator(".dropzone").textContent()) ?? "", /lamp-normal\.bin \(40\.0 KiB\)/);
    await page.getByLabel("Name").fill("lamp");
    await page.getByLabel("Version").fill("1.0");
    await page.getByRole("button", { name: "Check and add" }).click();
    const refused = page.locator(".result.refused");
    await refused.waitFor();
    assert.match((await refused.textContent()) ?? "", /Refused; nothing was stored/);
    assert.match((await refused.textContent()) ?? "", /normal MicroPython build, not an OTA build/);
    assert.equal((await call(s, "GET", "/api/v1/firmware")).body.length, before, "nothing stored");

    await drop("lamp-ota.bin", LAMP);
    await page.getByLabel("Release notes").fill("Dims at night.");
    await page.getByRole("button", { name: "Check and add" }).click();
    await page.getByText(`Added lamp 1.0 (${imageIdentity(LAMP)})`).waitFor();
    const row = page.locator(`tr[data-firmware="${imageIdentity(LAMP)}"]`);
    await row.waitFor();
    assert.match((await row.textContent()) ?? "", /lamp1\.0.*40\.0 KiB.*Dims at night\./);

    // Home Assistant's release link opens the store with this firmware marked.
    await page.goto(`${s.base}/#/firmware/${imageIdentity(LAMP)}`);
    await page.locator(`tr.selected[data-firmware="${imageIdentity(LAMP)}"]`).waitFor();
    assert.equal(await page.locator("table.firmware tr.selected").count(), 1);
  });
});
