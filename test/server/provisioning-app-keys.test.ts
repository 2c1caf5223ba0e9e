import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { defaultAppKeyPath, loadAppKey } from "../../src/apps/app-key.ts";
import { BridgeClient } from "../../src/server/bridge/bridge-client.ts";
import { startTestServer, type TestServer, tempDir } from "./support/test-server.ts";

// `mpota devices add` (the bridge's devices/add) writes APP_KEYS into the
// mpota_config.py it hands out: the modulus of the data directory's app key,
// the key `mpota app add` signs with, made on first use as there.

describe("devices/add writes APP_KEYS", () => {
  const t = tempDir();
  let s: TestServer;
  let admin: BridgeClient;
  before(async () => {
    s = await startTestServer(t.dir);
    admin = await BridgeClient.connect({ connection: { url: s.url } });
  });
  after(async () => {
    await admin.close();
    await s.stop();
    t.remove();
  });

  it("the app key's modulus, the key made when missing, the same for every device", async () => {
    const path = defaultAppKeyPath(t.dir);
    assert.equal(existsSync(path), false);
    const porch = await admin.request("devices/add", { id: "porch" });
    assert.equal(existsSync(path), true, "app-key.pem made as `mpota app add` makes it");
    const modulus = loadAppKey(path, { create: false }).modulusHex;
    const line = `APP_KEYS = (${JSON.stringify(modulus)},)`;
    assert.equal(
      porch.config
        .split("\n")
        .filter((l) => l.startsWith("APP_KEYS"))
        .join("\n"),
      line,
    );
    assert.match(porch.config, /^CMD_KEYS = \("[0-9a-f]+",\)$/m, "beside the command keys");
    // The same moduli in the answer itself, for a caller that sets up a board another way (`mpota simulate`).
    assert.deepEqual(porch.appKeyModuli, [modulus]);
    const shed = (await admin.request("devices/add", { id: "shed" })) as { config: string };
    assert.ok(shed.config.includes(line));
  });
});
