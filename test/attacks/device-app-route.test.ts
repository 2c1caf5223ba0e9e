import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { defaultAppKeyPath, loadAppKey } from "../../src/apps/app-key.ts";
import { signAppManifest } from "../../src/apps/app-signature.ts";
import { BridgeClient } from "../../src/server/bridge/bridge-client.ts";
import type { Delivery } from "../../src/server/deliveries/delivery.ts";
import { plainWords } from "../../src/server/deliveries/delivery-words.ts";
import { MqttDevice } from "../server/support/mqtt-device.ts";
import { startTestServer, type TestServer, tempDir } from "../server/support/test-server.ts";
import { eventually } from "../server/support/wait.ts";

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
const FW = "a".repeat(32);
const errorOf = async (r: Response) => ((await r.json()) as { error: string }).error;

/**
 * The app route's refusals. Jobs are made by the update request; the
 * delivery is a stand-in that never runs (the device never acks), so the
 * job stays active: the route authorises by the active job alone.
 */
const idleDelivery: Delivery = {
  name: "app-pull",
  words: plainWords,
  deliver: async () => ({ kind: "aborted" }),
};

describe("attacks on the device app route (/device/app/<sha>/...)", () => {
  const t = tempDir("mpota-app-route-");
  let s: TestServer;
  let bridge: BridgeClient;
  let base: string;
  const files = new Map<string, Buffer>([
    ["main.py", Buffer.from("import lib.a\n")],
    ["lib/a.py", Buffer.from("x = 1\n")],
  ]);
  const other = Buffer.from("secret = 'not in the release'\n");
  let manifestSha = "";
  let otherSha = "";
  const logins = new Map<string, { username: string; password: string }>();

  const get = (path: string, login?: { username: string; password: string }, init: RequestInit = {}) =>
    fetch(`${base}${path}`, {
      ...init,
      headers: login
        ? { authorization: `Basic ${Buffer.from(`${login.username}:${login.password}`).toString("base64")}` }
        : {},
    });

  before(async () => {
    s = await startTestServer(t.dir, { http: { host: "127.0.0.1", port: 0 }, deliveries: [idleDelivery] });
    base = s.server.deviceUrl as string;
    bridge = await BridgeClient.connect({ connection: { url: s.url } });
    const key = loadAppKey(defaultAppKeyPath(t.dir), { create: true });
    const fields = (version: string, set: Map<string, Buffer>) => ({
      name: "thermostat",
      version,
      boards: ["esp32"],
      mpy: undefined,
      files: [...set].map(([path, b]) => ({ path, size: b.length, sha256: sha(b) })),
    });
    const m = signAppManifest(fields("1.4.0", files), key.privateKey);
    manifestSha = m.id;
    const withOther = new Map([...files, ["other.py", other]]);
    const m2 = signAppManifest(fields("2.0.0", withOther), key.privateKey);
    otherSha = m2.id;
    for (const [manifest, set] of [
      [m, files],
      [m2, withOther],
    ] as const) {
      await bridge.request("app/add", {
        manifest: manifest.bytes.toString("base64"),
        files: Object.fromEntries([...set.values()].map((b) => [sha(b), b.toString("base64")])),
      });
    }
    for (const id of ["board-1", "board-2"]) {
      logins.set(id, await s.provision(id));
      const dev = await MqttDevice.connect(s.url, id);
      await dev.publish(
        "state",
        JSON.stringify({ v: 3, fw: FW, ip: "127.0.0.1", seq: 0, app: { board: "esp32" } }),
      );
      await eventually(
        async () => (await s.server.storage.devices.get(id))?.state?.app !== undefined,
        `${id} known`,
      );
      await dev.close();
    }
    await bridge.request("update", { device: "board-1", firmware: "thermostat@1.4.0" });
  });
  after(async () => {
    await bridge.close();
    await s.stop();
    t.remove();
  });

  it("the HTTP API lists app releases and adds one by name@version, with the admin token only", async () => {
    const admin = { authorization: `Bearer ${s.adminToken}` };
    const list = await fetch(`${base}/api/v1/apps`, { headers: admin });
    assert.equal(list.status, 200);
    const apps = (await list.json()) as Array<{
      name: string;
      version: string;
      sha256: string;
      files: number;
    }>;
    assert.deepEqual(
      apps.map((a) => [a.name, a.version, a.sha256, a.files]),
      [
        ["thermostat", "2.0.0", otherSha, 3],
        ["thermostat", "1.4.0", manifestSha, 2],
      ],
    );
    assert.equal((await fetch(`${base}/api/v1/apps`)).status, 401);
    // A device's MQTT login is no admin login.
    const asDevice = await get("/api/v1/apps", logins.get("board-1"));
    assert.equal(asDevice.status, 401);
    const missing = await fetch(`${base}/api/v1/apps`, {
      method: "POST",
      headers: { ...admin, "content-type": "application/json" },
      body: JSON.stringify({ release: "heater@1.0.0" }),
    });
    assert.equal(missing.status, 400);
    assert.match(await errorOf(missing), /^There is no app release heater 1\.0\.0 in /);
  });

  it("serves the job's manifest and its files, byte for byte, to the job's device", async () => {
    const login = logins.get("board-1");
    const manifest = await get(`/device/app/${manifestSha}/manifest`, login);
    assert.equal(manifest.status, 200);
    const bytes = Buffer.from(await manifest.arrayBuffer());
    assert.equal(sha(bytes), manifestSha);
    const main = files.get("main.py") as Buffer;
    const file = await get(`/device/app/${manifestSha}/file/${sha(main)}`, login);
    assert.equal(file.status, 200);
    assert.deepEqual(Buffer.from(await file.arrayBuffer()), main);
    const logged = s.logs.lines.filter((l) => l.msg === "device app fetch").map((l) => l.file);
    assert.deepEqual(logged, ["manifest", "main.py"]);
  });

  it("refuses no login (401 with Basic), a wrong one (401), another device's release (403), a device without a job (403)", async () => {
    const none = await get(`/device/app/${manifestSha}/manifest`);
    assert.equal(none.status, 401);
    assert.match(none.headers.get("www-authenticate") ?? "", /^Basic realm="mpota devices"/);
    const wrong = await get(`/device/app/${manifestSha}/manifest`, { username: "board-1", password: "nope" });
    assert.equal(wrong.status, 401);
    const notMine = await get(`/device/app/${otherSha}/manifest`, logins.get("board-1"));
    assert.equal(notMine.status, 403);
    assert.match(await errorOf(notMine), /^Device board-1 may fetch only the release of its job /);
    const noJob = await get(`/device/app/${manifestSha}/manifest`, logins.get("board-2"));
    assert.equal(noJob.status, 403);
    assert.match(await errorOf(noJob), /^Device board-2 has no active update job, so it may fetch no app/);
  });

  it("refuses a file not in the job's manifest (even one the store holds), path tricks and other methods", async () => {
    const login = logins.get("board-1");
    const notListed = await get(`/device/app/${manifestSha}/file/${sha(other)}`, login);
    assert.equal(notListed.status, 404);
    assert.equal(
      await errorOf(notListed),
      `The file ${sha(other)} is not in the manifest of thermostat 1.4.0.`,
    );
    for (const path of [
      `/device/app/${manifestSha}/file/../../../app-key.pem`,
      `/device/app/${manifestSha}/file/%2e%2e%2fapp-key.pem`,
      `/device/app/${manifestSha}/file/main.py`,
      `/device/app/${manifestSha.toUpperCase()}/manifest`,
      `/device/app/${manifestSha}/manifest/`,
      `/device/app/${manifestSha}`,
    ]) {
      const r = await get(path, login);
      assert.equal(r.status, 404, path);
    }
    const unknown = await get(`/device/app/${"e".repeat(64)}/manifest`, login);
    assert.equal(unknown.status, 404);
    assert.equal(await errorOf(unknown), `There is no app release ${"e".repeat(64)} on this server.`);
    const post = await get(`/device/app/${manifestSha}/manifest`, login, { method: "POST" });
    assert.equal(post.status, 405);
  });
});
