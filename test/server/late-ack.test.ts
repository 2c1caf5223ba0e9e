// A device that takes a job's command after the job ended (cancelled while
// the command was on its way, or a rollout took it back) acts on it all the
// same: the job says what the device does now, once, and only its own device
// can make it say so.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { BridgeClient } from "../../src/server/bridge/bridge-client.ts";
import { buildMicroPythonImage } from "../support/images.ts";
import { MqttDevice } from "./support/mqtt-device.ts";
import { startTestServer, type TestServer, tempDir } from "./support/test-server.ts";
import { eventually } from "./support/wait.ts";

describe("an ack that comes after its job ended", () => {
  const t = tempDir("mpota-late-ack-");
  let s: TestServer;
  let bridge: BridgeClient;
  const v1 = buildMicroPythonImage({ size: 40_000, seed: 31 });

  before(async () => {
    s = await startTestServer(t.dir);
    bridge = await BridgeClient.connect({ connection: { url: s.url } });
    await s.server.library.add({ bytes: v1, name: "sensor", version: "1.0" });
  });
  after(async () => {
    await bridge.close();
    await s.stop();
    t.remove();
  });

  async function cancelledJob(id: string, ip: string) {
    const dev = await MqttDevice.connect(s.url, id);
    await dev.state({ fw: "2".repeat(32), ip, sleep: 600 });
    await eventually(
      async () => (await bridge.request("devices", {})).some((d) => d.id === id),
      `${id} known`,
    );
    const job = await bridge.request("update", { device: id, firmware: "sensor@1.0" });
    await dev.command((c) => c !== "");
    assert.equal((await bridge.request("job/cancel", { id: job.id })).state, "cancelled");
    return { dev, job };
  }

  const stepsOf = async (id: string) => (await bridge.request("job", { id })).steps;

  it("notes once what the device does when it takes a cancelled job's command", async () => {
    const { dev, job } = await cancelledJob("fan", "192.168.4.3");
    await dev.ack({ job: job.id, ready: true, ip: "192.168.4.3", port: 8266 });
    await eventually(
      async () => (await stepsOf(job.id)).some((st) => st.kind === "late-ack"),
      "late-ack step",
    );
    const steps = await stepsOf(job.id);
    assert.deepEqual(
      steps.map((st) => st.kind),
      ["created", "command", "cancelled", "late-ack"],
    );
    assert.equal(
      steps.at(-1)?.message,
      "Device fan took this job's command after the job was cancelled: it has reset into OTA mode, where yaota8266 waits up to a minute for a push that will not come, and then boots the firmware it had. It was not updated: to install sensor 1.0 after all, update it again (a paused rollout gives it its turn again when resumed).",
    );
    // The device repeats itself (a reconnect, a replay): still one step, and the job stays cancelled.
    await dev.ack({ job: job.id, ready: true, ip: "192.168.4.3", port: 8266 });
    await dev.ack({ job: job.id, ready: true, ip: "192.168.4.3", port: 8266 });
    await eventually(
      () => s.logs.find("ack ignored: it names no active job of this device").length >= 3 || undefined,
      "the three acks handled",
    );
    const detail = await bridge.request("job", { id: job.id });
    assert.equal(detail.state, "cancelled");
    assert.equal(detail.steps.filter((st) => st.kind === "late-ack").length, 1);
    await dev.close();
  });

  it("adds nothing for a refusal, or for an ack from another device naming the job", async () => {
    const { dev, job } = await cancelledJob("pump", "192.168.4.4");
    const other = await MqttDevice.connect(s.url, "intruder");
    await other.state({ fw: "3".repeat(32), ip: "192.168.4.5" });
    await eventually(
      async () => (await bridge.request("devices", {})).some((d) => d.id === "intruder"),
      "intruder known",
    );
    const ignored = s.logs.find("ack ignored: it names no active job of this device").length;
    await other.ack({ job: job.id, ready: true, ip: "192.168.4.5", port: 8266 });
    await dev.ack({ job: job.id, ready: false, error: "battery low" });
    await eventually(
      () =>
        s.logs.find("ack ignored: it names no active job of this device").length >= ignored + 2 || undefined,
      "both acks handled",
    );
    assert.deepEqual(
      (await stepsOf(job.id)).map((st) => st.kind),
      ["created", "command", "cancelled"],
    );
    await dev.close();
    await other.close();
  });
});
