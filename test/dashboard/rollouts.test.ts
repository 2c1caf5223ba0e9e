import assert from "node:assert/strict";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { type Browser, chromium, type Page } from "playwright-core";
import { SimulatedDevice } from "../../src/simulator/simulated-device.ts";
import { call, type HttpTestServer, startHttpServer } from "../http/support.ts";
import { tempDir, testKey } from "../server/support/test-server.ts";
import { eventually } from "../server/support/wait.ts";
import { addressPool, FAST, SHORT_GPIO } from "../simulator/support.ts";
import { buildMicroPythonImage, imageIdentity } from "../support/images.ts";
import { DASHBOARD_TIMINGS, provisioned } from "./support.ts";

// A user steering rollouts in real headless Chromium against the real server
// (embedded Aedes, SQLite) and simulated devices running the real MicroPython
// agent. Every assertion is on what the page shows.
const CHROMIUM = "/usr/bin/chromium";
const SKIP = existsSync(CHROMIUM)
  ? false
  : `Chromium is not installed (${CHROMIUM} missing): install it with \`apt-get install -y chromium\` (.ci/run does).`;
const DOCS = join(import.meta.dirname, "../../docs");

const V1 = buildMicroPythonImage({ size: 40 * 1024, seed: 91 });
const V2 = buildMicroPythonImage({ size: 44 * 1024, seed: 92 });
const V3 = buildMicroPythonImage({ size: 42 * 1024, seed: 93 });
const ID2 = imageIdentity(V2);
const ID3 = imageIdentity(V3);
const FLEET = ["kitchen", "hall", "porch", "attic"];

/** "YYYY-MM-DDTHH:MM" in local time, as a datetime-local input takes it. */
function localInputTime(at: number): string {
  const d = new Date(at);
  const two = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())}T${two(d.getHours())}:${two(d.getMinutes())}`;
}

describe("rollouts in the dashboard (headless Chromium)", { skip: SKIP }, () => {
  const data = tempDir("mpota-dashboard-rollouts-");
  const nextAddress = addressPool();
  const devices = new Map<string, SimulatedDevice>();
  /** Set to a device id: that device's new firmware never comes back (it loses power when the push ends). */
  let brickNext: string | undefined;
  let s: HttpTestServer;
  let browser: Browser;
  let page: Page;

  before(async () => {
    s = await startHttpServer(data.dir, {}, { timings: DASHBOARD_TIMINGS, maxAttempts: 2 });
    for (const [image, version] of [
      [V1, "1.0"],
      [V2, "2.0"],
      [V3, "3.0"],
    ] as const) {
      const added = await call(s, "POST", `/api/v1/firmware?name=sensor&version=${version}`, {
        body: image,
        headers: { "content-type": "application/octet-stream" },
      });
      assert.equal(added.status, 201, JSON.stringify(added.body));
    }
    await Promise.all(
      FLEET.map(async (id) => {
        const { broker, config } = await provisioned(s, id);
        const d = new SimulatedDevice({
          id,
          address: nextAddress(),
          broker,
          key: testKey,
          firmware: V1,
          timing: FAST,
          settings: SHORT_GPIO,
          agent: { vbat: 3.2, config },
        });
        devices.set(id, d);
        d.emulator.events.on("otaFinished", () => {
          if (brickNext !== id) return;
          brickNext = undefined;
          setImmediate(() => void d.stop());
        });
        return d.start();
      }),
    );
    await eventually(
      async () => (await call(s, "GET", "/api/v1/devices")).body.length === FLEET.length,
      "the fleet registered",
      30_000,
    );
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-gpu",
        "--no-first-run",
      ],
    });
    page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    await page.goto(s.base);
    await page.getByLabel("Admin token").fill(s.token);
    await page.getByRole("button", { name: "Log in" }).click();
    await page.locator("table.devices tbody tr").first().waitFor();
  });
  after(async () => {
    await browser?.close();
    await Promise.all([...devices.values()].map((d) => d.stop()));
    await s?.stop();
    data.remove();
  });

  // Rewritten only when asked: MPOTA_SCREENSHOTS=1 node scripts/run-tests.mjs test/dashboard/rollouts
  const shot = async (name: string) => {
    if (!process.env.MPOTA_SCREENSHOTS) return;
    mkdirSync(DOCS, { recursive: true });
    await page.screenshot({ path: join(DOCS, name), fullPage: true });
  };
  const text = async (selector: string) => ((await page.locator(selector).textContent()) ?? "").trim();
  /** Each group's bar as the page shows it ("1 of 1 done"), short: "1/1 0/2 0/1". */
  const groupsDone = async () =>
    (await page.locator(".group .bar-text").allTextContents())
      .map((t) => {
        const m = /^(\d+) of (\d+) done/.exec(t);
        return m ? `${m[1]}/${m[2]}` : t;
      })
      .join(" ");

  test("a user creates a rollout from the page (a bad threshold is refused first) and watches the groups fill to done", async () => {
    await page.getByRole("link", { name: "Rollouts" }).click();
    await page.getByText("No rollouts yet.").waitFor();
    await page.getByRole("button", { name: "New rollout" }).click();
    await page.locator('select[name="firmware"]').selectOption(ID2);
    await page.locator('input[name="devices"]').fill("kitchen, hall, porch, attic");
    await page.locator('input[name="groups"]').fill("1, 50%, rest");
    await page.locator('input[name="errors"]').fill("150");
    await page.locator('input[name="concurrency"]').fill("2");
    await page.getByRole("button", { name: "Create rollout" }).click();
    const refused = page.locator(".rollout-form .result.refused");
    await refused.waitFor();
    assert.match(
      (await refused.textContent()) ?? "",
      /Refused; no rollout was created\.The error threshold must be a percentage from 0 to 100, not 150\./,
    );
    await page.locator('input[name="errors"]').fill("20");
    await page.getByRole("button", { name: "Create rollout" }).click();
    await page.waitForURL(/#\/rollout\/r-[0-9a-f]{10}$/);
    const id = decodeURIComponent(page.url().split("/").at(-1) as string);
    await page.locator(".rollout-page .group").nth(2).waitFor();
    assert.deepEqual(await page.locator(".group .group-head strong").allTextContents(), [
      "Group 1 of 3: 1 device",
      "Group 2 of 3: 2 devices (50%)",
      "Group 3 of 3: 1 device (rest)",
    ]);
    assert.match(
      await text(".group[data-group='1'] .thresholds"),
      /^next group when ≥ 100 % verified · pauses when > 20 % of finished devices failed \(from 2 finished\)$/,
    );
    assert.match(await text(".facts"), /2 tries, timeout 15 min .*, 2 at once/);

    // Watch, without reloading: the page changes only through the event stream.
    const seen: string[] = [];
    await eventually(
      async () => {
        const now = await groupsDone();
        if (seen.at(-1) !== now) seen.push(now);
        return ["completed", "paused", "aborted"].includes(await text(".rollout-head .rollout-state"));
      },
      "the rollout ended on the page",
      120_000,
    );
    assert.equal(await text(".rollout-head .rollout-state"), "completed", await text(".rollout-reason"));
    const final = await groupsDone();
    if (seen.at(-1) !== final) seen.push(final);
    assert.equal(seen.at(-1), "1/1 2/2 1/1");
    // The groups filled in order, and nothing went backwards.
    const parsed = seen.map((v) => v.split(" ").map((g) => Number(g.split("/")[0])));
    for (let i = 1; i < parsed.length; i++)
      for (let g = 0; g < 3; g++)
        assert.ok((parsed[i]?.[g] ?? 0) >= (parsed[i - 1]?.[g] ?? 0), `went backwards: ${seen.join(" | ")}`);
    assert.ok(
      seen.some((v) => v.startsWith("1/1 0/2")) || seen.some((v) => v.startsWith("1/1 1/2")),
      `the canary finished before the next group: ${seen.join(" | ")}`,
    );
    assert.ok(seen.length >= 3, `the page showed progress: ${seen.join(" | ")}`);
    assert.equal(await text(".rollout-reason"), "All 4 devices verified on sensor 2.0.");
    assert.deepEqual(await page.locator(".group .group-state").allTextContents(), [
      "finished",
      "finished",
      "finished",
    ]);
    assert.equal(await text(".overall .bar-text"), "4 of 4 done");
    // The device rows follow the rollout's view within a second.
    await eventually(
      async () =>
        (await page.locator(".rollout-devices .dev-status").allTextContents()).join() ===
        "done,done,done,done",
      "every device row done",
    );
    await page
      .locator(".rollout-events")
      .getByText(/All 4 devices verified/)
      .waitFor();
    assert.equal(await page.getByRole("button", { name: "Abort" }).count(), 0);

    await page.getByRole("link", { name: "Rollouts", exact: true }).first().click();
    const row = page.locator(`tr[data-rollout="${id}"]`);
    await row.waitFor();
    assert.match(
      (await row.textContent()) ?? "",
      /sensor 2\.0.*kitchen, hall, porch and 1 more.*completed.*4 of 4 done/,
    );
  });

  test("a canary whose new firmware never comes back pauses the rollout, with the reason on the page; Resume goes on", async () => {
    brickNext = "kitchen";
    const created = await call(s, "POST", "/api/v1/rollouts", {
      json: {
        firmware: "sensor@3.0",
        devices: ["kitchen", "hall", "porch"],
        groups: "1, rest",
        retries: 0,
        name: "canary 3.0",
      },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    await page.goto(`${s.base}/#/rollout/${created.body.id}`);
    await page.locator(".rollout-head .rollout-state", { hasText: "running" }).waitFor();
    const reason = page.locator(".rollout-reason.reason-paused");
    await reason.waitFor({ timeout: 60_000 });
    assert.equal(await text(".rollout-head .rollout-state"), "paused");
    assert.match(
      (await reason.textContent()) ?? "",
      /^Paused: too many failures\. Group 1 of 2 \(1 device\): 1 of 1 finished device failed \(100 %\), above its error threshold of 20 % \(counted from 1 finished\)\. Latest: kitchen: Device kitchen has not come back since the push/,
    );
    assert.match(await text(".reason-hint"), /Resume accepts the failures so far/);
    assert.equal(await text(".group[data-group='0'] [data-count='failed'] strong"), "1");
    assert.equal(await text(".group[data-group='1'] [data-count='pending'] strong"), "2");
    assert.equal(await text(".group[data-group='1'] .group-state"), "waiting");
    await page
      .locator(".rollout-devices tr[data-device='kitchen'] .dev-status", { hasText: "failed" })
      .waitFor();
    assert.match(
      await text(".rollout-devices tr[data-device='kitchen'] .reason"),
      /Device kitchen has not come back since the push/,
    );
    assert.equal(await text(".rollout-devices tr[data-device='hall'] .dev-status"), "pending");
    await page.getByRole("button", { name: "Resume" }).waitFor();
    await page.getByRole("button", { name: "Abort" }).waitFor();
    assert.equal(await page.getByRole("button", { name: "Pause" }).count(), 0);
    await shot("dashboard-rollout.png");

    await page.getByRole("button", { name: "Resume" }).click();
    await page.locator(".rollout-head .rollout-state", { hasText: "completed" }).waitFor({ timeout: 90_000 });
    assert.equal(await text(".rollout-reason"), "2 of 3 devices verified on sensor 3.0; 1 failed.");
    assert.equal(await groupsDone(), "0/1 2/2");
    await page
      .locator(".rollout-events")
      .getByText(/failures so far are accepted/)
      .waitFor();
    assert.equal(devices.get("hall")?.fw, ID3);
    assert.equal(devices.get("porch")?.fw, ID3);
  });

  test("pause, resume and abort from the page; a downgrade needs the box ticked; abort asks first", async () => {
    await page.goto(`${s.base}/#/rollouts`);
    await page.getByRole("button", { name: "New rollout" }).click();
    await page.locator('select[name="firmware"]').selectOption(ID2);
    await page.locator('select[name="by"]').selectOption("line");
    await page.locator('select[name="line"]').selectOption("sensor");
    await page.locator('input[name="groups"]').fill("rest");
    await page.locator('input[name="start"]').fill(localInputTime(Date.now() + 3_600_000));
    await page.locator('input[name="name"]').fill("back to 2.0 tonight");
    await page.getByRole("button", { name: "Create rollout" }).click();
    const refused = page.locator(".rollout-form .result.refused");
    await refused.waitFor();
    assert.match(
      (await refused.textContent()) ?? "",
      /Refusing to roll out sensor 2\.0: it would downgrade 2 devices \(hall runs sensor 3\.0, newer than 2\.0; porch runs sensor 3\.0, newer than 2\.0\)\. If that is what you want, pass --allow-downgrade/,
    );
    await page.getByLabel("Allow downgrade").check();
    await page.getByRole("button", { name: "Create rollout" }).click();
    await page.waitForURL(/#\/rollout\/r-[0-9a-f]{10}$/);
    const state = page.locator(".rollout-head .rollout-state");
    await state.waitFor();
    assert.match((await state.textContent()) ?? "", /^scheduled, starts in (59 min|1 h)$/);
    assert.equal(await text(".rollout-head h2"), "back to 2.0 tonight");
    assert.match(await text(".facts"), /line sensor: 4/);
    assert.match(await text(".facts"), /downgrades allowed/);

    await page.getByRole("button", { name: "Pause" }).click();
    await state.filter({ hasText: /^paused$/ }).waitFor();
    assert.equal(await text(".rollout-reason .reason-text"), "Paused by hand.");
    assert.equal(await text(".reason-hint"), "Resume gives the waiting devices their turn again.");
    await page.getByRole("button", { name: "Resume" }).click();
    await state.filter({ hasText: /^scheduled/ }).waitFor();
    assert.equal(await page.locator(".rollout-reason").count(), 0);

    // Abort asks first: dismissing the question changes nothing.
    let question = "";
    page.once("dialog", (dialog) => {
      question = dialog.message();
      void dialog.dismiss();
    });
    await page.getByRole("button", { name: "Abort" }).click();
    await eventually(() => question !== "", "the confirmation");
    assert.match(
      question,
      /^Abort back to 2\.0 tonight\? Devices whose turn has not come .* are cancelled; pushes under way finish\.$/,
    );
    assert.match(await text(".rollout-head .rollout-state"), /^scheduled/);
    page.once("dialog", (dialog) => void dialog.accept());
    await page.getByRole("button", { name: "Abort" }).click();
    await state.filter({ hasText: /^aborted$/ }).waitFor();
    assert.equal(await text(".rollout-reason"), "Aborted by hand.");
    assert.equal(await page.locator(".rollout-head button").count(), 0);
    await page.locator(".rollout-events").getByText("Aborted by hand.").waitFor();

    await page.getByRole("link", { name: "Rollouts", exact: true }).first().click();
    await page.locator("table.rollouts tbody tr").nth(2).waitFor();
    assert.deepEqual(await page.locator("table.rollouts .rollout-state").allTextContents(), [
      "aborted",
      "completed",
      "completed",
    ]);
    await shot("dashboard-rollouts.png");
    // Devices on the target count as done without a push; nothing was pushed by the aborted rollout.
    assert.equal(devices.get("hall")?.fw, ID3);
  });
});
