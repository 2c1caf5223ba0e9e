import assert from "node:assert/strict";
import {
  chmodSync,
  copyFileSync,
  existsSync,
  linkSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { connectAsync, type MqttClient } from "mqtt";
import type { OtaCommand } from "../../src/protocol/mqtt-contract.ts";
import { BridgeClient } from "../../src/server/bridge/bridge-client.ts";
import { readCommandKey } from "../../src/server/trust/command-key.ts";
import {
  NEXT_COMMAND_KEY_FILE,
  promoteNextKey,
  startRotation,
} from "../../src/server/trust/command-key-ring.ts";
import { SimulatedDevice } from "../../src/simulator/simulated-device.ts";
import { jobEnd } from "../server/support/job-suite.ts";
import {
  FAST_TIMINGS,
  startTestServer,
  type TestServer,
  tempDir,
  testKey,
} from "../server/support/test-server.ts";
import { eventually } from "../server/support/wait.ts";
import { addressPool, FAST, provisioned, SHORT_GPIO } from "../simulator/support.ts";
import { fixturePath } from "../support/fixtures.ts";
import { buildMicroPythonImage, imageIdentity } from "../support/images.ts";

// `mpota command-key rotate`, then `promote`, with the real MicroPython agent
// (emulated yaota8266) on a server that keeps its own command key in its data
// directory: the device learns the next key from a signed keys command, is
// then sent commands signed with it, and after the promotion with the new
// current key only. A device that never learnt the next key ignores the
// commands after the promotion, as `mpota command-key promote` warns.
const V1 = buildMicroPythonImage({ size: 40 * 1024, seed: 71 });
const V2 = buildMicroPythonImage({ size: 44 * 1024, seed: 72 });
const V3 = buildMicroPythonImage({ size: 42 * 1024, seed: 73 });
const b64 = (image: Uint8Array) => Buffer.from(image).toString("base64");

async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
  const address = probe.address();
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  if (typeof address !== "object" || address === null) throw new Error("no free port");
  return address.port;
}

/** Every message an admin client sees on a device's command topic ("" for a cleared one). */
async function watchCommands(s: TestServer, id: string) {
  const client = await connectAsync(s.url, { reconnectPeriod: 0 });
  const seen: Array<(OtaCommand & { kid?: string; keys?: string[]; op?: string }) | ""> = [];
  client.on("message", (_topic, payload) => {
    seen.push(payload.length === 0 ? "" : JSON.parse(payload.toString()));
  });
  await client.subscribeAsync(`mpota/${id}/cmd`, { qos: 1 });
  return { seen, close: () => client.endAsync() };
}

/** The retained command of a device, as a device subscribing now gets it (undefined: none within 500 ms). */
async function retainedCommand(s: TestServer, id: string): Promise<string | undefined> {
  const client: MqttClient = await connectAsync(s.url, { reconnectPeriod: 0 });
  try {
    const got = new Promise<string | undefined>((resolve) => {
      const timer = setTimeout(() => resolve(undefined), 500);
      client.on("message", (_topic, payload, packet) => {
        if (!packet.retain) return;
        clearTimeout(timer);
        resolve(payload.toString());
      });
    });
    await client.subscribeAsync(`mpota/${id}/cmd`, { qos: 1 });
    return await got;
  } finally {
    await client.endAsync();
  }
}

describe("command key rotation with the real agent", () => {
  const data = tempDir("mpota-key-rotation-");
  const nextAddress = addressPool();
  const devices: SimulatedDevice[] = [];
  let port: number;
  let s: TestServer;
  let bridge: BridgeClient;

  /** The server on its data directory and one fixed port (the devices reconnect there after a restart). */
  const start = async () => {
    s = await startTestServer(data.dir, {
      // No shared test key: the server keeps its command keys in its data directory, as `mpota serve` does.
      commandKey: undefined,
      broker: { kind: "embedded", host: "127.0.0.1", port },
      timings: { ...FAST_TIMINGS, firstAnswerMs: 8000, verifyTimeoutMs: 8000 },
    });
    bridge = await BridgeClient.connect({ connection: { url: s.url } });
  };
  const restart = async (between: () => void) => {
    await bridge.close();
    await s.stop();
    between();
    await start();
  };
  const device = async (id: string, access: Awaited<ReturnType<typeof provisioned>>) => {
    const d = new SimulatedDevice({
      id,
      address: nextAddress(),
      ...access,
      // Back on the broker soon after a server restart (the agent's RETRY_MS, 5 s by default).
      agent: { config: { ...access.agent.config, RETRY_MS: 300 } },
      key: testKey,
      firmware: V1,
      timing: FAST,
      settings: SHORT_GPIO,
    });
    devices.push(d);
    await d.start();
    return d;
  };
  /** The key ids each device reported (`mpota command-key status`). */
  const trusts = async (id: string) =>
    (await bridge.request("command-keys", {})).devices.find((d) => d.device === id)?.keys?.join(" ");
  const update = async (id: string, firmware: string) => {
    const job = await bridge.request("update", { device: id, firmware });
    return jobEnd(bridge, job.id, 60_000);
  };

  before(async () => {
    port = await freePort();
    await start();
    await bridge.request("firmware/add", { image: b64(V2), name: "sensor", version: "2.0" });
    await bridge.request("firmware/add", { image: b64(V3), name: "sensor", version: "3.0" });
  });
  after(async () => {
    for (const d of devices) await d.stop();
    await bridge.close();
    await s.stop();
    data.remove();
  });

  test("the device learns the next key, takes updates signed with it, and after the promotion with the new key; a device that missed the rotation ignores them", async () => {
    const old = s.server.commandKey;
    assert.ok(old.created, "the server made its own command key");
    assert.equal(old.path, join(data.dir, "command-key.pem"));
    const hall = await device("hall", await provisioned(s, "hall"));
    // Provisioned now, but off until the rotation is over: its CMD_KEYS holds the old key only.
    const shedAccess = await provisioned(s, "shed");
    assert.deepEqual(shedAccess.agent.config, { CMD_KEYS: [old.modulusHex] });
    await eventually(async () => (await trusts("hall")) === old.kid, "hall trusts the current key", 30_000);

    // `mpota command-key rotate`, then the restart it asks for.
    const rotation = startRotation(data.dir);
    assert.equal(rotation.current.kid, old.kid);
    assert.ok(rotation.created);
    const next = rotation.next;
    await restart(() => undefined);
    assert.deepEqual(
      s.server.commandKeys.trusted().map((k) => k.kid),
      [old.kid, next.kid],
    );
    // hall is back on the broker: it is sent the keys, signed with the key it trusts, and reports both.
    await eventually(
      async () => (await trusts("hall")) === `${old.kid} ${next.kid}`,
      "hall trusts both keys",
      30_000,
    );
    const sent = await eventually(() => s.logs.find("command keys sent", { device: "hall" })[0], "keys sent");
    assert.equal(sent.signedWith, old.kid);
    assert.deepEqual(sent.keys, [old.kid, next.kid]);
    await eventually(() => s.logs.find("device took the command keys", { device: "hall" })[0], "keys taken");
    assert.equal(await retainedCommand(s, "hall"), undefined, "the keys command was withdrawn");
    const status = await bridge.request("command-keys", {});
    assert.deepEqual([status.current, status.next], [old.kid, next.kid]);

    // An update is now signed with the next key, and hall takes it.
    let watcher = await watchCommands(s, "hall");
    const first = await update("hall", "sensor@2.0");
    assert.equal(first.state, "succeeded", first.error ?? "");
    const firstCommand = watcher.seen.find((c) => c !== "" && c.op === "ota");
    assert.equal(firstCommand !== "" && firstCommand?.kid, next.kid);
    await watcher.close();
    await eventually(() => hall.fw === imageIdentity(V2), "hall runs 2.0");

    // `mpota command-key promote`, and the restart.
    const promoted = promoteNextKey(data.dir);
    assert.equal(promoted.current.kid, next.kid);
    assert.ok(existsSync(promoted.retired), "the old key is kept, retired");
    assert.ok(!existsSync(join(data.dir, NEXT_COMMAND_KEY_FILE)));
    await restart(() => undefined);
    assert.equal(s.server.commandKey.kid, next.kid);
    assert.deepEqual(
      s.server.commandKeys.trusted().map((k) => k.kid),
      [next.kid],
    );
    // The retired key is taken out of hall: a keys command naming the new key only, signed with it.
    await eventually(async () => (await trusts("hall")) === next.kid, "hall trusts the new key only", 30_000);
    const dropped = await eventually(
      () => s.logs.find("command keys sent", { device: "hall" })[0],
      "keys sent after the promotion",
    );
    assert.equal(dropped.signedWith, next.kid);
    assert.deepEqual(dropped.keys, [next.kid]);
    await eventually(() => s.logs.find("device took the command keys", { device: "hall" })[0], "keys taken");
    assert.equal(await retainedCommand(s, "hall"), undefined, "the keys command was withdrawn");

    // Another update, signed with the new current key: taken.
    watcher = await watchCommands(s, "hall");
    const second = await update("hall", "sensor@3.0");
    assert.equal(second.state, "succeeded", second.error ?? "");
    const secondCommand = watcher.seen.find((c) => c !== "" && c.op === "ota");
    assert.equal(secondCommand !== "" && secondCommand?.kid, next.kid);
    await watcher.close();
    await eventually(() => hall.fw === imageIdentity(V3), "hall runs 3.0");

    // shed was off during the whole rotation: it still trusts the old key only.
    const shed = await device("shed", shedAccess);
    await eventually(async () => (await trusts("shed")) === old.kid, "shed checked in", 30_000);
    // The server cannot send it a key it would take, and says so.
    const warning = await eventually(
      () => s.logs.lines.find((l) => l.level === 40 && l.device === "shed"),
      "a warning about shed",
    );
    assert.equal(
      warning.msg,
      "device trusts none of the server's command keys and ignores every command: give it a new mpota_config.py (`mpota devices rotate shed`)",
    );
    assert.deepEqual([warning.keys, warning.trusted], [[old.kid], [next.kid]]);
    const ignored = shed.waitForEvent(
      "output",
      (e) => e.line === `mpota: ignored cmd signed by unknown key ${next.kid}`,
      20_000,
    );
    const job = await bridge.request("update", { device: "shed", firmware: "sensor@2.0" });
    await ignored;
    // It stays as it was: no ack, no OTA mode, the old firmware; the job waits for an answer that never comes.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    assert.equal(shed.fw, imageIdentity(V1));
    assert.equal(shed.status, "awake");
    assert.equal(shed.summary().updates, 0);
    const waiting = await bridge.request("job", { id: job.id });
    assert.equal(waiting.state, "waiting");
    await bridge.request("job/cancel", { id: job.id });
  });
});

describe("promoting the next key", () => {
  test("cut between its two steps it runs again; a retired name holding another key, or no current key, is refused with nothing changed", () => {
    const t = tempDir("mpota-key-promote-");
    try {
      const currentPath = join(t.dir, "command-key.pem");
      copyFileSync(fixturePath("command-key.pem"), currentPath);
      chmodSync(currentPath, 0o600);
      const old = readCommandKey(currentPath);
      const next = startRotation(t.dir).next;
      const retired = join(t.dir, `command-key.retired-${old.kid}.pem`);

      // Another key under the retired name: refused, both keys where they were.
      writeFileSync(retired, readFileSync(join(t.dir, NEXT_COMMAND_KEY_FILE)), { mode: 0o600 });
      assert.throws(() => promoteNextKey(t.dir), {
        message: `${retired} exists and holds another key; nothing was changed. Move it away, then promote again.`,
      });
      assert.equal(readCommandKey(currentPath).kid, old.kid);
      assert.equal(readCommandKey(join(t.dir, NEXT_COMMAND_KEY_FILE)).kid, next.kid);
      rmSync(retired);

      // The first step done (the old key kept under its retired name), then the power went: run it again.
      linkSync(currentPath, retired);
      const promoted = promoteNextKey(t.dir);
      assert.equal(promoted.retired, retired);
      assert.equal(promoted.current.kid, next.kid);
      assert.equal(readCommandKey(currentPath).kid, next.kid);
      assert.equal(readCommandKey(retired).kid, old.kid);
      assert.ok(!existsSync(join(t.dir, NEXT_COMMAND_KEY_FILE)));
      assert.throws(() => promoteNextKey(t.dir), /There is no next command key in .*: start a rotation/);

      // A next key without a current one: no new key is made on the way (devices would trust none).
      const lone = tempDir("mpota-key-promote-lone-");
      try {
        copyFileSync(fixturePath("command-key.pem"), join(lone.dir, NEXT_COMMAND_KEY_FILE));
        assert.throws(
          () => promoteNextKey(lone.dir),
          /There is no current command key \(.*command-key\.pem\) beside the next one/,
        );
        assert.deepEqual(readdirSync(lone.dir), [NEXT_COMMAND_KEY_FILE]);
      } finally {
        lone.remove();
      }
    } finally {
      t.remove();
    }
  });
});
