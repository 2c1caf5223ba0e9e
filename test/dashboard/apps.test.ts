import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { Browser, Page } from "playwright-core";
import { call, type HttpTestServer, startHttpServer } from "../http/support.ts";
import { MqttDevice } from "../server/support/mqtt-device.ts";
import { tempDir } from "../server/support/test-server.ts";
import { eventually } from "../server/support/wait.ts";
import { buildMicroPythonImage, imageIdentity } from "../support/images.ts";
import { buildZip } from "../support/zip-writer.ts";
import { launchChromium, logIn, SKIP, screenshot } from "./support.ts";

// App releases in headless Chromium: the app per device in the list and on its page, the Apps page
// with its upload of a zipped folder (checked and signed by the server), a rollback's reason.
const FW = buildMicroPythonImage({ size: 40 * 1024, seed: 61 });
const MAIN = Buffer.from('import sensors\nprint("thermostat")\n');
const SENSORS = Buffer.from(`# sensors\n${"READINGS = []\n".repeat(300)}`);

describe("the dashboard's app releases", { skip: SKIP }, () => {
  const data = tempDir("mpota-dashboard-apps-");
  const files = tempDir("mpota-dashboard-apps-files-");
  let s: HttpTestServer;
  let browser: Browser;
  let page: Page;
  let hall: MqttDevice;
  let attic: MqttDevice;
  let v1: { id: string; sha256: string };
  const text = async (selector: string) => (await page.locator(selector).first().textContent())?.trim();
  const hallState = (extra: Record<string, unknown> = {}) => ({
    v: 3 as const,
    fw: imageIdentity(FW),
    ip: "127.0.0.1",
    chip: "esp8266",
    app: { name: "thermostat", ver: "1.0", id: v1.sha256, board: "esp8266", mpy: 6, free: 150_000, ...extra },
  });

  before(async () => {
    s = await startHttpServer(data.dir);
    await s.server.library.add({ bytes: FW, name: "micropython", version: "1.22" });
    const zip = buildZip([
      { name: "thermostat/main.py", data: MAIN },
      { name: "thermostat/sensors.py", data: SENSORS },
    ]);
    const added = await call(s, "POST", "/api/v1/apps/zip?name=thermostat&version=1.0&boards=esp8266", {
      body: zip,
      headers: { "content-type": "application/zip" },
    });
    assert.equal(added.status, 201, JSON.stringify(added.body));
    v1 = added.body.app;
    hall = await MqttDevice.connect(s.url, "hall");
    await hall.state(hallState());
    attic = await MqttDevice.connect(s.url, "attic");
    await attic.state({ fw: imageIdentity(FW), ip: "127.0.0.1" });
    await eventually(async () => (await call(s, "GET", "/api/v1/devices")).body.length === 2, "both devices");
    writeFileSync(
      join(files.dir, "thermostat-1.1.zip"),
      buildZip([
        { name: "thermostat/" },
        { name: "thermostat/main.py", data: MAIN },
        { name: "thermostat/sensors.py", data: Buffer.concat([SENSORS, Buffer.from("HUMIDITY = True\n")]) },
        { name: "thermostat/lib/" },
        { name: "thermostat/lib/display.py", data: Buffer.from("def show(t):\n    print(t)\n") },
      ]),
    );
    writeFileSync(
      join(files.dir, "evil.zip"),
      buildZip([
        { name: "main.py", data: MAIN },
        { name: "boot.py", data: Buffer.from("import evil\n") },
      ]),
    );
    browser = await launchChromium();
    page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
    await logIn(page, s);
  });
  after(async () => {
    await browser?.close();
    await hall?.close();
    await attic?.close();
    await s?.stop();
    data.remove();
    files.remove();
  });

  test("the device list shows each device's app and version; a device without one shows none", async () => {
    await page.goto(`${s.base}/#/devices`);
    await page.locator('tr[data-device="hall"] td.app').getByText("thermostat 1.0").waitFor();
    assert.equal(await text('tr[data-device="attic"] td.app'), "–");
    await page.getByLabel("Filter devices").fill("thermo");
    await eventually(
      async () => (await page.locator("table.devices tbody tr").count()) === 1,
      "filtered by app",
    );
    await page.getByLabel("Filter devices").fill("");
  });

  test("the device page shows the app it runs, its board and room, and no other release to install yet", async () => {
    await page.goto(`${s.base}/#/device/hall`);
    await page.locator("dd.device-app").getByText("thermostat 1.0").waitFor();
    assert.match(
      (await text("dd.app-installed")) ?? "",
      new RegExp(`^thermostat 1\\.0 ${v1.id.slice(0, 8)}`),
    );
    await page.getByText("No other release of thermostat for esp8266 is stored.").waitFor();
  });

  test("upload a zipped folder on the Apps page: checked, signed, listed with its files, bytes, boards and devices", async () => {
    await page.goto(`${s.base}/#/apps`);
    await page.locator(`tr[data-app="${v1.id}"] td.app-devices`).getByText("1").waitFor();
    await page.locator('input[type="file"]').setInputFiles(join(files.dir, "thermostat-1.1.zip"));
    await page.getByLabel("App name").fill("thermostat");
    await page.getByLabel("App version").fill("1.1");
    await page.locator('input[name="board-rp2"]').uncheck();
    await page.getByRole("button", { name: "Check, sign and add" }).click();
    const status = page.getByRole("status");
    await status.getByText(/Added thermostat 1\.1/).waitFor();
    const key = (await call(s, "GET", "/api/v1/apps")).body[0].kid as string;
    assert.match(
      (await status.textContent()) ?? "",
      new RegExp(
        `Added thermostat 1\\.1: 3 files, [0-9.]+ KiB, for esp32, esp8266; signed with app key ${key}\\.`,
      ),
    );
    const row = (await call(s, "GET", "/api/v1/apps")).body.find(
      (a: { version: string }) => a.version === "1.1",
    );
    const cells = async (id: string) =>
      Promise.all(
        ["app-name", "app-version", "app-files", "app-boards", "app-devices"].map((c) =>
          text(`tr[data-app="${id}"] td.${c}`),
        ),
      );
    await page.locator(`tr[data-app="${row.id}"]`).waitFor();
    assert.deepEqual(await cells(row.id), ["thermostat", "1.1", "3", "esp32, esp8266", "0"]);
    assert.deepEqual(await cells(v1.id), ["thermostat", "1.0", "2", "esp8266", "1"]);
    assert.equal(
      await page.locator(`tr[data-app="${row.id}"] td.app-bytes`).getAttribute("title"),
      `${row.bytes} bytes`,
    );
    await screenshot(page, "dashboard-apps.png");
    // App releases are not offered as firmware.
    await page.goto(`${s.base}/#/firmware`);
    await page.locator("table.firmware tbody tr").first().waitFor();
    assert.equal(await page.locator(`tr[data-firmware="${row.id}"]`).count(), 0);
  });

  test("a zip holding boot.py is refused with the reason, and nothing is listed", async () => {
    await page.goto(`${s.base}/#/apps`);
    await page.locator('input[type="file"]').setInputFiles(join(files.dir, "evil.zip"));
    await page.getByLabel("App name").fill("evil");
    await page.getByLabel("App version").fill("1.0");
    await page.getByRole("button", { name: "Check, sign and add" }).click();
    const alert = page.getByRole("alert");
    await alert.getByText("Refused; nothing was stored.").waitFor();
    assert.match((await alert.textContent()) ?? "", /boot\.py belongs to the device/);
    assert.equal(await page.locator("table.apps td.app-name", { hasText: "evil" }).count(), 0);
  });

  test("the device page offers the newer release for its board; a rollback shows its reason", async () => {
    await page.goto(`${s.base}/#/device/hall`);
    const picker = page.getByLabel("App release to install");
    await picker.waitFor();
    assert.match((await picker.textContent()) ?? "", /thermostat 1\.1 \(3 files/);
    await hall.state(hallState({ rb: { job: "j-41", why: "ImportError: no module named 'display'" } }));
    await page.getByText("The last app update (job j-41) was rolled back on the device").waitFor();
    assert.equal(await text(".app-rollback .why"), "ImportError: no module named 'display'");
    await page.goto(`${s.base}/#/devices`);
    await page.locator('tr[data-device="hall"] .badge-rollback').waitFor();
  });

  test("an app update from the device page: files and bytes while the board fetches, after a reload too; a rollback fails the job with the loader's reason", async () => {
    await page.goto(`${s.base}/#/device/hall`);
    await page.getByLabel("App release to install").waitFor();
    await page.getByRole("button", { name: "Update app" }).click();
    const command = (await hall.command(
      (c) => c !== "" && (c as { op: string }).op === "app",
    )) as unknown as {
      job: string;
      ver: string;
    };
    assert.equal(command.ver, "1.1");
    const release = (await call(s, "GET", "/api/v1/apps")).body.find(
      (a: { version: string }) => a.version === "1.1",
    );
    await hall.ack({ job: command.job, ready: true, pull: true });
    await hall.ack({ job: command.job, got: 1000, total: release.bytes, files: 1, of: 3 });
    const job = page.locator(`.job[data-job="${command.job}"]`).first();
    const numbers = `1 of 3 files · 1000 B of ${(release.bytes / 1024).toFixed(1)} KiB`;
    await job.locator(".app-numbers").getByText(numbers).waitFor();
    // The stored job has them too (the API's job view), so a page opened now shows them before the
    // board's next report.
    const stored = await eventually(async () => {
      const view = (await call(s, "GET", `/api/v1/jobs/${command.job}`)).body;
      return view.files === 1 ? view : undefined;
    }, "the stored job to count the files");
    assert.deepEqual([stored.files, stored.of, stored.bytes, stored.state], [1, 3, 1000, "pushing"]);
    await page.reload();
    await job.locator(".app-numbers").getByText(numbers).waitFor();
    assert.equal(await job.locator(".job-state").textContent(), "device fetching the changed files");
    assert.equal(await job.locator(".job-target").textContent(), "app thermostat 1.1");
    await hall.ack({
      job: command.job,
      got: release.bytes,
      total: release.bytes,
      files: 3,
      of: 3,
      done: true,
    });
    // The loader gave the new app up: the old one runs and the agent says why.
    const why =
      "rolled back thermostat 1.1: File \"lib/display.py\", line 1: ImportError: no module named 'tm1637'";
    await hall.state(hallState({ rb: { job: command.job, why } }));
    await page.locator(".job-failed .job-error").first().waitFor({ timeout: 15_000 });
    assert.match(
      (await page.locator(".job-failed .job-error").first().textContent()) ?? "",
      /ImportError: no module named 'tm1637'/,
    );
    assert.equal(
      await page.locator(".job-rollback").first().textContent(),
      `Rolled back on the device: ${why}`,
    );
    assert.equal(await text("dd.device-app"), "thermostat 1.0");
  });
});
