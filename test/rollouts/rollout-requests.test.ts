import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { connectAsync } from "mqtt";
import type { RolloutProgressMessage } from "../../src/server/api/rollout-api.ts";
import { BridgeClient } from "../../src/server/bridge/bridge-client.ts";
import { MqttDevice } from "../server/support/mqtt-device.ts";
import { startTestServer, type TestServer, tempDir } from "../server/support/test-server.ts";
import { eventually } from "../server/support/wait.ts";
import { b64, ID1, ID2, V1, V2 } from "./support.ts";

// Requests over the bridge, with devices that only report over MQTT (they never take a command).
describe("rollout requests over the bridge", () => {
  const t = tempDir("mpota-rollout-req-");
  let s: TestServer;
  let bridge: BridgeClient;
  const devices: MqttDevice[] = [];

  before(async () => {
    s = await startTestServer(t.dir);
    bridge = await BridgeClient.connect({ connection: { url: s.url } });
    await bridge.request("firmware/add", { image: b64(V1), name: "sensor", version: "1.0" });
    await bridge.request("firmware/add", { image: b64(V2), name: "sensor", version: "2.0" });
    for (const [i, id] of ["k1", "k2", "k3", "k4", "k5"].entries()) {
      const d = await MqttDevice.connect(s.url, id);
      devices.push(d);
      await d.state({ fw: i < 4 ? ID1 : ID2, ip: "127.0.0.1", sleep: 3600 });
    }
    await eventually(async () => (await bridge.request("devices", {})).length === 5, "devices known");
  });
  after(async () => {
    for (const d of devices) await d.close();
    await bridge.close();
    await s.stop();
    t.remove();
  });

  const refused = (request: Record<string, unknown>, message: RegExp) =>
    assert.rejects(bridge.request("rollout/create", request as never), { message });

  it("refuses bad input with clear errors", async () => {
    await refused(
      { firmware: "sensor@9.9", tag: "x" },
      /^No firmware "sensor" version "9\.9" is in the store\./,
    );
    await refused({ firmware: "sensor", devices: [] }, /^The device list is empty/);
    await refused({ firmware: "sensor" }, /^Say which devices the rollout is for/);
    await refused(
      { firmware: "sensor", tag: "k1", successThreshold: 120 },
      /success threshold must be a percentage from 0 to 100, not 120/,
    );
    await refused(
      { firmware: "sensor", devices: ["k1"], groups: [{ count: 1, errorThreshold: -5 }] },
      /Group 1's error threshold must be a percentage from 0 to 100, not -5/,
    );
    await refused(
      { firmware: "sensor", devices: ["k1", "nope"] },
      /^No device "nope" has reported its state to this server/,
    );
    await refused(
      { firmware: "sensor", tag: "nobody" },
      /^No device that reported its state carries the tag "nobody"\. Tag devices with `mpota rollout tag DEVICE nobody`/,
    );
    await refused({ firmware: "sensor", line: "lamp" }, /^No device runs a firmware of the line "lamp"/);
    await refused(
      { firmware: "sensor@2.0", devices: ["k5"] },
      /^The selected device \(k5\) already runs sensor 2\.0: there is nothing to roll out\.$/,
    );
    await assert.rejects(
      bridge.request("rollout/show", { id: "r-none" }),
      /There is no rollout "r-none"\. `mpota rollout list` shows them\.$/,
    );
    await assert.rejects(bridge.request("rollout/pause", {} as never), /needs "id"/);
    assert.deepEqual(await bridge.request("rollout/list", {}), []);
  });

  it("tags devices and rolls out by tag; a device cannot be in two active rollouts", async () => {
    assert.deepEqual(await bridge.request("device/tags", { id: "k1", tags: ["garden", "batt"] }), {
      id: "k1",
      tags: ["batt", "garden"],
    });
    await bridge.request("device/tags", { id: "k2", tags: ["garden"] });
    await bridge.request("device/tags", { id: "k5", tags: ["garden"] });
    assert.deepEqual(await bridge.request("device/tags", { id: "k2" }), { id: "k2", tags: ["garden"] });
    await assert.rejects(
      bridge.request("device/tags", { id: "k2", tags: ["no spaces"] }),
      /"no spaces" is not a tag/,
    );
    await assert.rejects(
      bridge.request("device/tags", { id: "ghost", tags: [] }),
      /No device "ghost" is known/,
    );

    const progress: RolloutProgressMessage[] = [];
    const first = await bridge.request("rollout/create", {
      firmware: "sensor@2.0",
      tag: "garden",
      groups: "rest",
      name: "garden beds",
    });
    assert.equal(first.state, "running");
    assert.deepEqual(first.selector, { kind: "tag", tag: "garden" });
    assert.equal(first.counts.total, 3);
    assert.equal(first.counts.done, 1, "k5 already runs 2.0");
    assert.equal(
      first.counts.scheduled,
      2,
      "sleepy devices get their command at once, to take at their wake",
    );
    // The progress is retained on the broker for dashboards.
    // A dashboard: an admin client.
    const watcher = await connectAsync(s.url, { reconnectPeriod: 0 });
    watcher.on("message", (topic, payload) => {
      if (topic === `mpota/bridge/rollouts/${first.id}`) progress.push(JSON.parse(payload.toString()));
    });
    await watcher.subscribeAsync("mpota/bridge/rollouts/+", { qos: 1 });
    await eventually(() => progress.length > 0, "retained progress");
    assert.equal(progress[0]?.id, first.id);
    assert.equal(progress[0]?.counts.total, 3);
    await watcher.endAsync();

    // A device the rollout holds is not updated by hand, and its firmware is not removed under it.
    await assert.rejects(bridge.request("update", { device: "k2", firmware: "sensor@1.0" }), {
      message:
        `Device k2 is in rollout ${first.id} ("garden beds") (running; the device is scheduled there), which updates it ` +
        `to sensor 2.0. Let the rollout do it, or abort the rollout first (\`mpota rollout abort ${first.id}\`).`,
    });
    await assert.rejects(bridge.request("firmware/remove", { id: "sensor@2.0" }), {
      message: `sensor 2.0 is the target of active rollout ${first.id} ("garden beds"). Let it finish or abort it first (\`mpota rollout abort ${first.id}\`).`,
    });
    assert.equal((await bridge.request("firmware/list", {})).length, 2, "nothing removed");
    await assert.rejects(
      bridge.request("rollout/create", { firmware: "sensor@2.0", devices: ["k3", "k2", "k1"] }),
      {
        message:
          "Refused: a device can be in only one active rollout, and k1, k2 are in active rollout " +
          `${first.id} ("garden beds"). Wait for it to end, abort it (\`mpota rollout abort ${first.id}\`), or leave those devices out.`,
      },
    );
    const byName = await bridge.request("rollout/show", { id: "garden beds" });
    assert.equal(byName.id, first.id);
    assert.deepEqual(
      byName.devices.map((d) => [d.device, d.status, d.sleepy]),
      [
        ["k1", "scheduled", true],
        ["k2", "scheduled", true],
        ["k5", "done", false],
      ],
    );
    const aborted = await bridge.request("rollout/abort", { id: first.id, reason: "wrong build" });
    assert.equal(aborted.reason, "Aborted by hand: wrong build");
    assert.equal(aborted.counts.cancelled, 2);
    // Their commands were withdrawn with the cancelled jobs; the devices are free again.
    const jobs = await bridge.request("jobs", {});
    assert.deepEqual(
      jobs.map((j) => j.state),
      ["cancelled", "cancelled"],
    );
    const second = await bridge.request("rollout/create", {
      firmware: "sensor@2.0",
      devices: ["k3", "k2", "k1"],
    });
    assert.equal(second.state, "running");
    await bridge.request("rollout/abort", { id: second.id });
  });

  it("starts at the time asked for", async () => {
    const startAt = Date.now() + 1500;
    const created = await bridge.request("rollout/create", {
      firmware: "sensor@2.0",
      devices: ["k4"],
      startAt: new Date(startAt).toISOString(),
    });
    assert.equal(created.state, "scheduled");
    assert.equal(created.startAt, startAt);
    assert.equal(created.counts.pending, 1);
    assert.deepEqual(await bridge.request("jobs", { device: "k4" }), []);
    const started = await eventually(async () => {
      const r = await bridge.request("rollout/show", { id: created.id });
      return r.state === "running" ? r : undefined;
    }, "started");
    assert.ok((started.startedAt ?? 0) >= startAt);
    assert.equal(started.counts.scheduled, 1);
    await bridge.request("rollout/abort", { id: created.id });
  });
});

describe("a server without a signing key", () => {
  it("refuses rollouts with the reason", async () => {
    const t = tempDir();
    const s = await startTestServer(t.dir, { key: undefined });
    const bridge = await BridgeClient.connect({ connection: { url: s.url } });
    try {
      await assert.rejects(
        bridge.request("rollout/create", { firmware: "sensor", tag: "x" }),
        /This server has no signing key, so it cannot push updates\. Start it with --key FILE/,
      );
    } finally {
      await bridge.close();
      await s.stop();
      t.remove();
    }
  });
});
