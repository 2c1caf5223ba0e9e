import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { Browser, Page } from "playwright-core";
import { call, type HttpTestServer, startHttpServer } from "../http/support.ts";
import { MqttDevice } from "../server/support/mqtt-device.ts";
import { tempDir } from "../server/support/test-server.ts";
import { eventually } from "../server/support/wait.ts";
import { buildMicroPythonImage, imageIdentity } from "../support/images.ts";
import { launchChromium, SKIP, screenshot } from "./support.ts";

// Every page at a phone's width (390 CSS pixels, as an iPhone 12 to 15) in
// headless Chromium: nothing makes the page wider than the screen (wide
// tables scroll inside their own box), the header keeps its button on one
// line, and "Log out" shows only where there is a login.

const PHONE = { width: 390, height: 844 };
const V1 = buildMicroPythonImage({ size: 40 * 1024, seed: 91 });
const V2 = buildMicroPythonImage({ size: 44 * 1024, seed: 92 });
const NORTH = "greenhouse-north-sensor-01";
const SOUTH = "greenhouse-south-sensor-02";

interface Width {
  viewport: number;
  scrollWidth: number;
  /** Elements that stick out of the screen, outside a scrolling table box (for the failure message). */
  outside: string[];
}

/** The page's width against the screen's, read in the page. */
const MEASURE_WIDTH = `(() => {
  const viewport = window.innerWidth;
  const outside = [...document.querySelectorAll("body *")]
    .filter((e) => e.getBoundingClientRect().right > viewport + 0.5 && !e.closest(".table-box"))
    .slice(0, 6)
    .map((e) => e.tagName.toLowerCase() + (e.className ? "." + String(e.className).split(" ").join(".") : "") + " right=" + Math.round(e.getBoundingClientRect().right));
  return { viewport, scrollWidth: Math.max(document.documentElement.scrollWidth, document.body.scrollWidth), outside };
})()`;

interface HeaderShape {
  height: number;
  right: number;
  logout: boolean;
  /** Lines the Log out button's text takes. */
  logoutLines: number;
  /** The nav links' lines (1: in one row, scrolling sideways if need be). */
  navRows: number;
}

const MEASURE_HEADER = `(() => {
  const header = document.querySelector("header");
  const button = [...header.querySelectorAll("button")].find((b) => b.textContent.trim() === "Log out");
  let logoutLines = 0;
  if (button) {
    const range = document.createRange();
    range.selectNodeContents(button);
    logoutLines = new Set([...range.getClientRects()].map((r) => Math.round(r.top))).size;
  }
  const rows = new Set([...header.querySelectorAll("nav a")].map((a) => Math.round(a.getBoundingClientRect().top)));
  return {
    height: header.getBoundingClientRect().height,
    right: Math.max(...[...header.children].map((e) => e.getBoundingClientRect().right)),
    logout: Boolean(button),
    logoutLines,
    navRows: rows.size,
  };
})()`;

async function width(page: Page): Promise<Width> {
  return (await page.evaluate(MEASURE_WIDTH)) as Width;
}

async function header(page: Page): Promise<HeaderShape> {
  return (await page.evaluate(MEASURE_HEADER)) as HeaderShape;
}

async function openPage(page: Page, s: HttpTestServer, hash: string, ready: string): Promise<void> {
  await page.goto(`${s.base}/${hash}`);
  await page.locator(ready).first().waitFor({ timeout: 15_000 });
  // Fonts and the live indicator settle; the width is read after layout.
  await page.evaluate("new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))");
}

async function fitsTheScreen(page: Page, what: string): Promise<void> {
  const w = await width(page);
  // A mobile browser widens its layout viewport to a page that is too wide: both must stay at 390.
  assert.ok(
    w.scrollWidth <= PHONE.width && w.viewport === PHONE.width,
    `${what}: the page is ${w.scrollWidth} px wide (layout viewport ${w.viewport} px) on a ${PHONE.width} px screen; sticking out: ${w.outside.join(", ")}`,
  );
}

describe("dashboard at phone width (390 px)", { skip: SKIP }, () => {
  const openDir = tempDir("mpota-phone-open-");
  const login1 = tempDir("mpota-phone-login-");
  let noAuth: HttpTestServer;
  let withLogin: HttpTestServer;
  let browser: Browser;
  let page: Page;
  const devices: MqttDevice[] = [];
  let rolloutId = "";

  before(async () => {
    [noAuth, withLogin] = await Promise.all([
      startHttpServer(openDir.dir, { noAuth: true }),
      startHttpServer(login1.dir),
    ]);
    browser = await launchChromium();
    page = await browser.newPage({ viewport: PHONE, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
  });
  after(async () => {
    await browser?.close();
    await Promise.all(devices.map((d) => d.close()));
    await Promise.all([noAuth?.stop(), withLogin?.stop()]);
    openDir.remove();
    login1.remove();
  });

  test("an empty fleet says how to try one: the simulate command and devices add", async () => {
    await openPage(page, noAuth, "#/devices", ".empty-fleet");
    const text = ((await page.locator(".empty-fleet").textContent()) ?? "").replace(/\s+/g, " ");
    assert.match(text, /No device has reported yet/);
    assert.match(text, /npx mpota simulate --devices 3/);
    assert.match(text, /npx mpota devices add <id>/);
    await fitsTheScreen(page, "the empty device list");
    await screenshot(page, "dashboard-phone-empty.png");
  });

  test("with --no-auth there is no Log out; the header is one band with its links in a row", async () => {
    const shape = await header(page);
    assert.equal(shape.logout, false, "no Log out without a login");
    assert.equal(shape.navRows, 1, "the links stay in one row");
    assert.ok(shape.right <= PHONE.width, `the header's parts end at ${shape.right} px`);
    assert.ok(shape.height <= 100, `the header is ${shape.height} px high`);
  });

  test("every page fits the screen; wide tables scroll in their own box", async () => {
    for (const [name, version] of [
      ["sensor", "1.0"],
      ["sensor", "2.0"],
    ]) {
      const added = await call(
        noAuth,
        "POST",
        `/api/v1/firmware?name=${name}&version=${version}&notes=${encodeURIComponent("A long release note that says what changed in this version of the firmware")}`,
        {
          body: version === "1.0" ? V1 : V2,
          headers: { "content-type": "application/octet-stream" },
        },
      );
      assert.equal(added.status, 201, JSON.stringify(added.body));
    }
    for (const id of [NORTH, SOUTH]) {
      const d = await MqttDevice.connect(noAuth.url, id);
      devices.push(d);
      await d.state({ fw: imageIdentity(V1), ip: "192.168.178.123", rssi: -71, vbat: 3.05, sleep: 0 });
      await d.status("online");
    }
    await eventually(
      async () => (await call(noAuth, "GET", "/api/v1/devices")).body.length === 2,
      "two devices",
    );
    const job = await call(noAuth, "POST", "/api/v1/update", {
      json: { device: NORTH, firmware: "sensor@2.0" },
    });
    assert.equal(job.status, 201, JSON.stringify(job.body));
    const rollout = await call(noAuth, "POST", "/api/v1/rollouts", {
      json: { firmware: "sensor@2.0", devices: [SOUTH], startAt: Date.now() + 3_600_000, name: "spring" },
    });
    assert.equal(rollout.status, 201, JSON.stringify(rollout.body));
    rolloutId = rollout.body.id;

    // The third: the screenshot of docs/dashboard.md taken of the page, if any.
    const pages: Array<[string, string, string]> = [
      ["#/devices", `tr[data-device="${NORTH}"]`, "dashboard-phone-devices.png"],
      [`#/device/${NORTH}`, ".device-page dl.facts", ""],
      ["#/firmware", "table.firmware tr[data-firmware]", ""],
      ["#/jobs", "table.jobs-table tbody tr", ""],
      ["#/rollouts", "table.rollouts tbody tr", ""],
      [`#/rollout/${rolloutId}`, "table.rollout-devices tbody tr", "dashboard-phone-rollout.png"],
      ["#/audit", "table.audit-list tbody tr", ""],
      ["#/add-device", "section.add-device input", ""],
    ];
    for (const [hash, ready, shot] of pages) {
      await openPage(page, noAuth, hash, ready);
      await fitsTheScreen(page, hash);
      const shape = await header(page);
      assert.equal(shape.logout, false, `${hash}: no Log out with --no-auth`);
      assert.ok(shape.height <= 100, `${hash}: the header is ${shape.height} px high`);
      if (shot) await screenshot(page, shot);
    }
    // The device table is wider than a phone: it scrolls inside its box, the page does not.
    await openPage(page, noAuth, "#/devices", `tr[data-device="${NORTH}"]`);
    const box = (await page.evaluate(`(() => {
      const b = document.querySelector("table.devices").closest(".table-box");
      return b ? { scroll: b.scrollWidth, client: b.clientWidth, overflow: getComputedStyle(b).overflowX } : null;
    })()`)) as { scroll: number; client: number; overflow: string } | null;
    assert.ok(box, "the device table sits in a scrolling box");
    assert.equal(box.overflow, "auto");
    assert.ok(
      box.scroll > box.client,
      `the table (${box.scroll} px) is wider than its box (${box.client} px)`,
    );
    await page
      .locator(".table-box")
      .first()
      .evaluate((b) => {
        (b as unknown as { scrollLeft: number }).scrollLeft = 10_000;
      });
    await fitsTheScreen(page, "#/devices scrolled sideways");
  });

  test("with a login: the login page fits; Log out shows on one line and the header stays one band", async () => {
    await openPage(page, withLogin, "", "input[name=token]");
    await fitsTheScreen(page, "the login page");
    await page.getByLabel("Admin token").fill(withLogin.token);
    await page.getByRole("button", { name: "Log in" }).click();
    await page.locator("header .live-live").waitFor({ timeout: 15_000 });
    const shape = await header(page);
    assert.equal(shape.logout, true, "Log out shows where there is a login");
    assert.equal(shape.logoutLines, 1, "Log out is on one line");
    assert.equal(shape.navRows, 1, "the links stay in one row");
    assert.ok(shape.right <= PHONE.width, `the header's parts end at ${shape.right} px`);
    assert.ok(shape.height <= 100, `the header is ${shape.height} px high`);
    await fitsTheScreen(page, "#/devices with a login");
    // At a desktop's width the header is a single row.
    await page.setViewportSize({ width: 1280, height: 800 });
    const wide = await header(page);
    assert.ok(wide.height <= 50, `at 1280 px the header is ${wide.height} px high`);
    await page.setViewportSize(PHONE);
  });
});
