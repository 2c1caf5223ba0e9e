import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { defaultAppKeyPath, loadAppKey } from "../../src/apps/app-key.ts";
import { BridgeClient } from "../../src/server/bridge/bridge-client.ts";
import { addAppRelease, sha256Hex } from "../support/app-releases.ts";
import { freshDatabase, postgresTestBackend } from "../support/postgres.ts";
import { MqttDevice } from "./support/mqtt-device.ts";
import { startTestServer, type TestServer, tempDir } from "./support/test-server.ts";
import { eventually } from "./support/wait.ts";

const sha = sha256Hex;

// Two server instances on one PostgreSQL database, each with its own data
// directory: an app added through one is served to a board by the other.
// The files travel through the database as firmware images do; the
// instance that lacked them keeps a checked copy.
describe("app files shared by server instances on one PostgreSQL database", {
  skip: postgresTestBackend() ? undefined : "runs in the PostgreSQL pass",
}, () => {
  const a = tempDir("mpota-app-shared-a-");
  const b = tempDir("mpota-app-shared-b-");
  let sa: TestServer;
  let sb: TestServer;
  let bridgeA: BridgeClient;
  let bridgeB: BridgeClient;
  const files = new Map<string, Buffer>([
    ["main.py", Buffer.from("import sensor\nsensor.run()\n")],
    ["sensor.py", Buffer.from("def run():\n    return 21.5\n")],
  ]);

  before(async () => {
    const db = await freshDatabase("apps");
    sa = await startTestServer(a.dir, { db, http: { host: "127.0.0.1", port: 0 } });
    sb = await startTestServer(b.dir, { db, http: { host: "127.0.0.1", port: 0 } });
    bridgeA = await BridgeClient.connect({ connection: { url: sa.url } });
    bridgeB = await BridgeClient.connect({ connection: { url: sb.url } });
  });
  after(async () => {
    await bridgeA.close();
    await bridgeB.close();
    await sa.stop();
    await sb.stop();
    a.remove();
    b.remove();
  });

  it("a board fetches, from the instance that did not store it, the files another instance added", async () => {
    const key = loadAppKey(defaultAppKeyPath(a.dir), { create: true });
    const m = await addAppRelease(bridgeA, key, "thermostat", "1.0.0", files, ["esp32"]);
    const sensor = files.get("sensor.py") as Buffer;
    const cached = join(b.dir, "apps", "files", sha(sensor));
    assert.equal(existsSync(cached), false, "instance B's data directory lacks the file");
    // B lists the release (its row and manifest are in the database).
    assert.deepEqual(
      (await bridgeB.request("app/list", {})).map((r) => `${r.name}@${r.version}`),
      ["thermostat@1.0.0"],
    );

    const login = await sb.provision("board-1");
    const board = await MqttDevice.connect(sb.url, "board-1");
    await board.publish(
      "state",
      JSON.stringify({
        v: 3,
        fw: "c".repeat(32),
        ip: "127.0.0.1",
        seq: 0,
        app: { board: "esp32", free: 100_000 },
      }),
    );
    await eventually(
      async () => (await sb.server.storage.devices.get("board-1"))?.state?.app !== undefined,
      "state",
    );
    await bridgeB.request("update", { device: "board-1", firmware: "thermostat@1.0.0" });
    const response = await fetch(`${sb.server.deviceUrl}/device/app/${m.id}/file/${sha(sensor)}`, {
      headers: {
        authorization: `Basic ${Buffer.from(`${login.username}:${login.password}`).toString("base64")}`,
      },
    });
    assert.equal(response.status, 200, await response.clone().text());
    assert.ok(Buffer.from(await response.arrayBuffer()).equals(sensor));
    assert.equal(existsSync(cached), true, "instance B keeps the checked copy");
    await board.close();
  });
});
