import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { defaultAppKeyPath, loadAppKey } from "../../src/apps/app-key.ts";
import type { AppManifestFields } from "../../src/apps/app-manifest.ts";
import { signAppManifest } from "../../src/apps/app-signature.ts";
import { storeAppRelease } from "../../src/apps/app-store.ts";
import { BridgeClient, ServerRefusalError } from "../../src/server/bridge/bridge-client.ts";
import { MqttDevice } from "./support/mqtt-device.ts";
import { startTestServer, type TestServer, tempDir } from "./support/test-server.ts";
import { eventually } from "./support/wait.ts";

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

/** A 20-file app of about 3 KiB a file; `changed` alters one file's bytes. */
function appFiles(changed = false): Map<string, Buffer> {
  const files = new Map<string, Buffer>();
  for (let i = 0; i < 20; i++) {
    const path = i === 0 ? "main.py" : `lib/mod${String(i).padStart(2, "0")}.py`;
    const text = `# ${path}\n${"x = 1\n".repeat(500)}${changed && i === 7 ? "y = 2\n" : ""}`;
    files.set(path, Buffer.from(text));
  }
  return files;
}

function fields(version: string, files: Map<string, Buffer>): AppManifestFields {
  return {
    name: "thermostat",
    version,
    boards: ["esp32", "esp8266"],
    mpy: undefined,
    files: [...files].map(([path, bytes]) => ({ path, size: bytes.length, sha256: sha(bytes) })),
  };
}

const b64files = (files: Map<string, Buffer>, only?: (path: string) => boolean) =>
  Object.fromEntries(
    [...files].filter(([p]) => only === undefined || only(p)).map(([, b]) => [sha(b), b.toString("base64")]),
  );

describe("app releases in the server (bridge app/add, app/list; name@version in the release store)", () => {
  const t = tempDir("mpota-app-releases-");
  let s: TestServer;
  let bridge: BridgeClient;
  let key: ReturnType<typeof loadAppKey>;

  before(async () => {
    s = await startTestServer(t.dir);
    bridge = await BridgeClient.connect({ connection: { url: s.url } });
    key = loadAppKey(defaultAppKeyPath(t.dir), { create: true });
  });
  after(async () => {
    await bridge.close();
    await s.stop();
    t.remove();
  });

  it("adds a 20-file release with its files, then a one-file change storing that one file only", async () => {
    const v1 = appFiles();
    const m1 = signAppManifest(fields("1.4.0", v1), key.privateKey);
    const added = await bridge.request("app/add", {
      manifest: m1.bytes.toString("base64"),
      files: b64files(v1),
    });
    assert.equal(added.app.sha256, m1.id);
    assert.equal(added.app.id, m1.id.slice(0, 32));
    assert.deepEqual(
      [added.app.name, added.app.version, added.app.files, added.app.boards, added.app.kid],
      ["thermostat", "1.4.0", 20, ["esp32", "esp8266"], key.kid],
    );
    assert.equal(
      added.app.bytes,
      [...v1.values()].reduce((n, b) => n + b.length, 0),
    );
    assert.deepEqual(
      added.verdicts.map((v) => [v.check, v.level]),
      [
        ["app-manifest", "ok"],
        ["app-signature", "ok"],
      ],
    );
    const filesDir = join(t.dir, "apps", "files");
    assert.equal(readdirSync(filesDir).length, 20);

    const v2 = appFiles(true);
    const m2 = signAppManifest(fields("1.4.1", v2), key.privateKey);
    const changed = "lib/mod07.py";
    const second = await bridge.request("app/add", {
      manifest: m2.bytes.toString("base64"),
      files: b64files(v2, (p) => p === changed),
    });
    assert.equal(second.app.version, "1.4.1");
    assert.equal(readdirSync(filesDir).length, 21);

    const list = await bridge.request("app/list", {});
    assert.deepEqual(
      list.map((a) => `${a.name}@${a.version} ${a.sha256}`),
      [`thermostat@1.4.1 ${m2.id}`, `thermostat@1.4.0 ${m1.id}`],
    );
    // name@version and the identity address it as they address firmware (mpota update, rollouts).
    assert.equal((await s.server.library.resolve("thermostat@1.4.0")).id, m1.id.slice(0, 32));
    assert.equal((await s.server.library.resolve("thermostat")).id, m2.id.slice(0, 32));
    const row = await s.server.storage.firmware.get(m1.id.slice(0, 32));
    assert.equal(row?.kind, "app");
    assert.equal(s.server.library.kinds.of(row).name, "app");
    assert.ok((await s.server.library.readRelease(m1.id.slice(0, 32))).bytes.length === m1.bytes.length);
  });

  it("refuses an upload that lacks a file, a file whose bytes differ, and stores nothing", async () => {
    const files = appFiles();
    files.set("main.py", Buffer.from("print('other')\n"));
    const m = signAppManifest(fields("2.0.0", files), key.privateKey);
    await assert.rejects(
      bridge.request("app/add", { manifest: m.bytes.toString("base64"), files: {} }),
      (e: Error) =>
        e instanceof ServerRefusalError &&
        e.message ===
          "The upload lacks 1 file of thermostat 2.0.0 that the server does not hold: main.py. Send every file the manifest names.",
    );
    const main = files.get("main.py") as Buffer;
    await assert.rejects(
      bridge.request("app/add", {
        manifest: m.bytes.toString("base64"),
        files: { [sha(main)]: Buffer.from("print('othe!')\n").toString("base64") },
      }),
      /The bytes sent for main.py do not match the manifest \(size 15, SHA-256 [0-9a-f]{12}\.\.\.\): nothing was stored/,
    );
    await assert.rejects(
      s.server.library.resolve("thermostat@2.0.0"),
      /No firmware "thermostat" version "2.0.0"/,
    );
  });

  it("refuses other bytes under a stored name and version, a forged signature, and a manifest sent as firmware", async () => {
    const files = appFiles();
    files.set("extra.py", Buffer.from("z = 3\n"));
    const again = signAppManifest(fields("1.4.0", files), key.privateKey);
    await assert.rejects(
      bridge.request("app/add", { manifest: again.bytes.toString("base64"), files: b64files(files) }),
      /thermostat 1.4.0 is already stored \(release [0-9a-f]{12}\) with other files or another key's signature/,
    );
    const m = signAppManifest(fields("3.0.0", appFiles()), key.privateKey);
    // One character of the signature changed (to one it is not): the bytes still parse, the signature fails.
    const forged = Buffer.from(
      m.bytes
        .toString("latin1")
        .replace(/sig (\w+) (.)/, (_, kid, c) => `sig ${kid} ${c === "A" ? "B" : "A"}`),
      "latin1",
    );
    await assert.rejects(
      bridge.request("app/add", { manifest: forged.toString("base64"), files: b64files(appFiles()) }),
      /The signature of thermostat 3.0.0 does not verify with key [0-9a-f]{8}: the manifest was changed after it was signed\. Sign it again/,
    );
    await assert.rejects(
      bridge.request("firmware/add", {
        image: m.bytes.toString("base64"),
        name: "thermostat",
        version: "3.0.0",
      }),
      /is the manifest of app thermostat 3\.0\.0: add an app release with its files/,
    );
  });

  it("names an app release in an update request; a server without an HTTP listener says the board cannot fetch it", async () => {
    await s.provision("board-9");
    const dev = await MqttDevice.connect(s.url, "board-9");
    await dev.publish(
      "state",
      JSON.stringify({ v: 3, fw: "a".repeat(32), ip: "127.0.0.1", seq: 0, app: { board: "esp32" } }),
    );
    await eventually(
      async () => (await s.server.storage.devices.get("board-9"))?.state?.app !== undefined,
      "state",
    );
    await dev.close();
    await assert.rejects(bridge.request("update", { device: "board-9", firmware: "thermostat@1.4.0" }), {
      message:
        "This server has no HTTP listener, so a device cannot fetch its release from it. Start it with the HTTP API on an address the devices reach (`mpota serve --http-host 0.0.0.0`, or --device-url URL when they reach it through a proxy).",
    });
  });

  it("takes a release `mpota app add` stored in the data directory by name@version", async () => {
    const files = appFiles();
    files.set("boot_extra.py", Buffer.from("w = 4\n"));
    const m = signAppManifest({ ...fields("5.0.0", files), name: "heater" }, key.privateKey);
    storeAppRelease(t.dir, m, new Map([...files.values()].map((b) => [sha(b), b])));
    const added = await bridge.request("app/add", { release: "heater@5.0.0" });
    assert.equal(added.app.sha256, m.id);
    assert.equal((await s.server.library.resolve("heater@5.0.0")).kind, "app");
    await assert.rejects(
      bridge.request("app/add", { release: "heater@9.0.0" }),
      /There is no app release heater 9\.0\.0/,
    );
  });

  it("takes in a release `mpota app add` stored beside the server when an update names it, but never to remove it", async () => {
    const files = appFiles();
    files.set("boot_extra.py", Buffer.from("w = 6\n"));
    const m = signAppManifest({ ...fields("6.0.0", files), name: "heater" }, key.privateKey);
    storeAppRelease(t.dir, m, new Map([...files.values()].map((b) => [sha(b), b])));
    await assert.rejects(s.server.library.remove("heater@6.0.0"), /No firmware "heater" version "6\.0\.0"/);
    const taken = await s.server.library.resolve("heater@6.0.0");
    assert.deepEqual([taken.kind, taken.name, taken.version], ["app", "heater", "6.0.0"]);
    assert.equal((await s.server.library.resolve("heater@6.0.0")).id, taken.id, "taken in once");
    await assert.rejects(s.server.library.resolve("heater@7.0.0"), /No firmware "heater" version "7\.0\.0"/);
  });
});
