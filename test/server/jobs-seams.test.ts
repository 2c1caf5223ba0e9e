import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { connectAsync } from "mqtt";
import type { OtaCommand } from "../../src/protocol/mqtt-contract.ts";
import type { JobProgressMessage } from "../../src/server/api/api.ts";
import { RequestError } from "../../src/server/base/request-error.ts";
import { BridgeClient } from "../../src/server/bridge/bridge-client.ts";
import { imageIdentity } from "../support/images.ts";
import { jobEnd, kinds, V1 } from "./support/job-suite.ts";
import { MqttDevice } from "./support/mqtt-device.ts";
import { bundleIdentity, bundleKind, makeBundle, PullDelivery } from "./support/pull-delivery.ts";
import { startTestServer, type TestServer, tempDir } from "./support/test-server.ts";
import { eventually } from "./support/wait.ts";

const B1 = makeBundle({ "main.py": "print('v1')\n" });
const B2 = makeBundle({ "main.py": `print('v2')\n${"#".repeat(6000)}\n`, "lib/util.py": "X = 2\n" });

/**
 * A device that fetches its release itself: it takes the command, acks,
 * fetches the offered release over HTTP in chunks, reports its progress on
 * `<id>/fetched`, keeps the bytes in its other slot, and comes back
 * reporting the new identity. `failFirst`: its first fetch breaks off half way.
 */
async function pullDevice(
  s: TestServer,
  delivery: PullDelivery,
  id: string,
  options: { ver?: string; failFirst?: boolean } = {},
) {
  const dev = await MqttDevice.connect(s.url, id);
  const ver = options.ver ?? "MicroPython 1.29 bundles";
  const slot: { bytes?: Uint8Array } = {};
  let fetches = 0;
  await dev.state({ fw: bundleIdentity(B1), ip: "127.0.0.1", ver, flash: 65536 });
  dev.client.on("message", (topic, payload) => {
    if (topic !== `mpota/${id}/cmd` || payload.length === 0) return;
    const command = JSON.parse(payload.toString()) as OtaCommand;
    void (async () => {
      await dev.ack({ job: command.job, ready: true, ip: "127.0.0.1", port: 8266 });
      // Fetches until it has the whole release (once offered), trying again after a broken-off fetch.
      while (!(await fetchOnce(command))) await new Promise((resolve) => setTimeout(resolve, 50));
    })();
  });
  const fetchOnce = async (command: OtaCommand): Promise<boolean> => {
    const url = `${delivery.url}/releases/${command.fw}`;
    let response = await fetch(url);
    for (let i = 0; response.status === 404 && i < 200; i++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      response = await fetch(url);
    }
    const bytes = new Uint8Array(await response.arrayBuffer());
    const report = (r: Record<string, unknown>) =>
      dev.publish("fetched", JSON.stringify({ job: command.job, ...r }), false);
    fetches++;
    const chunk = 2048;
    for (let at = chunk; at < bytes.length; at += chunk) {
      if (options.failFirst && fetches === 1 && at >= bytes.length / 2) {
        await report({ bytes: at, total: bytes.length, error: "ENOSPC writing lib/util.py" });
        return false;
      }
      await report({ bytes: at, total: bytes.length });
    }
    slot.bytes = bytes;
    await report({ bytes: bytes.length, total: bytes.length, done: true });
    await dev.state({ fw: bundleIdentity(bytes), ip: "127.0.0.1", ver, flash: 65536 });
    return true;
  };
  return { dev, slot, fetches: () => fetches };
}

describe("a second kind of release with a second delivery (the seams)", () => {
  const t = tempDir();
  const delivery = new PullDelivery();
  let s: TestServer;
  let bridge: BridgeClient;

  before(async () => {
    s = await startTestServer(t.dir, {
      releaseKinds: [bundleKind],
      deliveries: [delivery],
      // A push stops when its lease cannot be renewed in time, and with the fast timings' 1 s lease
      // a stall of about half a second does that: a loaded machine stalls this process that long
      // at times, and the job then ended without its push-done (its steps are asserted here).
      timings: { leaseMs: 10_000 },
    });
    await delivery.attach(s.url);
    bridge = await BridgeClient.connect({ connection: { url: s.url } });
    for (const [bytes, version] of [
      [B1, "1.0"],
      [B2, "2.0"],
    ] as const) {
      await bridge.request("firmware/add", {
        image: Buffer.from(bytes).toString("base64"),
        name: "app",
        version,
      });
    }
    // An ESP8266 image beside them, in the same store.
    await bridge.request("firmware/add", {
      image: Buffer.from(V1).toString("base64"),
      name: "sensor",
      version: "1.0",
    });
  });
  after(async () => {
    await bridge.close();
    await s.stop();
    await delivery.close();
    t.remove();
  });

  it("stores each upload as a release of the kind that recognises it", async () => {
    const list = await bridge.request("firmware/list", {});
    const byName = (name: string, version: string) =>
      list.find((f) => f.name === name && f.version === version);
    assert.equal(byName("app", "2.0")?.id, bundleIdentity(B2));
    assert.equal((await s.server.storage.firmware.get(bundleIdentity(B2)))?.build, "bundle");
    assert.equal(byName("sensor", "1.0")?.id, imageIdentity(V1));
    assert.equal((await s.server.library.kindOf(bundleIdentity(B2))).name, "test-bundle");
    assert.equal((await s.server.library.kindOf(imageIdentity(V1))).name, "esp8266-ota");
  });

  it("runs a job through the real runner: the device fetches the release itself and reports progress", async () => {
    const { dev, slot } = await pullDevice(s, delivery, "shelf");
    await eventually(
      async () => (await bridge.request("devices", {})).some((d) => d.id === "shelf"),
      "shelf known",
    );
    // The release file was written long enough ago to be kept once read: the job reads it once.
    await new Promise((resolve) => setTimeout(resolve, 60));
    const reads = s.server.library.cache.reads;
    const progress: JobProgressMessage[] = [];
    const watcher = await connectAsync(s.url, { reconnectPeriod: 0 });
    watcher.on("message", (_topic, payload) => {
      if (payload.length > 0) progress.push(JSON.parse(payload.toString()) as JobProgressMessage);
    });
    const job = await bridge.request("update", { device: "shelf", firmware: "app@2.0" });
    await watcher.subscribeAsync(`mpota/bridge/jobs/${job.id}`, { qos: 1 });
    const end = await jobEnd(bridge, job.id);
    await watcher.endAsync();
    assert.equal(end.state, "succeeded", end.error ?? "");
    assert.deepEqual(kinds(end), ["created", "command", "ack", "push-started", "push-done", "succeeded"]);
    const done = end.steps.find((step) => step.kind === "push-done");
    assert.equal(
      done?.message,
      `Device fetched ${B2.length} bytes itself. Waiting for the device to boot it and report.`,
    );
    assert.ok(Buffer.from(slot.bytes ?? []).equals(Buffer.from(B2)), "the device's slot holds the release");
    assert.equal(
      createHash("sha256")
        .update(slot.bytes ?? new Uint8Array())
        .digest("hex")
        .slice(0, 32),
      bundleIdentity(B2),
    );
    // The device's own reports reached the job's progress topic.
    assert.ok(progress.some((p) => p.state === "pushing" && p.bytes > 0 && p.bytes < B2.length));
    assert.equal(s.server.library.cache.reads - reads, 1, "read and checked once for the whole job");
    assert.equal((await bridge.request("device", { id: "shelf" })).fw, bundleIdentity(B2));
    await dev.close();
  });

  it("fetches the whole release again after a fetch that broke off", async () => {
    const { dev, fetches } = await pullDevice(s, delivery, "attic", { failFirst: true });
    await eventually(
      async () => (await bridge.request("devices", {})).some((d) => d.id === "attic"),
      "attic known",
    );
    const job = await bridge.request("update", { device: "attic", firmware: "app@2.0" });
    const end = await jobEnd(bridge, job.id);
    assert.equal(end.state, "succeeded", end.error ?? "");
    assert.deepEqual(kinds(end), [
      "created",
      "command",
      "ack",
      "push-started",
      "push-failed",
      "push-started",
      "push-done",
      "succeeded",
    ]);
    assert.match(
      end.steps.find((x) => x.kind === "push-failed")?.message ?? "",
      /stopped fetching: ENOSPC writing lib\/util\.py/,
    );
    assert.equal(fetches(), 2);
    await dev.close();
  });

  it("refuses a release the device cannot take, in the kind's words", async () => {
    const { dev } = await pullDevice(s, delivery, "oldie", { ver: "MicroPython 1.20" });
    await eventually(
      async () => (await bridge.request("devices", {})).some((d) => d.id === "oldie"),
      "oldie known",
    );
    await assert.rejects(
      bridge.request("update", { device: "oldie", firmware: "app@2.0" }),
      (error: unknown) => {
        assert.match(
          (error as Error).message,
          /^app 2\.0 for oldie: the device does not take app bundles \(its agent reports "MicroPython 1\.20"\)/,
        );
        return true;
      },
    );
    await dev.close();
  });

  it("refuses an upload its named kind does not accept", async () => {
    await assert.rejects(
      s.server.library.add({ bytes: V1, name: "app", version: "3.0", kind: "test-bundle" }),
      (error: unknown) =>
        error instanceof RequestError && /app 3\.0 is not an app bundle/.test(error.message),
    );
  });
});
