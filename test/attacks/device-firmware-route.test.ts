import assert from "node:assert/strict";
import { request as httpRequest } from "node:http";
import { after, before, describe, it } from "node:test";
import { BridgeClient } from "../../src/server/bridge/bridge-client.ts";
import { Esp32Device } from "../server/support/esp32-device.ts";
import { startTestServer, type TestServer, tempDir } from "../server/support/test-server.ts";
import { eventually } from "../server/support/wait.ts";
import { buildEsp32AppImage, esp32Identity } from "../support/esp32-image.ts";

const A = buildEsp32AppImage({ size: 120_000, seed: 95 });
const B = buildEsp32AppImage({ size: 160_000, seed: 96 });
const A_ID = esp32Identity({ seed: 95 }).slice(0, 32);
const B_ID = esp32Identity({ seed: 96 }).slice(0, 32);

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** One raw request (no URL normalising by a client library): the path goes out byte for byte. */
function get(
  base: string,
  path: string,
  headers: Record<string, string> = {},
  method = "GET",
): Promise<Answer> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: u.hostname, port: u.port, path, method, headers, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
        );
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end();
  });
}

const basic = (user: string, password: string) => ({
  authorization: `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`,
});
const errorOf = (a: Answer) => (JSON.parse(a.body.toString()) as { error: string }).error;

describe("attacks on the device route GET /device/firmware/<fw>", () => {
  const t = tempDir("mpota-device-route-");
  let s: TestServer;
  let base: string;
  let bridge: BridgeClient;
  let dev: Esp32Device;
  let own: { username: string; password: string };
  let other: { username: string; password: string };
  let jobId: string;

  before(async () => {
    s = await startTestServer(t.dir, {
      http: {
        host: "127.0.0.1",
        port: 0,
        limits: { credentials: { maxFailures: 4, windowMs: 60_000, maxAddresses: 16 } },
      },
      // The job stays in hand for the whole test: the device never reports.
      timings: { firstAnswerMs: 600_000, repushAnswerMs: 600_000 },
    });
    base = s.server.deviceUrl as string;
    await s.server.library.add({ bytes: A, name: "board", version: "1.0" });
    await s.server.library.add({ bytes: B, name: "board", version: "2.0" });
    bridge = await BridgeClient.connect({ connection: { url: s.url } });
    own = await s.provision("esp-a");
    other = await s.provision("esp-b");
    dev = await Esp32Device.connect(s.url, "esp-a", own, A_ID, s.server.commandKey.publicKey);
    await dev.state();
    await eventually(async () => (await s.server.storage.devices.get("esp-a"))?.state?.v === 3, "esp-a");
    jobId = (await bridge.request("update", { device: "esp-a", firmware: "board@2.0" })).id;
    await dev.pullCommand();
  });
  after(async () => {
    await dev.close();
    await bridge.close();
    await s.stop();
    t.remove();
  });

  const path = `/device/firmware/${B_ID}`;

  it("serves the device its own job's image, whole and from an offset", async () => {
    const whole = await get(base, path, basic(own.username, own.password));
    assert.equal(whole.status, 200);
    assert.ok(whole.body.equals(Buffer.from(B)));
    assert.equal(whole.headers["accept-ranges"], "bytes");
    const tail = await get(base, path, { ...basic(own.username, own.password), range: "bytes=150000-" });
    assert.equal(tail.status, 206);
    assert.equal(tail.headers["content-range"], "bytes 150000-159999/160000");
    assert.ok(tail.body.equals(Buffer.from(B).subarray(150_000)));
    const head = await get(base, path, basic(own.username, own.password), "HEAD");
    assert.deepEqual([head.status, head.headers["content-length"], head.body.length], [200, "160000", 0]);
  });

  it("without credentials: 401 with a Basic challenge", async () => {
    const r = await get(base, path);
    assert.equal(r.status, 401);
    assert.equal(r.headers["www-authenticate"], 'Basic realm="mpota devices", charset="UTF-8"');
    assert.match(errorOf(r), /^A device logs in with its MQTT credentials/);
    // Not a Basic login at all.
    assert.equal((await get(base, path, { authorization: `Bearer ${s.adminToken}` })).status, 401);
  });

  it("another device's credentials get no image of this device's job: 403", async () => {
    const r = await get(base, path, basic(other.username, other.password));
    assert.equal(r.status, 403);
    assert.equal(
      errorOf(r),
      "Device esp-b has no active update job, so it may fetch no image. Start one with `mpota update esp-b ...`.",
    );
  });

  it("a stored release that is not the device's job: 403; a release that does not exist: 404", async () => {
    const r = await get(base, `/device/firmware/${A_ID}`, basic(own.username, own.password));
    assert.equal(r.status, 403);
    assert.equal(
      errorOf(r),
      `Device esp-a may fetch only the release of its job ${jobId} (${B_ID}), not ${A_ID}.`,
    );
    const none = await get(base, `/device/firmware/${"0".repeat(32)}`, basic(own.username, own.password));
    assert.equal(none.status, 404);
    assert.equal(errorOf(none), `There is no release ${"0".repeat(32)} on this server.`);
  });

  it("huge, malformed and multiple ranges: 416 with the image's size", async () => {
    for (const range of [
      "bytes=160000-",
      "bytes=999999999999999-",
      "bytes=9999999999999999999999-",
      "bytes=0-10",
      "bytes=-5",
      "bytes=5-,10-",
      "items=0-",
      "bytes=abc-",
    ]) {
      const r = await get(base, path, { ...basic(own.username, own.password), range });
      assert.equal(r.status, 416, range);
      assert.equal(r.headers["content-range"], "bytes */160000");
      assert.match(errorOf(r), /starts past its end|is not served: a device resumes with "bytes=N-" only/);
    }
  });

  it("path tricks reach nothing but the image route's own answers", async () => {
    const login = basic(own.username, own.password);
    for (const trick of [
      `/device/firmware/${B_ID.toUpperCase()}`,
      `/device/firmware/${B_ID}/`,
      `/device/firmware/${B_ID}/../../../mpota.db`,
      "/device/firmware/%2e%2e%2fmpota.db",
      "/device/firmware/..%2f..%2fadmin-token",
      `/device/firmware/${B_ID}%00`,
      "/device/../api/v1/devices",
      "/device/firmware/",
    ]) {
      const r = await get(base, trick, login);
      assert.ok(r.status === 404 || r.status === 401, `${trick}: ${r.status}`);
      assert.ok(!r.body.includes(Buffer.from("SQLite format")), trick);
      if (trick.startsWith("/device/firmware/")) assert.equal(r.status, 404, trick);
    }
    // The same without credentials: the login comes first.
    assert.equal((await get(base, "/device/firmware/%2e%2e%2fmpota.db")).status, 401);
    assert.equal((await get(base, path, login, "POST")).status, 405);
  });

  it("wrong logins from one source are limited (429 with Retry-After); the right login still passes", async () => {
    let last: Answer | undefined;
    for (let i = 0; i < 5; i++) last = await get(base, path, basic("esp-a", `wrong-${i}`));
    assert.equal(last?.status, 429);
    assert.match(
      errorOf(last as Answer),
      /^Too many wrong device logins from 127\.0\.0\.1; try again in \d+ s\.$/,
    );
    assert.ok(Number(last?.headers["retry-after"]) > 0);
    assert.equal((await get(base, path, basic(own.username, own.password))).status, 200);
  });

  it("a finished job's image is no longer served", async () => {
    dev.fw = B_ID;
    await dev.state();
    await eventually(
      async () => (await bridge.request("job", { id: jobId })).state === "succeeded",
      "job over",
    );
    const r = await get(base, path, basic(own.username, own.password));
    assert.equal(r.status, 403);
    assert.match(errorOf(r), /^Device esp-a has no active update job/);
  });
});
