import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { describe, it } from "node:test";
import { connectAsync } from "mqtt";
import { encodeCommand, signCommand } from "../../src/protocol/command-signature.ts";
import type { DeviceState } from "../../src/protocol/mqtt-contract.ts";
import type { JobProgressMessage } from "../../src/server/api/api.ts";
import { Topics, toJson } from "../../src/server/api/topics.ts";
import { MqttLink } from "../../src/server/mqtt/mqtt-link.ts";
import type { Inbound } from "../../src/server/mqtt/payload-reader.ts";
import { readJobProgress, readState, readStatus } from "../../src/server/mqtt/topic-readers.ts";
import { startAedesBroker } from "./support/brokers.ts";
import { LogCapture } from "./support/log-capture.ts";

const FW = "0123456789abcdef0123456789abcdef";

/**
 * Compile-time checks: `npm test` type-checks this file, and each
 * `@ts-expect-error` fails the type check if the call below it compiles.
 * The function is never run.
 */
export function payloadsAreCheckedAtCompileTime(link: MqttLink, topics: Topics): void {
  const progress: JobProgressMessage = {} as JobProgressMessage;
  void link.publishJson(topics.jobProgress("j-1"), progress);
  void link.publishJson(topics.bridgeState, { state: "online" });
  void link.publish(topics.device("d", "cmd"), "");
  void link.publish(topics.device("d", "status"), "online");
  // @ts-expect-error a job progress topic does not carry the bridge state
  void link.publishJson(topics.jobProgress("j-1"), { state: "online" });
  // @ts-expect-error a command is signed JSON (toJson of a SignedCommand), not any string
  void link.publish(topics.device("d", "cmd"), '{"op":"ota"}');
  // @ts-expect-error "asleep" is no DeviceStatus
  void link.publish(topics.device("d", "status"), "asleep");
  // @ts-expect-error a plain string is no Topic: topics come from the builders of Topics
  void link.publishJson("mpota/bridge/state", { state: "online" });
  // @ts-expect-error the status reader does not read states
  void link.subscribe(topics.allDevices("state"), readStatus, () => undefined);
  void link.subscribe(topics.allJobProgress, readJobProgress, (m) => {
    const device: string = m.payload.device;
    // @ts-expect-error job progress has no firmware identity field `fw`
    void m.payload.fw;
    return void device;
  });
}

describe("typed topics on a real broker", () => {
  it("a handler gets the contract-checked payload; bad ones are logged once; the bytes on the wire are the JSON", async () => {
    const broker = await startAedesBroker();
    const logs = new LogCapture();
    const link = await MqttLink.connect(
      broker.connection,
      { timeoutMs: 5000, reconnect: false },
      logs.logger,
    );
    const peer = await connectAsync(broker.connection.url, { clean: true });
    const topics = new Topics("mpota");
    try {
      const states: Array<Inbound<DeviceState>> = [];
      await link.subscribe(topics.allDevices("state"), readState, (m) => void states.push(m));
      const wire: Array<{ topic: string; text: string }> = [];
      peer.on("message", (topic, payload) => wire.push({ topic, text: payload.toString("utf8") }));
      await peer.subscribeAsync(["mpota/bridge/jobs/+", "mpota/+/cmd"], { qos: 1 });

      const good = JSON.stringify({ v: 1, fw: FW.toUpperCase(), ip: "10.0.0.5", rssi: 900 });
      await peer.publishAsync("mpota/porch/state", "{not json", { qos: 1 });
      await peer.publishAsync("mpota/bridge/state", '{"state":"online"}', { qos: 1 });
      await peer.publishAsync("mpota/porch/state", good, { qos: 1 });

      const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048, publicExponent: 65537 });
      const fields = {
        op: "ota",
        dev: "porch",
        seq: 7,
        job: "j-1",
        fw: FW,
        size: 600,
        ver: "1.0",
        down: 0,
      } as const;
      const signed = signCommand(fields, privateKey);
      await link.publish(topics.device("porch", "cmd"), toJson(signed));
      const progress = {
        job: "j-1",
        device: "porch",
        state: "pushing",
        percent: 40,
      } as unknown as JobProgressMessage;
      await link.publishJson(topics.jobProgress("j-1"), progress);

      for (let i = 0; i < 200 && (states.length === 0 || wire.length < 2); i++)
        await new Promise((r) => setTimeout(r, 10));
      assert.equal(states.length, 1, "only the valid state reached the handler");
      const [state] = states as [Inbound<DeviceState>];
      assert.equal(state.topic, "mpota/porch/state");
      assert.equal(state.payload.fw, FW, "read by parseState: the identity in lower case");
      assert.equal(state.payload.rssi, undefined, "an invalid optional field is dropped");
      assert.deepEqual(state.warnings, ['"rssi" 900 ignored']);
      assert.equal(state.bytes.toString(), good, "the bytes as sent");
      const warnings = logs.warnings();
      assert.equal(warnings.length, 1, "one line for the bad state, none for the server's own bridge/state");
      assert.match(warnings[0] as string, /^state ignored: state is not JSON \(/);

      assert.deepEqual(wire, [
        { topic: "mpota/porch/cmd", text: encodeCommand(signed) },
        { topic: "mpota/bridge/jobs/j-1", text: JSON.stringify(progress) },
      ]);
    } finally {
      await peer.endAsync();
      await link.close();
      await broker.stop();
    }
  });
});
