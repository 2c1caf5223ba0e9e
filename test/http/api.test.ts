import assert from "node:assert/strict";
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { adminTokenPath } from "../../src/server/http/admin-token.ts";
import { MAX_UPLOAD_BYTES } from "../../src/server/http/firmware-upload.ts";
import { MqttDevice } from "../server/support/mqtt-device.ts";
import { tempDir } from "../server/support/test-server.ts";
import { eventually } from "../server/support/wait.ts";
import { buildMicroPythonImage, imageIdentity } from "../support/images.ts";
import { call, type HttpTestServer, startHttpServer } from "./support.ts";

const V1 = buildMicroPythonImage({ size: 40 * 1024, seed: 71 });
const V2 = buildMicroPythonImage({ size: 44 * 1024, seed: 72 });
const NORMAL = buildMicroPythonImage({ size: 40 * 1024, seed: 73, ota: false });

function firmwareFiles(dir: string): string[] {
  try {
    return readdirSync(join(dir, "firmware"));
  } catch {
    return [];
  }
}

describe("HTTP API", () => {
  const data = tempDir("mpota-http-");
  let s: HttpTestServer;
  let dev: MqttDevice;

  before(async () => {
    s = await startHttpServer(data.dir, {
      limits: { credentials: { maxFailures: 100, windowMs: 60_000, maxAddresses: 10 } },
    });
    dev = await MqttDevice.connect(s.url, "kitchen");
    await dev.state({ fw: imageIdentity(V1), ip: "127.0.0.1", rssi: -60, vbat: 3.1, sleep: 0 });
    await dev.status("online");
    await eventually(
      async () => (await s.server.storage.devices.get("kitchen"))?.status === "online",
      "device",
    );
  });
  after(async () => {
    await dev.close();
    await s.stop();
    data.remove();
  });

  test("the admin token is created on first start, mode 0600", () => {
    const path = adminTokenPath(data.dir);
    assert.equal(statSync(path).mode & 0o777, 0o600);
    assert.match(s.token, /^mpota_[A-Za-z0-9_-]{32}$/);
    assert.equal(s.server.newAdminToken, s.token);
  });

  test("every endpoint needs the token: 401 with a JSON error without it or with a wrong one", async () => {
    for (const [method, path] of [
      ["GET", "/api/v1/devices"],
      ["GET", "/api/v1/devices/kitchen"],
      ["GET", "/api/v1/firmware"],
      ["POST", "/api/v1/firmware?name=a&version=1"],
      ["DELETE", "/api/v1/firmware/abc"],
      ["POST", "/api/v1/update"],
      ["POST", "/api/v1/update/line"],
      ["GET", "/api/v1/jobs"],
      ["GET", "/api/v1/jobs/j-1"],
      ["POST", "/api/v1/jobs/j-1/cancel"],
      ["GET", "/api/v1/events"],
      ["GET", "/api/v1/info"],
    ] as const) {
      const r = await call(s, method, path, { token: false });
      assert.equal(r.status, 401, `${method} ${path}`);
      assert.match(r.body.error, /Log in first/);
      const wrong = await call(s, method, path, { token: "mpota_wrong-token-xxxxxxxxxxxx" });
      assert.equal(wrong.status, 401, `${method} ${path} with a wrong token`);
    }
  });

  test("devices and device show the same view as the bridge handlers", async () => {
    const list = await call(s, "GET", "/api/v1/devices");
    assert.equal(list.status, 200);
    assert.deepEqual(
      list.body.map((d: { id: string; fw: string; rssi: number; status: string }) => [
        d.id,
        d.fw,
        d.rssi,
        d.status,
      ]),
      [["kitchen", imageIdentity(V1), -60, "online"]],
    );
    const one = await call(s, "GET", "/api/v1/devices/kitchen?history=5");
    assert.equal(one.status, 200);
    assert.equal(one.body.history.length, 1);
    assert.deepEqual(one.body.jobs, []);
    const unknown = await call(s, "GET", "/api/v1/devices/nobody");
    assert.equal(unknown.status, 404);
    assert.match(unknown.body.error, /No device "nobody" is known/);
    assert.match(unknown.body.error, /GET \/api\/v1\/devices lists the known ones\.$/);
    const bad = await call(s, "GET", "/api/v1/devices/kitchen?history=abc");
    assert.equal(bad.status, 400);
    assert.match(bad.body.error, /"history" must be a whole number/);
  });

  test("firmware upload: refused builds are answered with the verdicts, and nothing is stored", async () => {
    const refused = await call(s, "POST", "/api/v1/firmware?name=sensor&version=0.9&filename=firmware.bin", {
      body: NORMAL,
      headers: { "content-type": "application/octet-stream" },
    });
    assert.equal(refused.status, 400);
    assert.match(refused.body.error, /normal MicroPython build, not an OTA build/);
    assert.ok(
      refused.body.verdicts.some(
        (v: { level: string; message: string }) =>
          v.level === "refusal" && /not an OTA build/.test(v.message),
      ),
    );
    const notFirmware = await call(s, "POST", "/api/v1/firmware?name=sensor&version=0.9", {
      body: new TextEncoder().encode("hello, this is not firmware at all".repeat(10)),
      headers: { "content-type": "application/octet-stream" },
    });
    assert.equal(notFirmware.status, 400);
    assert.equal(typeof notFirmware.body.error, "string");
    const tooLarge = await call(s, "POST", "/api/v1/firmware?name=sensor&version=0.9", {
      body: new Uint8Array(MAX_UPLOAD_BYTES + 1),
      headers: { "content-type": "application/octet-stream" },
    });
    assert.equal(tooLarge.status, 413);
    assert.match(tooLarge.body.error, /larger than/);
    const noName = await call(s, "POST", "/api/v1/firmware?version=1", {
      body: V2,
      headers: { "content-type": "application/octet-stream" },
    });
    assert.equal(noName.status, 400);
    const form = await call(s, "POST", "/api/v1/firmware?name=a&version=1", {
      body: "a=b",
      headers: { "content-type": "application/x-www-form-urlencoded" },
    });
    assert.equal(form.status, 415);
    assert.deepEqual(firmwareFiles(data.dir), []);
    assert.deepEqual((await call(s, "GET", "/api/v1/firmware")).body, []);
  });

  test("firmware upload, list and remove; the preflight verdicts come back", async () => {
    const added = await call(s, "POST", "/api/v1/firmware?name=sensor&version=1.0", {
      body: V1,
      headers: { "content-type": "application/octet-stream" },
    });
    assert.equal(added.status, 201, JSON.stringify(added.body));
    assert.equal(added.body.firmware.id, imageIdentity(V1));
    assert.ok(added.body.verdicts.length > 0);
    const v2 = await call(s, "POST", "/api/v1/firmware", {
      body: V2,
      headers: {
        "content-type": "application/octet-stream",
        "x-firmware-name": "sensor",
        "x-firmware-version": "2.0",
        "x-firmware-notes": encodeURIComponent("Faster wake-up; fixes the ü bug"),
      },
    });
    assert.equal(v2.status, 201, JSON.stringify(v2.body));
    assert.equal(v2.body.firmware.notes, "Faster wake-up; fixes the ü bug");
    const again = await call(s, "POST", "/api/v1/firmware?name=other&version=1", {
      body: V2,
      headers: { "content-type": "application/octet-stream" },
    });
    assert.equal(again.status, 400);
    assert.match(again.body.error, /already in the store as sensor 2.0/);
    const list = await call(s, "GET", "/api/v1/firmware");
    assert.deepEqual(
      list.body.map((f: { name: string; version: string; devices: number }) => [
        f.name,
        f.version,
        f.devices,
      ]),
      [
        ["sensor", "2.0", 0],
        ["sensor", "1.0", 1],
      ],
    );
    const unknown = await call(s, "DELETE", "/api/v1/firmware/nosuch@1");
    assert.equal(unknown.status, 400);
    assert.match(unknown.body.error, /No firmware "nosuch" version "1"/);
    const removed = await call(s, "DELETE", "/api/v1/firmware/sensor@1.0");
    assert.equal(removed.status, 200);
    assert.equal(removed.body.version, "1.0");
    assert.deepEqual(firmwareFiles(data.dir), [`${imageIdentity(V2)}.bin`]);
  });

  test("update, jobs, job with its timeline, cancel; bad input answered with JSON errors", async () => {
    const malformed = await call(s, "POST", "/api/v1/update", {
      body: "{not json",
      headers: { "content-type": "application/json" },
    });
    assert.equal(malformed.status, 400);
    assert.match(malformed.body.error, /not JSON/);
    const unknownDevice = await call(s, "POST", "/api/v1/update", {
      json: { device: "nobody", firmware: "sensor" },
    });
    assert.equal(unknownDevice.status, 400);
    assert.match(unknownDevice.body.error, /No device "nobody" has reported/);
    const unknownFirmware = await call(s, "POST", "/api/v1/update", {
      json: { device: "kitchen", firmware: "nope" },
    });
    assert.equal(unknownFirmware.status, 400);
    assert.match(unknownFirmware.body.error, /No firmware named "nope"/);
    assert.deepEqual((await call(s, "GET", "/api/v1/jobs")).body, []);

    const created = await call(s, "POST", "/api/v1/update", {
      json: { device: "kitchen", firmware: "sensor@2.0" },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const id = created.body.id as string;
    await dev.command((c) => c !== "" && c.job === id);
    const jobs = await call(s, "GET", "/api/v1/jobs?active=true");
    assert.deepEqual(
      jobs.body.map((j: { id: string }) => j.id),
      [id],
    );
    const job = await call(s, "GET", `/api/v1/jobs/${id}`);
    assert.deepEqual(
      job.body.steps.map((step: { kind: string }) => step.kind),
      ["created", "command"],
    );
    const device = await call(s, "GET", "/api/v1/devices/kitchen");
    assert.equal(device.body.job.id, id);
    assert.equal(device.body.jobs[0].id, id);
    const cancelled = await call(s, "POST", `/api/v1/jobs/${id}/cancel`);
    assert.equal(cancelled.status, 200);
    assert.equal(cancelled.body.state, "cancelled");
    const twice = await call(s, "POST", `/api/v1/jobs/${id}/cancel`);
    assert.equal(twice.status, 400);
    assert.match(twice.body.error, /already been cancelled/);
    for (const [method, path] of [
      ["GET", "/api/v1/jobs/j-nosuch"],
      ["POST", "/api/v1/jobs/j-nosuch/cancel"],
    ] as const) {
      // 404 in the API's words (the handler's own read found nothing; no second read to ask first).
      const missing = await call(s, method, path);
      assert.equal(missing.status, 404, `${method} ${path}`);
      assert.equal(missing.body.error, 'There is no job "j-nosuch". GET /api/v1/jobs lists them.');
    }
    assert.equal((await call(s, "GET", "/api/v1/nothing")).status, 404);
    const wrongMethod = await call(s, "PUT", "/api/v1/devices");
    assert.equal(wrongMethod.status, 405);
    assert.deepEqual(wrongMethod.body.allowed, ["GET", "POST"]);
    assert.equal(wrongMethod.body.error, "PUT is not allowed on /api/v1/devices.");
    const badPath = await call(s, "GET", "/api/v1/devices/%E0%A4%A");
    assert.equal(badPath.status, 400);
    assert.match(badPath.body.error, /not URI-encoded correctly/);
  });

  test("update all devices of a line", async () => {
    const line = await call(s, "POST", "/api/v1/update/line", {
      json: { firmware: "sensor", concurrency: 1 },
    });
    assert.equal(line.status, 400);
    assert.match(line.body.error, /No firmware named "sensor"|No device runs a firmware of the line/);
    const bad = await call(s, "POST", "/api/v1/update/line", {
      json: { firmware: "sensor@2.0", concurrency: 0 },
    });
    assert.equal(bad.status, 400);
  });

  test("CSRF: a cross-site form post is refused with 403, also with a valid session cookie", async () => {
    const login = await call(s, "POST", "/api/v1/login", { json: { token: s.token }, token: false });
    assert.equal(login.status, 200);
    const cookie = login.headers.get("set-cookie") ?? "";
    assert.match(cookie, /^mpota_session=[^;]+; Path=\/; HttpOnly; SameSite=Strict; Max-Age=\d+/);
    const session = cookie.split(";")[0] as string;
    const crossSite = await call(s, "POST", "/api/v1/update", {
      token: false,
      body: "device=kitchen&firmware=sensor",
      headers: {
        cookie: session,
        origin: "http://evil.example",
        "content-type": "application/x-www-form-urlencoded",
      },
    });
    assert.equal(crossSite.status, 403);
    assert.match(crossSite.body.error, /another site/);
    const noHeader = await call(s, "POST", "/api/v1/update", {
      token: false,
      body: "device=kitchen&firmware=sensor",
      headers: { cookie: session, "content-type": "application/x-www-form-urlencoded" },
    });
    assert.equal(noHeader.status, 403);
    assert.match(noHeader.body.error, /x-mpota-request/);
    const reads = await call(s, "GET", "/api/v1/devices", { token: false, headers: { cookie: session } });
    assert.equal(reads.status, 200);
    const sessionInfo = await call(s, "GET", "/api/v1/session", {
      token: false,
      headers: { cookie: session },
    });
    assert.deepEqual(sessionInfo.body, { auth: "token", authenticated: true });
    assert.deepEqual((await call(s, "GET", "/api/v1/jobs?active=true")).body, []);
  });

  test("the dashboard and its libraries are served by the server itself", async () => {
    const page = await fetch(`${s.base}/`);
    assert.equal(page.status, 200);
    assert.match(await page.text(), /<title>mpota<\/title>/);
    for (const lib of ["/vendor/preact.mjs", "/vendor/preact-hooks.mjs", "/vendor/htm.mjs", "/app.js"]) {
      const r = await fetch(`${s.base}${lib}`);
      assert.equal(r.status, 200, lib);
      assert.match(r.headers.get("content-type") ?? "", /javascript/);
    }
    const missing = await fetch(`${s.base}/../package.json`);
    assert.equal(missing.status, 404);
  });
});

describe("--no-auth", () => {
  test("only on loopback; then the API needs no token", async () => {
    const data = tempDir("mpota-http-open-");
    await assert.rejects(
      startHttpServer(data.dir, { host: "0.0.0.0", noAuth: true }),
      /only when the HTTP server listens on loopback/,
    );
    const s = await startHttpServer(data.dir, { noAuth: true });
    try {
      const r = await call(s, "GET", "/api/v1/devices", { token: false });
      assert.equal(r.status, 200);
      const crossSite = await call(s, "POST", "/api/v1/update", {
        token: false,
        body: "a=b",
        headers: { origin: "http://evil.example", "content-type": "application/x-www-form-urlencoded" },
      });
      assert.equal(crossSite.status, 403);
    } finally {
      await s.stop();
      data.remove();
    }
  });
});
