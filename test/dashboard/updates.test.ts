import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { Browser, Page } from "playwright-core";
import { call, type HttpTestServer, startHttpServer } from "../http/support.ts";
import { tempDir } from "../server/support/test-server.ts";
import { eventually } from "../server/support/wait.ts";
import { addressPool } from "../simulator/support.ts";
import { buildMicroPythonImage } from "../support/images.ts";
import {
  DASHBOARD_TIMINGS,
  Fleet,
  launchChromium,
  logIn,
  type PageGlobals,
  REAL_SPEED,
  SKIP,
  screenshot,
} from "./support.ts";

// Watching and steering updates in real headless Chromium: the progress bar of a push at the
// device's real speed, cancelling a job that waits for a sleepy device, and "update all devices on
// a line" with a concurrency limit. Every assertion is on what the page shows (plus, for the
// cancelled job, what the simulated device did at its next wake).
const SENSOR_1 = buildMicroPythonImage({ size: 48 * 1024, seed: 101 });
const SENSOR_2 = buildMicroPythonImage({ size: 52 * 1024, seed: 102 });
const VALVE_1 = buildMicroPythonImage({ size: 24 * 1024, seed: 103 });
const VALVE_2 = buildMicroPythonImage({ size: 28 * 1024, seed: 104 });
const VALVES = ["valve-a", "valve-b", "valve-c"];

describe("updates in the dashboard", { skip: SKIP }, () => {
  const data = tempDir("mpota-dashboard-updates-");
  let s: HttpTestServer;
  let fleet: Fleet;
  let browser: Browser;
  let page: Page;

  const upload = async (bytes: Uint8Array, name: string, version: string) => {
    const reply = await call(s, "POST", `/api/v1/firmware?name=${name}&version=${version}`, {
      body: bytes,
      headers: { "content-type": "application/octet-stream" },
    });
    assert.equal(reply.status, 201, JSON.stringify(reply.body));
  };

  before(async () => {
    s = await startHttpServer(data.dir, {}, { timings: DASHBOARD_TIMINGS, maxAttempts: 2 });
    await upload(SENSOR_1, "sensor", "1.0");
    await upload(SENSOR_2, "sensor", "2.0");
    await upload(VALVE_1, "valve", "1.0");
    await upload(VALVE_2, "valve", "2.0");
    fleet = new Fleet(s, addressPool());
    await Promise.all([
      fleet.add("porch", SENSOR_1, { timing: REAL_SPEED }),
      // Sleeps an hour: the test wakes it (`wake()`) once the job is cancelled, so a slow page
      // under load can never lose the race against its RTC timer.
      fleet.add("shed", SENSOR_1, { sleepSeconds: 3600 }),
      ...VALVES.map((id) => fleet.add(id, VALVE_1)),
    ]);
    await eventually(
      async () => (await call(s, "GET", "/api/v1/devices")).body.length === 2 + VALVES.length,
      "every device registered",
      30_000,
    );
    browser = await launchChromium();
    // One browser context (one session cookie) for the tabs of the test.
    page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
    await logIn(page, s);
  });
  after(async () => {
    await browser?.close();
    await fleet?.stop();
    await s?.stop();
    data.remove();
  });

  test("during a push the bar shows a percent between 0 and 100, a rate and the time left, and no cancel; then done", async () => {
    await page.goto(`${s.base}/#/device/porch`);
    await page.getByRole("button", { name: "Update porch" }).click();
    // One moment of the page, read at once: the update section's job while it pushes.
    const snapshot = async (above: number) => {
      const found = await page.waitForFunction(
        (above) => {
          const { document } = globalThis as unknown as PageGlobals;
          const job = document.querySelector(".device-page > .job.job-pushing");
          const percent = Number.parseInt(job?.querySelector(".bar-text")?.textContent ?? "", 10);
          const numbers = job?.querySelector(".job-numbers")?.textContent ?? "";
          if (!job || !(percent > above && percent < 100) || !/KiB\/s/.test(numbers)) return false;
          return {
            state: job.querySelector(".job-state")?.textContent,
            bar: job.querySelector(".bar-text")?.textContent,
            valuenow: job.querySelector('[role="progressbar"]')?.getAttribute("aria-valuenow"),
            numbers,
            eta: job.querySelector(".eta")?.textContent ?? null,
            cancel: [...document.querySelectorAll("button")].filter((b) => b.textContent?.trim() === "Cancel")
              .length,
          };
        },
        above,
        { timeout: 30_000, polling: "raf" },
      );
      const value = await found.jsonValue();
      assert.ok(value, "a pushing job was seen");
      return value;
    };
    const first = await snapshot(0);
    await screenshot(page, "dashboard-progress.png");
    const percent = Number.parseInt(first.bar ?? "", 10);
    assert.ok(percent > 0 && percent < 100, `percent ${first.bar}`);
    assert.equal(first.valuenow, String(percent));
    assert.equal(first.state, "pushing");
    // "5.0 KiB of 52.0 KiB · 5.0 KiB/s · 9 s left" (a slow start under load: "768 B", "1 min left").
    const left = /(\d+ h )?\d+ (s|min) left/;
    assert.match(first.numbers, /^[\d.]+ (B|KiB) of 52\.0 KiB · [\d.]+ KiB\/s · /);
    assert.match(first.numbers, left);
    assert.match(first.eta ?? "", new RegExp(`^${left.source}$`));
    assert.equal(first.cancel, 0, "no cancel button once the push started");
    // The bar moves on.
    const later = await snapshot(percent);
    assert.ok(Number.parseInt(later.bar ?? "", 10) > percent, `${later.bar} after ${first.bar}`);
    assert.equal(later.cancel, 0);

    const job = page.locator(".jobs .job").first();
    await job.locator(".job-state", { hasText: "done" }).waitFor({ timeout: 30_000 });
    assert.equal(await job.locator(".bar-text").textContent(), "100%");
    await page.locator(".facts").getByText("sensor 2.0").waitFor({ timeout: 15_000 });
  });

  test("a job waiting for a sleepy device is cancelled from the page; the device is not updated at its next wake", async () => {
    const shed = fleet.get("shed");
    await page.goto(`${s.base}/#/device/shed`);
    // The device sleeps: the job must wait for its next wake.
    await shed.waitForStatus("sleeping", 20_000);
    const events: string[] = [];
    const off = shed.events.on("event", (e) => events.push(e.type));
    try {
      await page.getByRole("button", { name: "Update shed" }).click();
      const current = page.locator(".device-page > .job");
      await current
        .locator(".job-state", { hasText: "scheduled, waiting for wake" })
        .waitFor()
        .catch(async (e) => {
          console.log(await page.locator("main").textContent(), events);
          throw e;
        });
      await current.getByRole("button", { name: "Cancel" }).click();
      const job = page.locator(".jobs .job").first();
      await job.locator(".job-state", { hasText: "cancelled" }).waitFor();
      // No job in progress any more: the page offers a new update instead.
      await page.getByRole("button", { name: "Update shed" }).waitFor();
      assert.equal(await page.locator(".device-page > .job").count(), 0);

      // The next wake: the device checks in, finds no command, and goes back to sleep.
      assert.equal(events.length, 0, `the device stayed asleep until its wake: ${events.join(", ")}`);
      const checkin = shed.waitForEvent("checkin", () => true, 20_000);
      const asleep = shed.waitForEvent("deepsleep", () => true, 20_000);
      shed.wake();
      await checkin;
      await asleep;
      assert.ok(!events.includes("ota-listening"), `the device went into OTA mode: ${events.join(", ")}`);
      assert.ok(!events.includes("firmware-changed"));
      await page
        .locator(".device-status", { hasText: /sleeping, next wake in/ })
        .waitFor({ timeout: 10_000 });
      assert.match((await page.locator(".device-page > .facts").textContent()) ?? "", /sensor 1\.0/);
      assert.equal(await job.locator(".job-state").textContent(), "cancelled");
      assert.equal(await page.locator(".jobs .job").count(), 1);
    } finally {
      off();
    }
  });

  test("an answer to Update that arrives after the job's live event does not put the job back to queued", async () => {
    const shed = fleet.get("shed");
    await shed.waitForStatus("sleeping", 20_000);
    await page.goto(`${s.base}/#/device/shed`);
    // Hold the answer to the POST until the live events have shown the job waiting for the wake:
    // the order a loaded server often gives (a CI run on Node 24 showed "queued" for good).
    let release: () => void = () => undefined;
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    await page.route("**/api/v1/update", async (route) => {
      const answer = await route.fetch();
      await released;
      await route.fulfill({ response: answer });
    });
    try {
      await page.getByRole("button", { name: "Update shed" }).click();
      const current = page.locator(".device-page > .job");
      await current.locator(".job-state", { hasText: "scheduled, waiting for wake" }).waitFor();
      const answered = page.waitForEvent("requestfinished", (r) => r.url().endsWith("/api/v1/update"));
      release();
      await answered;
      // Two frames: the answer's state change has been rendered.
      await page.evaluate(() => {
        const w = globalThis as unknown as { requestAnimationFrame: (f: () => void) => number };
        return new Promise<void>((resolve) =>
          w.requestAnimationFrame(() => w.requestAnimationFrame(resolve)),
        );
      });
      assert.equal(await current.locator(".job-state").textContent(), "scheduled, waiting for wake");
      await current.getByRole("button", { name: "Cancel" }).click();
      await page.locator(".jobs .job").first().locator(".job-state", { hasText: "cancelled" }).waitFor();
    } finally {
      await page.unroute("**/api/v1/update");
    }
  });

  test("update all devices on a line, two at a time: every device ends on the new version", async () => {
    // A second tab watches the devices while the first starts the update.
    const watcher = await page.context().newPage();
    try {
      await watcher.goto(`${s.base}/#/devices`);
      await watcher.locator(`tr[data-device="${VALVES[0]}"]`).getByText("2.0 available").waitFor();
      // (No named functions inside: tsx would wrap them in a helper the page does not have.)
      await watcher.evaluate(() => {
        const w = globalThis as unknown as PageGlobals;
        const { document, MutationObserver } = w;
        w.maxActive = 0;
        new MutationObserver(() => {
          const active = document.querySelectorAll('tr[data-device^="valve-"] .job:not(.job-queued)').length;
          w.maxActive = Math.max(w.maxActive, active);
        }).observe(document.body, { subtree: true, childList: true, attributes: true, characterData: true });
      });

      await page.goto(`${s.base}/#/firmware`);
      await page.getByLabel("devices at a time").fill("2");
      await page.getByRole("button", { name: "Update all on valve (3)" }).click();
      await page
        .getByRole("status")
        .getByText(/Updating valve to 2\.0/)
        .waitFor();

      // Every device of the line on 2.0, no job left, no newer version offered.
      const rows = await watcher.waitForFunction(
        (ids) => {
          const { document } = globalThis as unknown as PageGlobals;
          const rows = ids.map((id) => document.querySelector(`tr[data-device="${id}"]`));
          const done = rows.every(
            (r) =>
              r?.querySelectorAll("td")[2]?.textContent?.startsWith("valve 2.0") &&
              !r.querySelector(".job") &&
              !r.querySelector(".badge-newer"),
          );
          return done && rows.map((r) => r?.querySelectorAll("td")[2]?.textContent?.trim());
        },
        VALVES,
        { timeout: 45_000 },
      );
      for (const text of (await rows.jsonValue()) as string[]) assert.match(text, /^valve 2\.0 [0-9a-f]{8}$/);
      const maxActive = await watcher.evaluate(() => (globalThis as unknown as PageGlobals).maxActive);
      assert.ok(maxActive >= 1 && maxActive <= 2, `at most 2 devices updated at once, saw ${maxActive}`);

      // The final result per device, as the jobs page lists it.
      await page.goto(`${s.base}/#/jobs`);
      await page.locator("table.jobs-table tbody tr").first().waitFor();
      for (const id of VALVES) {
        const row = page.locator("table.jobs-table tbody tr", { has: page.getByRole("link", { name: id }) });
        await row.locator(".job-state", { hasText: "done" }).waitFor();
        assert.equal(await row.count(), 1, `one job for ${id}`);
        assert.match((await row.locator(".job-target").textContent()) ?? "", /valve 2\.0/);
        assert.equal(await row.locator(".bar-text").textContent(), "100%");
      }
      await screenshot(page, "dashboard-jobs.png");
    } finally {
      await watcher.close();
    }
  });
});
