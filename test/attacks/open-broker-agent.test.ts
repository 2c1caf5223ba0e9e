import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { connectAsync, type MqttClient } from "mqtt";
import { encodeCommand, signCommand } from "../../src/protocol/command-signature.ts";
import { BridgeClient } from "../../src/server/bridge/bridge-client.ts";
import { SimulatedDevice } from "../../src/simulator/simulated-device.ts";
import type { SimulatedEvent } from "../../src/simulator/simulated-events.ts";
import { startAedesBroker, type TestBroker } from "../server/support/brokers.ts";
import { jobEnd } from "../server/support/job-suite.ts";
import {
  FAST_TIMINGS,
  startTestServer,
  type TestServer,
  tempDir,
  testKey,
} from "../server/support/test-server.ts";
import { eventually } from "../server/support/wait.ts";
import { addressPool, FAST, SHORT_GPIO } from "../simulator/support.ts";
import { buildMicroPythonImage, imageIdentity } from "../support/images.ts";

/**
 * A device on a broker mpota does not run, open to anyone (a shared
 * Mosquitto with `allow_anonymous true`): the broker protects nothing, so
 * the device's own check of signed commands is all that stands between an
 * attacker and OTA mode. The device is the emulated yaota8266 running the
 * real agent under MicroPython.
 */
const V1 = buildMicroPythonImage({ size: 40 * 1024, seed: 61 });
const V2 = buildMicroPythonImage({ size: 44 * 1024, seed: 62 });
const V3 = buildMicroPythonImage({ size: 46 * 1024, seed: 63 });

describe("attacks on a device behind an open broker, under real MicroPython", () => {
  const data = tempDir("mpota-open-broker-");
  let broker: TestBroker;
  let s: TestServer;
  let admin: BridgeClient;
  let attacker: MqttClient;
  let device: SimulatedDevice;
  const events: SimulatedEvent[] = [];
  const captured: string[] = [];

  const otaEntries = () => events.filter((e) => e.type === "ota-listening").length;
  const notes = () =>
    events.flatMap((e) => (e.type === "output" && /mpota: ignored/.test(e.line) ? [e.line] : []));

  /** Publishes a retained command as the attacker and waits until the device has printed a note about it. */
  async function attack(payload: string, note: RegExp): Promise<void> {
    const before = notes().length;
    const ota = otaEntries();
    await attacker.publishAsync("mpota/porch/cmd", payload, { qos: 1, retain: true });
    await eventually(
      () =>
        notes()
          .slice(before)
          .some((l) => note.test(l)),
      `the device ignores it (${note})`,
      20_000,
    );
    assert.equal(otaEntries(), ota, "the device did not enter OTA mode");
    assert.notEqual(device.status, "ota");
  }

  before(async () => {
    broker = await startAedesBroker();
    s = await startTestServer(data.dir, {
      broker: { kind: "external", connection: broker.connection },
      timings: { ...FAST_TIMINGS, firstAnswerMs: 8000, verifyTimeoutMs: 8000 },
    });
    const access = await s.provision("porch");
    admin = await BridgeClient.connect({ connection: broker.connection });
    for (const [image, version] of [
      [V2, "2.0"],
      [V3, "3.0"],
    ] as const) {
      await admin.request("firmware/add", {
        image: Buffer.from(image).toString("base64"),
        name: "sensor",
        version,
      });
    }
    attacker = await connectAsync(broker.connection.url, { clientId: "attacker", reconnectPeriod: 0 });
    await attacker.subscribeAsync("mpota/porch/cmd", { qos: 1 });
    attacker.on("message", (_topic, payload) => {
      if (payload.length > 0) captured.push(payload.toString());
    });
    device = new SimulatedDevice({
      id: "porch",
      address: addressPool()(),
      broker: broker.connection.url,
      key: testKey,
      firmware: V1,
      timing: FAST,
      settings: SHORT_GPIO,
      agent: { config: access.config ?? {} },
    });
    device.events.on("event", (e) => events.push(e));
    await device.start();
    await eventually(
      async () =>
        (await admin.request("devices", {})).some((d) => d.id === "porch" && d.fw === imageIdentity(V1)),
      "porch checked in",
      30_000,
    );
  });
  after(async () => {
    await device?.stop();
    await attacker?.endAsync();
    await admin?.close();
    await s?.stop();
    await broker?.stop();
    data.remove();
  });

  it("ignores an unsigned command (the v1 one anybody could send)", async () => {
    await attack(
      JSON.stringify({ op: "ota", job: "j-evil", fw: "1".repeat(32), size: 614400 }),
      /unsigned|not signed|no sig/i,
    );
  });

  it("ignores a command signed with another key", async () => {
    const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048, publicExponent: 65537 });
    const forged = encodeCommand(
      signCommand(
        {
          op: "ota",
          dev: "porch",
          seq: 99,
          job: "j-evil",
          fw: "1".repeat(32),
          size: 614400,
          ver: "9.9",
          down: 0,
        },
        privateKey,
      ),
    );
    await attack(forged, /key/i);
  });

  it("ignores a tampered signed command and a replayed one; takes the real ones", async () => {
    // Two real updates; the attacker captures their commands on the open broker.
    for (const version of ["2.0", "3.0"]) {
      const job = await admin.request("update", { device: "porch", firmware: `sensor@${version}` });
      const end = await jobEnd(admin, job.id, 60_000);
      assert.equal(end.state, "succeeded", end.error ?? "");
    }
    assert.deepEqual(Buffer.from(device.emulator.flash.read(0x3c000, V3.length)), Buffer.from(V3));
    const first = captured.find((c) => JSON.parse(c).ver === "2.0");
    assert.ok(first, "the attacker captured the command for 2.0");
    // The same command with the size changed: the signature no longer matches.
    const tampered = JSON.stringify({ ...JSON.parse(first), size: 1 });
    await attack(tampered, /signature/i);
    // The command for 2.0 again, as it was: a replay (and a downgrade).
    await attack(first, /replayed/i);
    await new Promise((r) => setTimeout(r, 1000));
    assert.deepEqual(
      Buffer.from(device.emulator.flash.read(0x3c000, V3.length)),
      Buffer.from(V3),
      "still 3.0",
    );
  });
});
