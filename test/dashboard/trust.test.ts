import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import { connectAsync, type MqttClient } from "mqtt";
import type { Browser, Page } from "playwright-core";
import type { BridgeEnvelope } from "../../src/server/api/api.ts";
import { call, type HttpTestServer, startHttpServer } from "../http/support.ts";
import { MqttDevice } from "../server/support/mqtt-device.ts";
import { tempDir } from "../server/support/test-server.ts";
import { eventually } from "../server/support/wait.ts";
import { launchChromium, logIn, type PageElement, SKIP, screenshot } from "./support.ts";

// Issue 14 on the dashboard, in headless Chromium against the real server (embedded Aedes with
// authentication, SQLite): the warnings on devices that take unsigned commands, the
// allow-unsigned switch, provisioning a device from the Add device form (its config logs in to
// the real broker), and the Audit page with who changed what. Assertions are on what the page
// shows and on what the broker and the API answer.

const FW = "5d41402abc4b2a76b9719d911017c592";
/** The admin tool's MQTT client id, as the audit list should name it. */
const TOOL = "audit-tool-7";

describe("trust on the dashboard in headless Chromium", { skip: SKIP }, () => {
  const data = tempDir("mpota-dashboard-trust-");
  let s: HttpTestServer;
  let browser: Browser;
  let page: Page;
  let tool: MqttClient;
  const devices: MqttDevice[] = [];
  const clients: MqttClient[] = [];

  before(async () => {
    s = await startHttpServer(data.dir);
    browser = await launchChromium();
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    await logIn(page, s);
    tool = await connectAsync(s.url, { clientId: TOOL, reconnectPeriod: 0 });
    await tool.subscribeAsync("mpota/bridge/response/#", { qos: 1 });
  });
  after(async () => {
    await browser?.close();
    await tool?.endAsync();
    await Promise.all(devices.map((d) => d.close().catch(() => undefined)));
    await Promise.all(clients.map((c) => c.endAsync().catch(() => undefined)));
    await s?.stop();
    data.remove();
  });

  /** A device with its own credential (provisioned by the test server) that reports `state`. */
  const reporting = async (id: string, v: 1 | 2, ip: string) => {
    const d = await MqttDevice.connect(s.url, id);
    devices.push(d);
    await d.publish("state", JSON.stringify({ v, fw: FW, ip }));
    await d.status("online");
    await eventually(
      async () => (await call(s, "GET", `/api/v1/devices/${id}`)).body.v === v,
      `${id} registered with v${v}`,
    );
    return d;
  };

  /** A bridge request from the admin tool's MQTT client, as `mpota` or a script sends it. */
  const bridge = async (name: string, request: Record<string, unknown>): Promise<BridgeEnvelope<unknown>> => {
    const transaction = `t-${Math.random().toString(16).slice(2)}`;
    const reply = new Promise<BridgeEnvelope<unknown>>((resolve) => {
      const on = (topic: string, payload: Buffer) => {
        if (topic !== `mpota/bridge/response/${name}`) return;
        const envelope = JSON.parse(payload.toString()) as BridgeEnvelope<unknown>;
        if (envelope.transaction !== transaction) return;
        tool.off("message", on);
        resolve(envelope);
      };
      tool.on("message", on);
    });
    await tool.publishAsync(`mpota/bridge/request/${name}`, JSON.stringify({ ...request, transaction }), {
      qos: 1,
    });
    return reply;
  };

  const row = (id: string) => page.locator(`tr[data-device="${id}"]`);
  const text = async (selector: string) => ((await page.locator(selector).textContent()) ?? "").trim();

  test("a device on a v1 agent is warned about, with what it means and what to do; the warning goes when it reports v2", async () => {
    const attic = await reporting("attic", 1, "192.168.1.40");
    await reporting("cellar", 2, "192.168.1.41");

    await page.goto(`${s.base}/#/devices`);
    await row("attic").locator(".badge-v1", { hasText: "v1 agent: no signed commands" }).waitFor();
    assert.equal(await row("cellar").locator(".badge-trust").count(), 0, "a v2 device has no warning");
    const banner = await text(".trust-banner");
    assert.match(
      banner,
      /1 device takes commands without a signature it can check \(attic\): anyone who can publish on its command topic can send it into OTA mode/,
    );

    await row("attic").getByRole("link", { name: "attic" }).click();
    const warning = page.locator(".trust-warning.trust-v1");
    await warning.waitFor();
    const said = (await warning.textContent()) ?? "";
    assert.match(said, /attic runs a v1 agent, which cannot verify signed commands\./);
    assert.match(
      said,
      /It acts on any command on mpota\/attic\/cmd without checking who sent it: anyone who can publish on its command topic can send it into OTA mode\./,
    );
    assert.match(said, /mpota refuses to update it until its agent is updated/);
    assert.match(said, /mpota devices rotate attic/);
    assert.equal(await text(".agent-version"), "contract v1: cannot verify signed commands");
    assert.match(await text(".credential"), /^provisioned /);
    await screenshot(page, "dashboard-v1-warning.png");

    // The agent is updated: its next state says v2, and the page follows without a reload.
    await attic.state({ fw: FW, ip: "192.168.1.40" });
    await page.locator(".agent-version", { hasText: "contract v2: verifies signed commands" }).waitFor();
    assert.equal(await page.locator(".trust-warning").count(), 0);
    await page.goto(`${s.base}/#/devices`);
    await row("attic").waitFor();
    await eventually(async () => (await row("attic").locator(".badge-trust").count()) === 0, "no badge");
    assert.equal(await page.locator(".trust-banner").count(), 0);
  });

  test("allow unsigned commands: asked first, a No changes nothing, a Yes is stored and shown", async () => {
    await reporting("shed", 1, "192.168.1.42");
    const allowed = async () =>
      (
        (await call(s, "GET", "/api/v1/credentials")).body as Array<{
          device: string;
          allowUnsigned: boolean;
        }>
      ).find((c) => c.device === "shed")?.allowUnsigned;
    await page.goto(`${s.base}/#/device/shed`);
    const box = page.getByRole("switch", { name: /Allow unsigned commands/ });
    await box.waitFor();
    assert.equal(await box.isChecked(), false);

    const questions: string[] = [];
    page.once("dialog", (d) => {
      questions.push(d.message());
      void d.dismiss();
    });
    await box.click();
    await eventually(async () => questions.length === 1, "the question");
    assert.match(
      questions[0] ?? "",
      /^Allow unsigned commands for shed\? .*anyone who can publish on its command topic \(mpota\/shed\/cmd\) can send it into OTA mode/,
    );
    assert.equal(await box.isChecked(), false, "No leaves the switch off");
    assert.equal(await allowed(), false, "No changes nothing on the server");

    page.once("dialog", (d) => void d.accept());
    await box.click();
    await page.getByRole("status").getByText("Unsigned commands are now allowed for shed.").waitFor();
    assert.equal(await box.isChecked(), true);
    assert.equal(await allowed(), true);
    assert.match(
      (await page.locator(".trust-warning.trust-v1").textContent()) ?? "",
      /Unsigned commands are allowed for it, so mpota updates it anyway\..*turn "Allow unsigned commands" off/,
    );
    await page.goto(`${s.base}/#/devices`);
    await row("shed").locator(".badge-v1", { hasText: "v1 agent, unsigned allowed" }).waitFor();

    // The route behind the switch needs a login like every change, and says what it wants.
    const anonymous = await call(s, "POST", "/api/v1/devices/shed/allow-unsigned", {
      json: { allow: false },
      token: false,
    });
    assert.equal(anonymous.status, 401);
    const vague = await call(s, "POST", "/api/v1/devices/shed/allow-unsigned", { json: { allow: "yes" } });
    assert.equal(vague.status, 400);
    assert.equal(vague.body.error, '"allow" must be true or false.');
    assert.equal(await allowed(), true, "neither changed it");
  });

  test("Add device: the form provisions a device and shows its mpota_config.py once; its password logs in to the broker as that device", async () => {
    await page.goto(`${s.base}/#/devices`);
    await page.getByRole("link", { name: "Add device" }).click();
    await page.getByLabel("Device id").fill("porch");
    await page.getByRole("button", { name: "Provision" }).click();
    const issued = page.locator(".issued");
    await issued.waitFor();
    assert.match(
      (await issued.textContent()) ?? "",
      /This mpota_config\.py holds the device's secret \(MQTT_PASSWORD\) and is shown only once/,
    );
    const shown = (await page.locator("pre.config").textContent()) ?? "";
    const port = new URL(s.brokerUrl).port;
    assert.match(shown, /^MQTT_USER = "porch"$/m);
    assert.match(shown, /^DEVICE_ID = "porch"$/m);
    assert.match(shown, /^MQTT_HOST = "127\.0\.0\.1"$/m);
    assert.match(shown, new RegExp(`^MQTT_PORT = ${port}$`, "m"));

    // The download is the same text, as a file named for the board.
    const [download] = await Promise.all([
      page.waitForEvent("download"),
      page.getByRole("button", { name: "Download mpota_config.py" }).click(),
    ]);
    assert.equal(download.suggestedFilename(), "mpota_config.py");
    const file = readFileSync(await download.path(), "utf8");
    assert.equal(file, shown);

    // Its password logs in to the real broker as porch, and porch may report on its own topics.
    const password = /^MQTT_PASSWORD = "([A-Za-z0-9_-]{32})"$/m.exec(file)?.[1];
    assert.ok(password, "the config has the password");
    const wrong = `${password.slice(0, -1)}${password.endsWith("A") ? "B" : "A"}`;
    await assert.rejects(
      connectAsync(s.brokerUrl, {
        username: "porch",
        password: wrong,
        clientId: "porch",
        reconnectPeriod: 0,
      }),
      /Bad username or password|Not authorized/,
    );
    const porch = await connectAsync(s.brokerUrl, {
      username: "porch",
      password,
      clientId: "porch",
      reconnectPeriod: 0,
    });
    clients.push(porch);
    assert.equal(porch.connected, true);
    await porch.publishAsync("mpota/porch/state", JSON.stringify({ v: 2, fw: FW, ip: "192.168.1.43" }), {
      qos: 1,
      retain: true,
    });
    await page.goto(`${s.base}/#/devices`);
    await row("porch").waitFor();
    assert.equal(await row("porch").locator(".badge-trust").count(), 0, "provisioned, v2: no warning");

    // Shown once: the form comes back empty, and the same id again is refused with nothing changed.
    await page.getByRole("link", { name: "Add device" }).click();
    await page.getByLabel("Device id").waitFor();
    assert.equal(await page.locator("pre.config").count(), 0);
    await page.getByLabel("Device id").fill("porch");
    await page.getByRole("button", { name: "Provision" }).click();
    await page
      .getByRole("alert")
      .getByText(/Device "porch" is already provisioned; nothing was changed\./)
      .waitFor();
    const again = await connectAsync(s.brokerUrl, {
      username: "porch",
      password,
      clientId: "porch",
      reconnectPeriod: 0,
    });
    clients.push(again);
    assert.equal(again.connected, true, "the first password still works");
  });

  test("a device whose credential was revoked is shown as not provisioned, with a way to provision it", async () => {
    await reporting("garage", 2, "192.168.1.44");
    const revoked = await bridge("devices/revoke", { id: "garage" });
    assert.equal(revoked.status, "ok", JSON.stringify(revoked));
    // A refused request is recorded too.
    const refused = await bridge("devices/allow-unsigned", { id: "nobody", allow: true });
    assert.equal(refused.status, "error");

    await page.goto(`${s.base}/#/devices`);
    await row("garage").locator(".badge-unprovisioned", { hasText: "not provisioned" }).waitFor();
    assert.match(await text(".trust-banner"), /1 device is not provisioned \(garage\)/);
    await screenshot(page, "dashboard-trust-devices.png");
    await row("garage").getByRole("link", { name: "garage" }).click();
    const warning = page.locator(".trust-warning.trust-unprovisioned");
    await warning.waitFor();
    assert.match((await warning.textContent()) ?? "", /garage has no credential\./);
    assert.equal(await text(".credential"), "none: not provisioned");
    assert.equal(await page.getByRole("switch").count(), 0, "no switch without a credential");
    await page.getByRole("link", { name: "Provision garage" }).click();
    assert.equal(await page.getByLabel("Device id").inputValue(), "garage");
  });

  test("the Audit page lists who changed what, newest first, and pages back", async () => {
    await page.goto(`${s.base}/#/audit`);
    const rows = page.locator("table.audit-list tbody tr");
    await rows.first().waitFor();
    /** The rows as the page shows them. */
    const entries = async () =>
      rows.evaluateAll((trs) =>
        (trs as unknown as PageElement[]).map((tr) => {
          // No named functions in here: the page has no __name helper of the test's compiler.
          const [actor, action, detail, target, outcome, reason] = [
            "td.actor",
            "td.action code",
            "td.action .audit-detail",
            "td.target",
            ".outcome",
            ".audit-reason",
          ].map((selector) => tr.querySelector(selector)?.textContent?.trim() ?? "");
          return {
            id: Number(tr.getAttribute("data-audit")),
            actor,
            action,
            detail,
            target,
            outcome,
            reason,
          };
        }),
      );
    const seen = await entries();
    const ids = seen.map((e) => e.id);
    assert.deepEqual(
      ids,
      [...ids].sort((a, b) => b - a),
      "newest first",
    );
    const mqtt = /^mqtt mpota-admin \(client audit-tool-7, 127\.0\.0\.1\)$/;
    const dashboard = /^http dashboard session \(127\.0\.0\.1\)$/;
    // The newest: the refused bridge request, then the revoke, both by the admin tool over MQTT.
    assert.equal(seen[0]?.action, "devices/allow-unsigned");
    assert.match(seen[0]?.actor ?? "", mqtt);
    assert.equal(seen[0]?.target, "nobody");
    assert.equal(seen[0]?.outcome, "refused");
    assert.equal(
      seen[0]?.reason,
      'Device "nobody" has no credential. Provision it with `mpota devices add nobody`.',
    );
    assert.deepEqual(
      { action: seen[1]?.action, target: seen[1]?.target, outcome: seen[1]?.outcome },
      { action: "devices/revoke", target: "garage", outcome: "done" },
    );
    assert.match(seen[1]?.actor ?? "", mqtt);
    // Made on this dashboard: the refused and the accepted Add device, the allow-unsigned switch.
    const porch = seen.filter((e) => e.action === "devices/add" && e.target === "porch");
    assert.deepEqual(
      porch.map((e) => e.outcome),
      ["refused", "done"],
    );
    assert.match(porch[0]?.reason ?? "", /^Device "porch" is already provisioned; nothing was changed\./);
    for (const e of porch) assert.match(e.actor, dashboard);
    // On shed: the switch on this page (the dismissed question sent nothing), then the API call
    // with a bad "allow", refused.
    const shed = seen.filter((e) => e.target === "shed");
    assert.deepEqual(
      shed.map((e) => [e.action, e.detail, e.outcome, e.reason]),
      [
        ["devices/allow-unsigned", "allow yes", "refused", '"allow" must be true or false.'],
        ["devices/allow-unsigned", "allow true", "done", ""],
      ],
    );
    assert.match(shed[0]?.actor ?? "", /^http token \(127\.0\.0\.1\)$/);
    assert.match(shed[1]?.actor ?? "", dashboard);
    await screenshot(page, "dashboard-audit.png");

    // 60 more changes with the API token: the page shows them after a reload, 50 at a time.
    for (let i = 0; i < 60; i++) {
      const r = await call(s, "POST", "/api/v1/devices/shed/allow-unsigned", {
        json: { allow: i % 2 === 1 },
      });
      assert.equal(r.status, 200, JSON.stringify(r.body));
    }
    assert.equal((await entries())[0]?.id, ids[0], "no live updates: the page is as loaded");
    await page.reload();
    await rows.first().waitFor();
    await eventually(async () => (await entries())[0]?.id !== ids[0], "newest entries after the reload");
    const first = await entries();
    assert.equal(first.length, 50);
    assert.match(first[0]?.actor ?? "", /^http token \(127\.0\.0\.1\)$/);
    assert.equal(first[0]?.target, "shed");
    assert.match(await text(".audit .count"), /^50 entries$/);
    assert.equal(await page.getByRole("button", { name: "Newer" }).isDisabled(), true);

    await page.getByRole("button", { name: "Older" }).click();
    await page.locator(".audit .count", { hasText: "16 entries, page 2" }).waitFor();
    const second = await entries();
    assert.ok(second.every((e) => e.id < (first.at(-1)?.id ?? 0)));
    assert.deepEqual(
      second.slice(10, 12).map((e) => e.id),
      ids.slice(0, 2),
      "the bridge entries follow the oldest 10 of the 60 token ones",
    );
    assert.equal(await page.getByRole("button", { name: "Older" }).isDisabled(), true, "nothing older");
    await page.getByRole("button", { name: "Newer" }).click();
    await eventually(async () => (await entries())[0]?.id === first[0]?.id, "back to the newest page");
  });
});
