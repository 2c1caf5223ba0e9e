import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { connectAsync } from "mqtt";
import { jobText } from "../../src/cli/jobs.ts";
import { signedBytes } from "../../src/protocol/command-signature.ts";
import type { JobProgressMessage } from "../../src/server/api/api.ts";
import { BridgeClient } from "../../src/server/bridge/bridge-client.ts";
import { buildEsp32AppImage, esp32Identity } from "../support/esp32-image.ts";
import { Esp32Device } from "./support/esp32-device.ts";
import { jobEnd, kinds } from "./support/job-suite.ts";
import { startTestServer, type TestServer, tempDir } from "./support/test-server.ts";
import { eventually } from "./support/wait.ts";

const A = buildEsp32AppImage({ size: 200_000, seed: 91, banner: "v1.26.0 on 2025-08-09" });
const B = buildEsp32AppImage({ size: 300_000, seed: 92, banner: "v1.27.0 on 2025-12-09" });
const A_ID = esp32Identity({ seed: 91 }).slice(0, 32);
const B_ID = esp32Identity({ seed: 92 }).slice(0, 32);
const B_SHA = createHash("sha256").update(B).digest("hex");
const SET_BOOT = "set_boot refused the image: OSError(-5379) ESP_ERR_OTA_VALIDATE_FAILED";

/** A server with its HTTP listener (the device route) on a free loopback port, and the two ESP32 releases. */
async function startPullServer(
  dir: string,
  o: { port?: number; stallMs?: number } = {},
): Promise<TestServer> {
  const s = await startTestServer(dir, {
    http: { host: "127.0.0.1", port: o.port ?? 0 },
    pullStallMs: o.stallMs ?? 400,
  });
  for (const [bytes, version] of [
    [A, "1.0"],
    [B, "2.0"],
  ] as const) {
    if (!(await s.server.storage.firmware.get(bytes === A ? A_ID : B_ID)))
      await s.server.library.add({ bytes, name: "board", version });
  }
  return s;
}

async function esp32(s: TestServer, id: string): Promise<Esp32Device> {
  const login = await s.provision(id);
  const dev = await Esp32Device.connect(s.url, id, login, A_ID, s.server.commandKey.publicKey);
  await dev.state();
  await eventually(async () => (await s.server.storage.devices.get(id))?.state?.v === 3, `${id} known`);
  return dev;
}

/**
 * An ESP32 that took its update's pull command and acked it, with the job
 * now following its fetch: each test's common start.
 */
async function pulling(s: TestServer, bridge: BridgeClient, id: string) {
  const dev = await esp32(s, id);
  const job = await bridge.request("update", { device: id, firmware: "board@2.0" });
  const cmd = await dev.pullCommand();
  await dev.report({ job: job.id, ready: true, pull: true });
  await phase(s, job.id, "pushing");
  return { dev, job, cmd };
}

async function phase(s: TestServer, job: string, wanted: string): Promise<void> {
  await eventually(async () => (await s.server.storage.jobs.get(job))?.phase === wanted, `job ${wanted}`);
}

async function stepCount(s: TestServer, job: string, kind: string): Promise<number> {
  return (await s.server.storage.jobs.steps(job)).filter((step) => step.kind === kind).length;
}

describe("ESP32 pull (contract v3): a scripted device against the real server", () => {
  const t = tempDir("mpota-esp32-pull-");
  let s: TestServer;
  let bridge: BridgeClient;

  before(async () => {
    s = await startPullServer(t.dir);
    bridge = await BridgeClient.connect({ connection: { url: s.url } });
  });
  after(async () => {
    await bridge.close();
    await s.stop();
    t.remove();
  });

  it("updates an ESP32: signed pull, the device fetches and reports, done, the new firmware -> succeeded", async () => {
    const dev = await esp32(s, "esp-1");
    const watcher = await connectAsync(s.url, { reconnectPeriod: 0 });
    const progress: JobProgressMessage[] = [];
    watcher.on("message", (_topic, payload) => {
      if (payload.length > 0) progress.push(JSON.parse(payload.toString()) as JobProgressMessage);
    });
    const job = await bridge.request("update", { device: "esp-1", firmware: "board@2.0" });
    await watcher.subscribeAsync(`mpota/bridge/jobs/${job.id}`, { qos: 1 });
    const cmd = await dev.pullCommand();
    const url = `${s.server.deviceUrl}/device/firmware/${B_ID}`;
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/device\/firmware\/[0-9a-f]{32}$/);
    assert.deepEqual(
      { v: cmd.v, op: cmd.op, dev: cmd.dev, job: cmd.job, fw: cmd.fw, size: cmd.size, ver: cmd.ver },
      { v: 3, op: "pull", dev: "esp-1", job: job.id, fw: B_ID, size: B.length, ver: "2.0" },
    );
    assert.equal(cmd.sha, B_SHA);
    assert.equal(cmd.url, url);
    assert.equal(
      signedBytes(cmd).toString(),
      `mpota-cmd/3\nesp-1\n${cmd.seq}\npull\n${job.id}\n${B_ID}\n${B.length}\n2.0\n0\n${B_SHA}\n${url}`,
    );
    await dev.report({ job: job.id, ready: true, pull: true });
    await phase(s, job.id, "pushing");
    const fetched = await dev.fetch(cmd);
    assert.deepEqual(fetched, { status: 200, contentRange: null, got: B.length });
    assert.equal(await dev.finish(cmd), true);
    assert.ok(dev.slot.equals(Buffer.from(B)), "the other slot holds the image");
    dev.fw = B_ID;
    await dev.state({ run: "ota_1" });
    const end = await jobEnd(bridge, job.id);
    await watcher.endAsync();
    assert.equal(end.state, "succeeded", end.error ?? "");
    assert.deepEqual(kinds(end), ["created", "command", "ack", "push-started", "push-done", "succeeded"]);
    assert.equal(
      end.steps.find((x) => x.kind === "ack")?.message,
      "Device is ready; it fetches the release itself (from 127.0.0.1).",
    );
    assert.match(
      end.steps.find((x) => x.kind === "push-done")?.message ?? "",
      /^Device esp-1 fetched 300000 bytes into its other slot in \d+\.\d s, checked their SHA-256 and switched to it\. Waiting for the device to boot it and report\.$/,
    );
    // The device's own reports reached the job's progress topic.
    assert.ok(progress.some((p) => p.state === "pushing" && p.bytes > 0 && p.bytes < B.length));
    // `mpota jobs show`: the image's size, and no push address (the device fetched it).
    assert.deepEqual([job.delivery, job.fetchedByDevice, end.fetchedByDevice], ["esp32-pull", true, true]);
    const shown = jobText(end);
    assert.match(
      shown,
      new RegExp(`^Job ${job.id}: esp-1 to firmware board 2\\.0 \\(${B_ID}, ${B.length} bytes\\)\n`),
    );
    assert.doesNotMatch(shown, /address/);
    const device = await bridge.request("device", { id: "esp-1" });
    assert.deepEqual([device.fw, device.v, device.chip, device.firmware?.version], [B_ID, 3, "esp32", "2.0"]);
    // Its job is over: the route no longer gives it the image.
    assert.equal((await dev.fetch(cmd)).status, 403);
    await dev.close();
  });

  it("an error the device reports fails the job with that text (an image set_boot refuses is not tried again)", async () => {
    const { dev, job, cmd } = await pulling(s, bridge, "esp-2");
    await dev.fetch(cmd);
    await dev.report({ job: job.id, error: SET_BOOT });
    const end = await jobEnd(bridge, job.id);
    assert.equal(end.state, "failed");
    assert.equal(end.attempt, 1);
    assert.match(
      end.error ?? "",
      new RegExp(`^Device esp-2 reports: ${SET_BOOT.replace(/[()]/g, "\\$&")} Gave up after 1 try\\.`),
    );
    await dev.close();
  });

  it("a state reporting the rollback of the job's firmware fails the job: rolled back", async () => {
    const { dev, job, cmd } = await pulling(s, bridge, "esp-3");
    await dev.fetch(cmd);
    await dev.finish(cmd);
    await phase(s, job.id, "verifying");
    // B booted, never confirmed; the bootloader went back to A: the agent says so once.
    await dev.state({ rb: { job: job.id, fw: B_ID } });
    const end = await jobEnd(bridge, job.id);
    assert.equal(end.state, "failed");
    assert.match(
      end.error ?? "",
      new RegExp(
        `^rolled back: firmware ${B_ID} booted but did not confirm; the bootloader went back to ${A_ID}\\.`,
      ),
    );
    assert.deepEqual(kinds(end).slice(-2), ["rolled-back", "failed"]);
    await dev.close();
  });

  it("a device that takes the command and never fetches is silent", async () => {
    const dev = await esp32(s, "esp-4");
    const job = await s.server.runner.create("esp-4", "board@2.0", { maxAttempts: 1 });
    await dev.pullCommand();
    await dev.report({ job: job.id, ready: true, pull: true });
    const end = await jobEnd(bridge, job.id);
    assert.equal(end.state, "failed");
    assert.match(
      end.error ?? "",
      new RegExp(
        `^Device esp-4 took the pull command but reported no progress fetching http://127\\.0\\.0\\.1:\\d+/device/firmware/${B_ID} within 1\\.5 s\\.`,
      ),
    );
    assert.equal(dev.fetches.length, 0);
    // Its give-up hint names no push by hand (an ESP32 has no OTA receiver to push to).
    assert.match(
      end.error ?? "",
      / Gave up after 1 try\. When the cause is fixed, run `mpota update esp-4 board@2\.0` again\.$/,
    );
    await dev.close();
  });

  it("a fetch that stalls is stopped; the next try resumes where it stopped, with Range", async () => {
    const { dev, job, cmd } = await pulling(s, bridge, "esp-5");
    const first = await dev.fetch(cmd, { stopAfter: 100_000 });
    assert.deepEqual(first, { status: 200, contentRange: null, got: 100_000 });
    // No report for the stall limit: stopped, then a new try follows the device again.
    await eventually(async () => (await stepCount(s, job.id, "push-started")) === 2, "a second try");
    const second = await dev.fetch(cmd);
    assert.deepEqual(second, { status: 206, contentRange: `bytes 100000-299999/${B.length}`, got: B.length });
    assert.equal(await dev.finish(cmd), true);
    dev.fw = B_ID;
    await dev.state();
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
    assert.equal(
      end.steps.filter((x) => x.kind === "push-started")[1]?.message.replace(/, by \S+\.$/, "."),
      "Following the device's fetch again; it resumes from the blocks it already wrote (HTTP Range). Try 2 of 5, fetched by the device at 127.0.0.1.",
    );
    assert.match(
      end.steps.find((x) => x.kind === "push-failed")?.message ?? "",
      /^The pull of http:\S+ broke off at 65536 of 300000 bytes: no report from device esp-5 for 0\.4 s\. The device keeps what it wrote and resumes from there \(HTTP Range\) on the next try\.$/,
    );
    assert.ok(dev.slot.equals(Buffer.from(B)));
    await dev.close();
  });

  it("a battery low mid-pull tells the user to charge the device; the next try resumes where it stopped", async () => {
    const { dev, job, cmd } = await pulling(s, bridge, "esp-7");
    await dev.fetch(cmd, { stopAfter: 100_000 });
    // As device/mpota_pull.py below MIN_VBAT: it keeps the blocks it wrote and says why it stopped.
    await dev.report({ job: job.id, error: "battery low" });
    // The server asks again with the command; the device, charged, takes it and resumes.
    await eventually(async () => (await stepCount(s, job.id, "command")) === 2, "the command again");
    await dev.report({ job: job.id, ready: true, pull: true });
    await eventually(async () => (await stepCount(s, job.id, "push-started")) === 2, "a second try");
    const second = await dev.fetch(cmd);
    assert.equal(second.contentRange, `bytes 100000-299999/${B.length}`);
    assert.equal(await dev.finish(cmd), true);
    dev.fw = B_ID;
    await dev.state();
    const end = await jobEnd(bridge, job.id);
    assert.equal(end.state, "succeeded", end.error ?? "");
    // `mpota jobs show`: what stopped it, what to do, what happens next.
    const shown = jobText(end).split("\n");
    assert.deepEqual(
      shown.filter((line) => / (push-failed|retry) /.test(line)).map((line) => line.slice(16)),
      [
        "push-failed    Device esp-7 stopped the pull at 65536 of 300000 bytes: battery low (below the MIN_VBAT in its config). Charge it or put it on power. The device keeps what it wrote and resumes from there (HTTP Range) on the next try. Each stop for the battery uses one of the job's tries.",
        "retry          Try 1 of 5 failed; asking the device again in 0.1 s (or at once when the device takes the retained command).",
      ],
    );
    await dev.close();
  });
});

describe("ESP32 jobs speak of the device's fetch, not of a push to OTA mode", () => {
  const t = tempDir("mpota-esp32-words-");
  let s: TestServer;
  let bridge: BridgeClient;
  const ESP8266_WORDS = /OTA mode|receiver|push|datagram/i;

  before(async () => {
    s = await startPullServer(t.dir);
    bridge = await BridgeClient.connect({ connection: { url: s.url } });
  });
  after(async () => {
    await bridge.close();
    await s.stop();
    t.remove();
  });

  it("every step of an update, from the command to succeeded, in the ESP32's words", async () => {
    const dev = await esp32(s, "esp-6");
    const job = await bridge.request("update", { device: "esp-6", firmware: "board@2.0" });
    const cmd = await dev.pullCommand();
    await dev.mqtt.status("ota");
    await eventually(async () => (await stepCount(s, job.id, "device-status")) === 1, "the status noted");
    await dev.report({ job: job.id, ready: true, pull: true });
    await phase(s, job.id, "pushing");
    // A state before it fetches (it reconnected): the old firmware, still running.
    await dev.state({ rssi: -61 });
    await eventually(async () => (await stepCount(s, job.id, "device-state")) === 1, "the state noted");
    await dev.fetch(cmd);
    await dev.finish(cmd);
    dev.fw = B_ID;
    await dev.state({ run: "ota_1" });
    const end = await jobEnd(bridge, job.id);
    assert.equal(end.state, "succeeded", end.error ?? "");
    const says = (kind: string) => end.steps.find((x) => x.kind === kind)?.message;
    assert.equal(says("device-status"), "Device says it is fetching the image into its other slot.");
    assert.equal(says("device-state"), `Device reported firmware ${A_ID} during the fetch.`);
    assert.match(
      says("push-started") ?? "",
      /^Following the device's fetch of the image\. Try 1 of 5, fetched by the device at 127\.0\.0\.1, by \S+\.$/,
    );
    for (const step of end.steps) assert.doesNotMatch(step.message, ESP8266_WORDS, step.kind);
    await dev.close();
  });

  it("a device back on its old firmware after the switch: the wrong-firmware failure says why in its words", async () => {
    const dev = await esp32(s, "esp-7");
    const job = await s.server.runner.create("esp-7", "board@2.0", { maxAttempts: 1 });
    const cmd = await dev.pullCommand();
    await dev.report({ job: job.id, ready: true, pull: true });
    await phase(s, job.id, "pushing");
    await dev.fetch(cmd);
    await dev.finish(cmd);
    await phase(s, job.id, "verifying");
    await assert.rejects(s.server.runner.cancel(job.id), {
      message: `Job ${job.id} cannot be cancelled now: it is verifying (the device has taken the command and may be fetching the image or booting it). Cancelling would leave the device without a retry path; wait for the job to finish.`,
    });
    await dev.state();
    const end = await jobEnd(bridge, job.id);
    assert.equal(end.state, "failed");
    assert.equal(
      end.error,
      `Device esp-7 came back running ${A_ID}, not ${B_ID} (board 2.0): the new image did not take (the device booted its old slot without reporting a rollback; a deep sleep right after set_boot boots the old slot again). Gave up after 1 try. When the cause is fixed, run \`mpota update esp-7 board@2.0\` again.`,
    );
    for (const step of end.steps) assert.doesNotMatch(step.message, ESP8266_WORDS, step.kind);
    await dev.close();
  });
});

describe("ESP32 pull: the progress while the device fetches", () => {
  const t = tempDir("mpota-esp32-progress-");
  let s: TestServer;
  let bridge: BridgeClient;

  before(async () => {
    s = await startPullServer(t.dir, { stallMs: 15_000 });
    bridge = await BridgeClient.connect({ connection: { url: s.url } });
  });
  after(async () => {
    await bridge.close();
    await s.stop();
    t.remove();
  });

  it("is stored as it goes: a page opened mid-pull (here, or on another instance) shows the bytes fetched", async () => {
    const { dev, job, cmd } = await pulling(s, bridge, "esp-p");
    await dev.fetch(cmd, { stopAfter: 70_000 });
    // The device reported 65536 bytes; the job is still following its fetch.
    const shown = await eventually(async () => {
      const stored = await s.server.storage.jobs.get(job.id);
      return stored?.progress.bytes === 65_536 ? stored : undefined;
    }, "the progress stored");
    assert.equal(shown.phase, "pushing");
    const view = await bridge.request("job", { id: job.id });
    assert.deepEqual([view.state, view.bytes, view.total, view.percent], ["pushing", 65_536, B.length, 21]);
    await bridge.request("job/cancel", { id: job.id }).catch(() => undefined);
    await dev.close();
  });
});

describe("ESP32 pull: the server killed mid-transfer and started again", () => {
  const t = tempDir("mpota-esp32-restart-");

  after(() => t.remove());

  it("resumes the job; the device's next fetch with Range is served by the new server", async () => {
    let s = await startPullServer(t.dir);
    const port = s.server.http?.address.port as number;
    const dev = await esp32(s, "esp-r");
    const bridge1 = await BridgeClient.connect({ connection: { url: s.url } });
    const job = await bridge1.request("update", { device: "esp-r", firmware: "board@2.0" });
    await bridge1.close();
    const cmd = await dev.pullCommand();
    await dev.report({ job: job.id, ready: true, pull: true });
    await phase(s, job.id, "pushing");
    await dev.fetch(cmd, { stopAfter: 150_000 });
    await s.stop();
    s = await startPullServer(t.dir, { port });
    const bridge = await BridgeClient.connect({ connection: { url: s.url } });
    try {
      await dev.reconnect(s.url);
      await dev.state();
      await eventually(
        async () => (await stepCount(s, job.id, "push-started")) === 2,
        "the job taken up again",
      );
      const resumed = await dev.fetch(cmd);
      assert.deepEqual(resumed, {
        status: 206,
        contentRange: `bytes 150000-299999/${B.length}`,
        got: B.length,
      });
      assert.equal(await dev.finish(cmd), true);
      dev.fw = B_ID;
      await dev.state();
      const end = await jobEnd(bridge, job.id);
      assert.equal(end.state, "succeeded", end.error ?? "");
      assert.equal(
        end.steps.find((x) => x.kind === "interrupted")?.message,
        "The server stopped while the device fetched the image. Following the fetch again in 0.3 s: the device keeps the blocks it wrote and resumes from there (HTTP Range).",
      );
      assert.ok(dev.slot.equals(Buffer.from(B)));
    } finally {
      await dev.close();
      await bridge.close();
      await s.stop();
    }
  });
});

describe("ESP32 pull without an HTTP listener", () => {
  const t = tempDir("mpota-esp32-nohttp-");

  after(() => t.remove());

  it("refuses the update with what to do: the delivery is unavailable", async () => {
    const s = await startTestServer(t.dir);
    try {
      await s.server.library.add({ bytes: A, name: "board", version: "1.0" });
      await s.server.library.add({ bytes: B, name: "board", version: "2.0" });
      const dev = await esp32(s, "esp-n");
      assert.equal(s.server.deviceUrl, undefined);
      await assert.rejects(s.server.runner.create("esp-n", "board@2.0"), {
        message:
          "This server has no HTTP listener, so a device cannot fetch its release from it. Start it with the HTTP API on an address the devices reach (`mpota serve --http-host 0.0.0.0`, or --device-url URL when they reach it through a proxy).",
      });
      await dev.close();
    } finally {
      await s.stop();
    }
  });
});
