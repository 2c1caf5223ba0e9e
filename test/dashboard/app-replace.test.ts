import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { Browser, Page, Request } from "playwright-core";
import { call, type HttpTestServer, startHttpServer } from "../http/support.ts";
import { MqttDevice } from "../server/support/mqtt-device.ts";
import { tempDir } from "../server/support/test-server.ts";
import { eventually } from "../server/support/wait.ts";
import { buildMicroPythonImage } from "../support/images.ts";
import { buildZip } from "../support/zip-writer.ts";
import { launchChromium, logIn, SKIP } from "./support.ts";

// The consent to replace a board's app by an app of another name, in the dashboard's New rollout
// form (headless Chromium, real server, Aedes and SQLite; the board is played over contract v3).
// Without the box ticked the server refuses and the page points at the box; ticked, the request
// says replaceApp and the rollout's job says which app it replaces.

const BOX = "Replace another app if a board runs one";

function appZip(app: string): Buffer {
  return buildZip([
    { name: `${app}/main.py`, data: Buffer.from(`# ${app}\nimport core\n`) },
    { name: `${app}/core.py`, data: Buffer.from(`# ${app} core\n${"x = 1\n".repeat(50)}`) },
  ]);
}

describe("the dashboard's consent to replace another app", { skip: SKIP }, () => {
  const data = tempDir("mpota-dashboard-app-replace-");
  let s: HttpTestServer;
  let browser: Browser;
  let page: Page;
  let porch: MqttDevice;
  let lights: { id: string };
  let firmwareId: string;
  /** The bodies and headers of the page's POST /api/v1/rollouts, in order. */
  const creates: Array<{ body: Record<string, unknown>; headers: Record<string, string> }> = [];
  const pending: Promise<void>[] = [];

  const addApp = async (name: string, version: string) => {
    const added = await call(s, "POST", `/api/v1/apps/zip?name=${name}&version=${version}&boards=esp32`, {
      body: appZip(name),
      headers: { "content-type": "application/zip" },
    });
    assert.equal(added.status, 201, JSON.stringify(added.body));
    return added.body.app as { id: string; sha256: string };
  };

  before(async () => {
    s = await startHttpServer(data.dir);
    firmwareId = (
      await s.server.library.add({
        bytes: buildMicroPythonImage({ size: 40 * 1024, seed: 71 }),
        name: "micropython",
        version: "1.22",
      })
    ).record.id;
    const thermostat = await addApp("thermostat", "1.4.0");
    lights = await addApp("lights", "1.0");
    porch = await MqttDevice.connect(s.url, "porch");
    await porch.state({
      v: 3,
      fw: "c".repeat(32),
      ip: "127.0.0.1",
      chip: "esp32",
      app: { name: "thermostat", ver: "1.4.0", id: thermostat.sha256, board: "esp32", mpy: 6, free: 500_000 },
    });
    await eventually(async () => (await call(s, "GET", "/api/v1/devices")).body.length === 1, "porch known");
    browser = await launchChromium();
    page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
    page.setDefaultTimeout(15_000);
    // The headers as sent, cookie included (allHeaders), read before the answer arrives.
    page.on("request", (r: Request) => {
      if (r.method() !== "POST" || new URL(r.url()).pathname !== "/api/v1/rollouts") return;
      const entry = { body: r.postDataJSON(), headers: {} as Record<string, string> };
      creates.push(entry);
      pending.push(
        r.allHeaders().then((h) => {
          entry.headers = h;
        }),
      );
    });
    await logIn(page, s);
  });
  after(async () => {
    await browser?.close();
    await porch?.close();
    await s?.stop();
    data.remove();
  });

  test("a rollout of lights over a board running thermostat is refused, and the page points at the box", async () => {
    await page.goto(`${s.base}/#/rollouts`);
    await page.getByRole("button", { name: "New rollout" }).click();
    const form = page.locator("form.rollout-form");
    // A firmware release replaces no app: no box.
    await form.locator('select[name="firmware"]').selectOption(firmwareId);
    assert.equal(await form.getByLabel(BOX).count(), 0);
    await form.locator('select[name="firmware"]').selectOption(lights.id);
    const box = form.getByLabel(BOX);
    assert.equal(await box.isChecked(), false, "off by default");
    assert.match(
      (await form.locator('label.check:has(input[name="replaceApp"])').textContent()) ?? "",
      /A board that runs an app of another name loses that app: lights takes its place\./,
    );
    await form.getByLabel("Device ids").fill("porch");
    await form.getByRole("button", { name: "Create rollout" }).click();
    const alert = form.getByRole("alert");
    await alert.getByText("Refused; no rollout was created.").waitFor();
    assert.match(
      (await alert.textContent()) ?? "",
      /Refusing to roll out lights 1\.0: it would replace the app of 1 board \(porch runs the app thermostat 1\.4\.0\)\..*To replace those apps, tick “Replace another app if a board runs one” above and create the rollout again; to keep them, leave those boards out\./s,
    );
    assert.equal(creates.length, 1);
    assert.equal("replaceApp" in creates[0].body, false, "not sent while the box is clear");
    // The dashboard's requests still carry the header a cross-site form cannot send, and its session cookie.
    await Promise.all(pending);
    assert.equal(creates[0].headers["x-mpota-request"], "1");
    assert.match(creates[0].headers.cookie ?? "", /(^|; )mpota_session=[^;]+/);
    assert.deepEqual((await call(s, "GET", "/api/v1/rollouts")).body, []);
    assert.deepEqual(
      porch.commands.filter((c) => c !== ""),
      [],
      "no command reached porch",
    );
  });

  test("ticked (by keyboard), the rollout is created with replaceApp and its job says it replaces thermostat", async () => {
    const form = page.locator("form.rollout-form");
    const box = form.getByLabel(BOX);
    await box.focus();
    await page.keyboard.press("Space");
    assert.equal(await box.isChecked(), true);
    await form.getByRole("button", { name: "Create rollout" }).click();
    await page.waitForURL(/#\/rollout\/r-[0-9a-f]+$/);
    assert.equal(creates.length, 2);
    assert.equal(creates[1].body.replaceApp, true);
    await Promise.all(pending);
    assert.equal(creates[1].headers["x-mpota-request"], "1");
    assert.match(creates[1].headers.cookie ?? "", /(^|; )mpota_session=[^;]+/);
    const perDevice = page
      .locator("dl.facts dt", { hasText: "Per device" })
      .locator("xpath=following-sibling::dd[1]");
    await perDevice.getByText(/apps of another name replaced$/).waitFor();
    // The board is told to fetch lights.
    await porch.command((c) => c !== "" && (c as { op: string }).op === "app");
    const row = page.locator('table.rollout-devices tr[data-device="porch"]');
    await eventually(
      async () => /^j-/.test((await row.locator("td").nth(3).textContent()) ?? ""),
      "porch's job",
    );
    await page.goto(`${s.base}/#/device/porch`);
    await page
      .locator("ol.timeline li.step-created")
      .getByText(/It replaces the app thermostat 1\.4\.0, on request \(replaceApp\)\.$/)
      .waitFor();
  });
});
