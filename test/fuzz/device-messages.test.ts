import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { MAX_ACK_BYTES, MAX_STATE_BYTES } from "../../src/protocol/mqtt-contract.ts";
import { MqttDevice } from "../server/support/mqtt-device.ts";
import { startTestServer, type TestServer, tempDir } from "../server/support/test-server.ts";
import { eventually } from "../server/support/wait.ts";
import { fuzz, fuzzRuns, fuzzSeed, mutate, type Rng } from "./fuzz.ts";
import { edgeString, jsonObject, jsonText, mutateObject } from "./json-values.ts";

const FW = "0123456789abcdef0123456789abcdef";
const STATE = {
  v: 2,
  fw: FW,
  ip: "127.0.0.1",
  ver: "v1.27.0",
  rssi: -60,
  wake: "power",
  seq: 1,
  keys: ["0a1b2c3d"],
};
const ACKS = [
  { job: "no-such-job", ready: true, ip: "127.0.0.1", port: 8266 },
  { job: "no-such-job", ready: false, error: "no room" },
];

/** What a device (or whoever holds its login) publishes: fuzzed state, status and ack payloads. */
function deviceMessage(rng: Rng): { kind: string; payload: Uint8Array } {
  const kind = rng.pick(["state", "state", "ack", "status"]);
  if (kind === "state") {
    const payload = jsonText(
      rng,
      () => (rng.chance(0.85) ? mutateObject(rng, STATE) : jsonObject(rng)),
      MAX_STATE_BYTES,
    );
    return { kind, payload: rng.chance(0.02) ? rng.bytes(MAX_STATE_BYTES + 1) : payload };
  }
  if (kind === "ack") {
    return {
      kind,
      payload: jsonText(
        rng,
        () => (rng.chance(0.85) ? mutateObject(rng, rng.pick(ACKS)) : jsonObject(rng)),
        MAX_ACK_BYTES,
      ),
    };
  }
  return {
    kind,
    payload: rng.chance(0.5) ? mutate(rng, Buffer.from("online")) : Buffer.from(edgeString(rng)),
  };
}

describe("fuzz: device messages against a running server", () => {
  let t: ReturnType<typeof tempDir>;
  let s: TestServer;
  let device: MqttDevice;

  before(async () => {
    t = tempDir("mpota-fuzz-dev-");
    // Home Assistant's feature reads every device message too.
    s = await startTestServer(t.dir, { homeAssistant: {} });
    device = await MqttDevice.connect(s.brokerUrl, "fuzz-dev");
  });
  after(async () => {
    await device?.client.endAsync();
    await s?.stop();
    t?.remove();
  });

  it("the server reads or refuses every state, status and ack, logs no error, and keeps reading", async () => {
    await fuzz({
      name: "device message",
      seed: fuzzSeed(0xde7),
      runs: fuzzRuns(1500),
      concurrency: 8,
      generate: deviceMessage,
      check: async ({ kind, payload }) => {
        await device.publish(kind, Buffer.from(payload), false);
      },
    });
    // The server still takes a good state, after everything above.
    await device.state({ fw: "ffffffffffffffffffffffffffffffff", ip: "127.0.0.1" });
    await eventually(
      async () =>
        (await s.server.storage.devices.get("fuzz-dev"))?.state?.fw === "ffffffffffffffffffffffffffffffff",
      "the good state stored",
    );
    const errors = s.logs.lines.filter((l) => l.level >= 50);
    assert.deepEqual(errors, [], "the server logged errors");
    // Every refusal was logged with its reason.
    for (const line of s.logs.find("state ignored"))
      assert.ok(typeof line.reason === "string" && line.reason !== "");
  });
});
