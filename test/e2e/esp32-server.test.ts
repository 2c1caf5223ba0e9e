import assert from "node:assert/strict";
import { createServer } from "node:net";
import { after, before, describe, test } from "node:test";
import { Esp32Board } from "../../src/emulator/esp32-board.ts";
import { ESP32_FACTORY_TABLE } from "../../src/emulator/esp32-partition-table.ts";
import { ESP32_TYPICAL } from "../../src/emulator/esp32-timing.ts";
import { BridgeClient } from "../../src/server/bridge/bridge-client.ts";
import { SimulatedEsp32Device } from "../../src/simulator/simulated-esp32-device.ts";
import { jobEnd } from "../server/support/job-suite.ts";
import { FAST_TIMINGS, startTestServer, type TestServer, tempDir } from "../server/support/test-server.ts";
import { eventually } from "../server/support/wait.ts";
import { provisioned } from "../simulator/support.ts";
import { buildEsp32AppImage, esp32Identity } from "../support/esp32-image.ts";

// The ESP32 story with nothing faked but the chip: the real server (embedded
// Aedes, SQLite or PostgreSQL, the HTTP listener with the device route), the
// unmodified agent from device/ under MicroPython on the emulated ESP32
// (partition table, otadata, ESP-IDF's bootloader with its rollback), the
// image fetched over real loopback HTTP. What is checked is what a user
// sees: the job's end and reason, the registry, the slot that boots.
const A = { size: 180_000, seed: 61, banner: "v1.26.0 on 2025-08-09" };
const B = { size: 260_000, seed: 62, banner: "v1.27.0 on 2025-12-09" };
const C = { size: 240_000, seed: 63, banner: "v1.27.1 on 2026-02-01" };
const IMAGE_A = buildEsp32AppImage(A);
const IMAGE_B = buildEsp32AppImage(B);
const IMAGE_C = buildEsp32AppImage(C);
const FW_A = esp32Identity(A).slice(0, 32);
const FW_B = esp32Identity(B).slice(0, 32);
const FW_C = esp32Identity(C).slice(0, 32);

describe("server + real MicroPython agent + emulated ESP32 (pull into the other slot)", () => {
  const data = tempDir("mpota-e2e-esp32-");
  let s: TestServer;
  let bridge: BridgeClient;
  const devices: SimulatedEsp32Device[] = [];

  before(async () => {
    s = await startTestServer(data.dir, {
      http: { host: "127.0.0.1", port: 0 },
      timings: { ...FAST_TIMINGS, firstAnswerMs: 15_000, verifyTimeoutMs: 15_000 },
    });
    bridge = await BridgeClient.connect({ connection: { url: s.url } });
    for (const [image, version] of [
      [IMAGE_A, "1.0"],
      [IMAGE_B, "2.0"],
      [IMAGE_C, "3.0"],
    ] as const) {
      await bridge.request("firmware/add", {
        image: Buffer.from(image).toString("base64"),
        name: "esp32-sensor",
        version,
      });
    }
  });
  after(async () => {
    for (const d of devices) await d.stop();
    await bridge.close();
    await s.stop();
    data.remove();
  });

  async function esp32(id: string, options: { sleepSeconds?: number; factory?: boolean } = {}) {
    const access = await provisioned(s, id);
    const d = new SimulatedEsp32Device({
      id,
      broker: access.broker,
      firmware: IMAGE_A,
      ...(options.factory ? { table: ESP32_FACTORY_TABLE } : {}),
      sleepSeconds: options.sleepSeconds ?? 0,
      agent: access.agent,
    });
    devices.push(d);
    await d.start();
    await seen(id, FW_A);
    return d;
  }

  const seen = (id: string, fw: string) =>
    eventually(
      async () => (await bridge.request("devices", {})).find((d) => d.id === id && d.fw === fw),
      `${id} on ${fw}`,
      30_000,
    );

  test("an update from slot A to B: fetched, switched, confirmed; the registry shows the chip and the new identity", async () => {
    const d = await esp32("esp-hall");
    const before = await seen("esp-hall", FW_A);
    assert.equal(before.chip, "esp32");
    const job = await bridge.request("update", { device: "esp-hall", firmware: "esp32-sensor@2.0" });
    const end = await jobEnd(bridge, job.id, 60_000);
    assert.equal(end.state, "succeeded", end.error ?? "");
    await seen("esp-hall", FW_B);
    assert.equal(d.fw, FW_B);
    // The bootloader's view: ota_1 holds B byte for byte and was confirmed (VALID), so a reset stays there.
    const ota1 = d.board.partitions().find((p) => p.label === "ota_1");
    assert.ok(ota1);
    assert.deepEqual(Buffer.from(d.board.read(ota1.address, IMAGE_B.length)), Buffer.from(IMAGE_B));
    assert.equal(d.board.runningLabel, "ota_1");
    await eventually(
      () => d.board.otadata()?.some((e) => e.slot === "ota_1" && e.state === "VALID"),
      "B confirmed (its otadata entry VALID)",
    );
    await d.reset("power-on");
    await seen("esp-hall", FW_B);
    assert.equal(d.fw, FW_B);
  });

  test("a firmware that crashes before confirming is rolled back by the bootloader; the job fails with that reason", async () => {
    const d = await esp32("esp-shed");
    d.setBehaviour(FW_C, "crash");
    const job = await bridge.request("update", { device: "esp-shed", firmware: "esp32-sensor@3.0" });
    const end = await jobEnd(bridge, job.id, 60_000);
    assert.equal(end.state, "failed");
    assert.match(end.error ?? "", /rolled back/);
    assert.match(end.error ?? "", new RegExp(FW_C));
    // Back on A, which reports and runs.
    await seen("esp-shed", FW_A);
    assert.equal(d.fw, FW_A);
  });

  test("a deep-sleeping ESP32 takes its update at a wake and stays on it", async () => {
    const d = await esp32("esp-garden", { sleepSeconds: 3600 });
    const job = await bridge.request("update", { device: "esp-garden", firmware: "esp32-sensor@2.0" });
    d.wake();
    const end = await jobEnd(bridge, job.id, 60_000);
    assert.equal(end.state, "succeeded", end.error ?? "");
    assert.equal(d.fw, FW_B);
  });

  test("a board without a second app slot is refused before anything is sent", async () => {
    const d = await esp32("esp-one-slot", { factory: true });
    await assert.rejects(
      bridge.request("update", { device: "esp-one-slot", firmware: "esp32-sensor@2.0" }),
      /second app slot|OTA variant/,
    );
    assert.equal(d.fw, FW_A);
  });
});

/** A loopback port free right now (the restarted server must listen where the signed URL points). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolve(port));
    });
  });
}

describe("the server stopped in the middle of an ESP32's fetch and started again", () => {
  const data = tempDir("mpota-e2e-esp32-restart-");
  after(() => data.remove());

  test("the job is taken up again and the device finishes the image from where it stopped", async () => {
    const ports = { http: await freePort(), mqtt: await freePort() };
    const start = () =>
      startTestServer(data.dir, {
        http: { host: "127.0.0.1", port: ports.http },
        broker: { kind: "embedded", host: "127.0.0.1", port: ports.mqtt },
        timings: { ...FAST_TIMINGS, firstAnswerMs: 20_000, verifyTimeoutMs: 20_000 },
      });
    let s = await start();
    let bridge = await BridgeClient.connect({ connection: { url: s.url } });
    for (const [image, version] of [
      [IMAGE_A, "1.0"],
      [IMAGE_B, "2.0"],
    ] as const) {
      await bridge.request("firmware/add", {
        image: Buffer.from(image).toString("base64"),
        name: "esp32-sensor",
        version,
      });
    }
    const access = await provisioned(s, "esp-attic");
    // The datasheet's flash timing (45 ms per sector erase), so the fetch takes seconds, not milliseconds.
    const board = new Esp32Board({ timing: { ...ESP32_TYPICAL, bootMs: 0 } });
    const d = new SimulatedEsp32Device({
      id: "esp-attic",
      broker: access.broker,
      board,
      firmware: IMAGE_A,
      agent: { ...access.agent, config: { ...access.agent.config, RETRY_MS: 500 } },
    });
    try {
      await d.start();
      await eventually(
        async () => (await bridge.request("devices", {})).find((x) => x.id === "esp-attic" && x.fw === FW_A),
        "esp-attic on A",
        30_000,
      );
      const job = await bridge.request("update", { device: "esp-attic", firmware: "esp32-sensor@2.0" });
      const ota1 = board.partitions().find((p) => p.label === "ota_1");
      assert.ok(ota1);
      // Stop the server once the device has written the first blocks of B, long before the end.
      await eventually(
        () => board.read(ota1.address + 8 * 4096, 1)[0] !== 0xff,
        "a few blocks of B written",
        30_000,
      );
      await bridge.close();
      await s.stop();
      assert.notDeepEqual(Buffer.from(board.read(ota1.address, IMAGE_B.length)), Buffer.from(IMAGE_B));
      s = await start();
      bridge = await BridgeClient.connect({ connection: { url: s.url } });
      const end = await jobEnd(bridge, job.id, 60_000);
      assert.equal(end.state, "succeeded", end.error ?? "");
      assert.ok(
        end.steps.some((x) => x.kind === "interrupted"),
        `an interrupted step in ${end.steps.map((x) => x.kind).join(", ")}`,
      );
      assert.equal(d.fw, FW_B);
      assert.deepEqual(Buffer.from(board.read(ota1.address, IMAGE_B.length)), Buffer.from(IMAGE_B));
      // The new server served the rest only: the device asked from what it had written (HTTP Range).
      const fetches = s.logs.find("device fetch started", { device: "esp-attic" });
      assert.ok(fetches.length >= 1, "the restarted server served the device");
      assert.ok(
        fetches.every((line) => (line.from as number) > 0),
        `fetches from ${fetches.map((line) => line.from).join(", ")}`,
      );
    } finally {
      await d.stop();
      await bridge.close();
      await s.stop();
    }
  });
});
