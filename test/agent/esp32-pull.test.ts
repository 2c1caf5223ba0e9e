import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { AgentDevice } from "../../src/agent-host/agent-device.ts";
import { DEVICE_DIR } from "../../src/agent-host/agent-files.ts";
import { Esp32Board } from "../../src/emulator/esp32-board.ts";
import { ESP32_FACTORY_TABLE } from "../../src/emulator/esp32-partition-table.ts";
import { buildEsp32AppImage, esp32Identity } from "../support/esp32-image.ts";
import { ImageServer, type PullFields, sha256Hex, signedPull } from "./pull-support.ts";
import { brokerHooks, CommandSigner } from "./support.ts";

// The ESP32 pull path end to end under MicroPython 1.27 (wasm): the
// unmodified agent on the emulated ESP32 board (esp32.Partition over
// flash with a partition table, otadata and ESP-IDF's bootloader), a real
// broker (Aedes) and a real HTTP server standing in for the server's
// device route. What is checked is what the server and the board see:
// messages on the topics, HTTP requests, the flash and otadata.

const PASSWORD = "s3cret";
const SLOT = 0x180000;
const signer = new CommandSigner();
const A = { size: 120_000, seed: 11 };
const B = { size: 300_000, seed: 12 };
const imageA = buildEsp32AppImage(A);
const imageB = buildEsp32AppImage(B);
const fwA = esp32Identity(A).slice(0, 32);
const fwB = esp32Identity(B).slice(0, 32);
const pullSource = readFileSync(join(DEVICE_DIR, "mpota_pull.py"), "utf8");

const hooks = brokerHooks();
const { cleanups } = hooks;

interface Rig {
  board: Esp32Board;
  d: AgentDevice;
  server: ImageServer;
  id: string;
}

/** A board flashed with firmware A (OTA layout unless `factory`), its agent online, and an image server. */
async function rig(
  id: string,
  factory = false,
  sleepSeconds = 0,
  battery?: { vbat: number; minVbat: number },
): Promise<Rig> {
  const board = new Esp32Board(factory ? { table: ESP32_FACTORY_TABLE } : {});
  board.writeImage(factory ? "factory" : "ota_0", imageA);
  const server = await ImageServer.start(id, PASSWORD);
  cleanups.push(() => server.close());
  const d = new AgentDevice({
    chip: "esp32",
    esp32: board,
    broker: hooks.broker.url,
    id,
    commandKeys: [signer.modulusHex],
    config: {
      MQTT_USER: id,
      MQTT_PASSWORD: PASSWORD,
      RETRY_MS: 200,
      // The ESP32 fake's ADC.read() is 12 bits over 3.3 V: this scale reads volts.
      ...(battery ? { VBAT_ADC_SCALE: 3.3 / 4095 } : {}),
    },
    files: { "mpota_pull.py": pullSource },
    sleepSeconds,
    ...(battery ?? {}),
  });
  cleanups.push(() => d.close());
  board.boot("power-on");
  const up = d.waitFor("published", (m) => m.topic.endsWith("/status") && m.payload.toString() === "online");
  await d.powerOn();
  await up;
  return { board, d, server, id };
}

const acks = (d: AgentDevice) =>
  d.published.filter((m) => m.topic.endsWith("/ack")).map((m) => JSON.parse(m.payload.toString()));
const states = (d: AgentDevice) =>
  d.published.filter((m) => m.topic.endsWith("/state")).map((m) => JSON.parse(m.payload.toString()));
const statuses = (d: AgentDevice) =>
  d.published.filter((m) => m.topic.endsWith("/status")).map((m) => m.payload.toString());

let nextSeq = 1;
function pull(r: Rig, over: Partial<PullFields> = {}): string {
  const url = over.url ?? r.server.add(fwB, imageB);
  return signedPull(
    {
      dev: r.id,
      seq: nextSeq++,
      job: `j-${r.id}`,
      fw: fwB,
      size: imageB.length,
      ver: "1.28.0",
      down: 0,
      sha: sha256Hex(imageB),
      url,
      ...over,
    },
    signer,
  );
}

/** Publishes a pull and resolves when the device has reset (machine.reset() after set_boot). */
async function pulledAndReset(r: Rig, cmd = pull(r)): Promise<void> {
  const reset = r.d.waitFor("ended", (e) => e.kind === "reset", 60_000);
  await hooks.broker.publish(`mpota/${r.id}/cmd`, cmd, false);
  await reset;
}

/** The chip resets (the agent's machine.reset()): the bootloader picks the slot, the agent boots on it. */
async function rebootAfterReset(r: Rig): Promise<string | undefined> {
  const booted = r.board.boot("software");
  const online = r.d.waitFor(
    "published",
    (m) => m.topic.endsWith("/status") && m.payload.toString() === "online",
  );
  await r.d.boot(2); // HARD_RESET, as esp_restart() reports it
  await online;
  return booted.partition?.label;
}

/** Wraps the board's partition writes to log (label, offset) of every write the agent makes. */
function logWrites(board: Esp32Board): Array<[string, number]> {
  const log: Array<[string, number]> = [];
  const write = board.partitionWrite.bind(board);
  board.partitionWrite = (label: string, offset: number, data: Uint8Array) => {
    log.push([label, offset]);
    return write(label, offset, data);
  };
  return log;
}

const job = (r: Rig) => `j-${r.id}`;

/**
 * Starts a pull that stalls after 150,000 bytes, waits until the record holds 131,072 (saved every
 * 64 KiB), and cuts the power; returns the partition writes and how many came before the cut.
 */
async function cutMidPull(r: Rig): Promise<{ writes: Array<[string, number]>; cutAt: number }> {
  r.server.holdAfter = 150_000;
  const writes = logWrites(r.board);
  const second = r.d.waitFor(
    "published",
    (m) => m.topic.endsWith("/ack") && JSON.parse(m.payload.toString()).got === 131072,
  );
  await hooks.broker.publish(`mpota/${r.id}/cmd`, pull(r), false);
  await second;
  await r.d.powerOff();
  r.board.powerOff();
  return { writes, cutAt: writes.length };
}

describe("ESP32: the agent's state", () => {
  test("v3 with the ELF SHA-256 identity, chip, the free slot's size and the running label", async () => {
    const r = await rig("e32-state");
    const s = states(r.d)[0];
    assert.equal(s.v, 3);
    assert.equal(s.fw, fwA);
    assert.equal(s.chip, "esp32");
    assert.equal(s.slot, SLOT);
    assert.equal(s.run, "ota_0");
    assert.equal(s.wake, "power");
    assert.equal(s.rb, undefined);
  });
});

describe("ESP32: an update by pull", () => {
  test("from slot A to B: acked, streamed with progress, switched, reset, and confirmed after the state went out", async () => {
    const r = await rig("e32-ok");
    await pulledAndReset(r);
    const T = imageB.length;
    const a = acks(r.d);
    assert.deepEqual(a[0], { job: job(r), ready: true, pull: true });
    assert.deepEqual(a.at(-1), { job: job(r), got: T, total: T, done: true });
    const progress = a.slice(1, -1);
    assert.deepEqual(progress[0], { job: job(r), got: 0, total: T });
    assert.deepEqual(
      progress.slice(1).map((p) => p.got),
      Array.from({ length: Math.floor((T - 1) / 65536) }, (_, i) => (i + 1) * 65536),
    );
    assert.equal(statuses(r.d).at(-1), "ota");
    assert.deepEqual(
      r.server.requests.map((q) => [q.status, q.range ?? null]),
      [[200, null]],
    );
    assert.equal(r.board.elfSha256("ota_1")?.slice(0, 32), fwB);
    assert.equal(await rebootAfterReset(r), "ota_1");
    await r.d.waitFor("stdout", (l) => l === `mpota: job ${job(r)} done`);
    const s = states(r.d).at(-1);
    assert.equal(s.fw, fwB);
    assert.equal(s.run, "ota_1");
    assert.equal(s.wake, "hard");
    assert.equal(s.rb, undefined);
    const ota = r.board.otadata();
    assert.ok(
      ota?.some((e) => e.slot === "ota_1" && e.state === "VALID"),
      JSON.stringify(ota),
    );
    assert.deepEqual(
      r.d.fs.files().filter((f) => /mpota_pull\.\d$/.test(f)),
      [],
    );
    // Confirmed: a later reset stays on B.
    r.board.boot("software");
    assert.equal(r.board.runningLabel, "ota_1");
  });

  test("a corrupt transfer is refused at the SHA-256 check: error ack, nothing switched, still on A", async () => {
    const r = await rig("e32-corrupt");
    r.server.corrupt = true;
    const err = r.d.waitFor(
      "published",
      (m) => m.topic.endsWith("/ack") && m.payload.includes('"error"'),
      30_000,
    );
    await hooks.broker.publish(`mpota/${r.id}/cmd`, pull(r), false);
    assert.deepEqual(JSON.parse((await err).payload.toString()), {
      job: job(r),
      error: "sha256 mismatch: the image was corrupted on the way; nothing was switched",
    });
    await r.d.waitFor("published", (m) => m.topic.endsWith("/status") && m.payload.toString() === "online");
    assert.equal(r.d.phase, "running");
    assert.ok(!r.board.otadata()?.some((e) => e.slot === "ota_1"), "otadata does not select ota_1");
    r.board.boot("software");
    assert.equal(r.board.runningLabel, "ota_0");
    assert.deepEqual(
      r.d.fs.files().filter((f) => /mpota_pull\.\d$/.test(f)),
      [],
    );
  });

  test("an image with the right SHA-256 that is no app is refused by set_boot (OSError -5379), still on A", async () => {
    const r = await rig("e32-invalid");
    const junk = Buffer.alloc(70_000, 0x5a);
    const url = r.server.add(fwB, junk);
    const err = r.d.waitFor(
      "published",
      (m) => m.topic.endsWith("/ack") && m.payload.includes('"error"'),
      30_000,
    );
    await hooks.broker.publish(
      `mpota/${r.id}/cmd`,
      pull(r, { size: junk.length, sha: sha256Hex(junk), url }),
      false,
    );
    assert.deepEqual(JSON.parse((await err).payload.toString()), {
      job: job(r),
      error: "set_boot refused the image: OSError(-5379) ESP_ERR_OTA_VALIDATE_FAILED",
    });
    r.board.boot("software");
    assert.equal(r.board.runningLabel, "ota_0");
  });

  test("the server drops the connection mid-transfer: the agent resumes with Range, without rewriting the prefix", async () => {
    const r = await rig("e32-drop");
    r.server.dropAfter = 100_000;
    const writes = logWrites(r.board);
    await pulledAndReset(r);
    const [first, second] = r.server.requests;
    assert.equal(r.server.requests.length, 2);
    assert.equal(first?.range, undefined);
    const kept = Math.floor(100_000 / 4096) * 4096;
    assert.equal(second?.range, `bytes=${kept}-`);
    assert.equal(second?.status, 206);
    // Each block written once: the verified prefix was read back, not fetched or written again.
    const offsets = writes.filter(([l]) => l === "ota_1").map(([, o]) => o);
    assert.deepEqual(
      offsets,
      Array.from({ length: Math.ceil(imageB.length / 4096) }, (_, i) => i * 4096),
    );
    assert.deepEqual(acks(r.d).at(-1), { job: job(r), got: imageB.length, total: imageB.length, done: true });
    assert.equal(await rebootAfterReset(r), "ota_1");
    assert.equal(states(r.d).at(-1).fw, fwB);
  });

  test("a power cut mid-transfer: at the next boot the agent resumes from its record on flash", async () => {
    const r = await rig("e32-cut");
    const { writes, cutAt } = await cutMidPull(r);
    // Power back on: the agent reports A, then goes on with the pull by itself.
    r.board.boot("power-on");
    const reset = r.d.waitFor("ended", (e) => e.kind === "reset", 60_000);
    await r.d.powerOn();
    await reset;
    const resumed = r.server.requests.at(-1);
    // The record keeps got every 64 KiB: 131072 is on flash, the 4 blocks after it are fetched again.
    assert.equal(resumed?.range, "bytes=131072-");
    assert.equal(r.server.requests.length, 2);
    assert.ok(
      writes.slice(cutAt).every(([, o]) => o >= 131072),
      "nothing below the recorded point is written again",
    );
    assert.equal(await rebootAfterReset(r), "ota_1");
    assert.equal(states(r.d).at(-1).fw, fwB);
  });

  test("a pull resumed at boot with the battery below MIN_VBAT writes nothing and says so; charged, it goes on", async () => {
    const r = await rig("e32-batt", false, 0, { vbat: 3.9, minVbat: 3.3 });
    const { writes, cutAt } = await cutMidPull(r);
    // The battery ran down while the board was off.
    r.d.vbat = 3.0;
    r.board.boot("power-on");
    const low = r.d.waitFor(
      "published",
      (m) => m.topic.endsWith("/ack") && JSON.parse(m.payload.toString()).error !== undefined,
    );
    await r.d.powerOn();
    assert.deepEqual(JSON.parse((await low).payload.toString()), { job: job(r), error: "battery low" });
    assert.equal(r.server.requests.length, 1, "no fetch while the battery is low");
    assert.equal(writes.length, cutAt, "nothing written while the battery is low");
    // Charged: after its back-off the agent goes on from its record by itself.
    const reset = r.d.waitFor("ended", (e) => e.kind === "reset", 60_000);
    r.d.vbat = 3.9;
    await reset;
    assert.equal(r.server.requests.at(-1)?.range, "bytes=131072-");
    assert.ok(writes.slice(cutAt).every(([, o]) => o >= 131072));
    assert.equal(await rebootAfterReset(r), "ota_1");
    assert.equal(states(r.d).at(-1).fw, fwB);
  });

  test("a board with one app slot says slot 0 and refuses, with the ack error", async () => {
    const r = await rig("e32-factory", true);
    const s = states(r.d)[0];
    assert.equal(s.slot, 0);
    assert.equal(s.run, "factory");
    const ack = r.d.waitFor("published", (m) => m.topic.endsWith("/ack"));
    await hooks.broker.publish(`mpota/${r.id}/cmd`, pull(r), false);
    assert.deepEqual(JSON.parse((await ack).payload.toString()), {
      job: job(r),
      ready: false,
      error: "no OTA partition: this board has one app slot; reflash it with the OTA variant",
    });
    assert.deepEqual(r.server.requests, []);
  });

  test("a new firmware that dies before confirming is rolled back; the old agent reports rb once", async () => {
    const r = await rig("e32-rb");
    await pulledAndReset(r);
    // B boots (pending verify) and crashes before its agent is up: the next reset goes back to A.
    assert.equal(r.board.boot("software").partition?.label, "ota_1");
    assert.equal(r.board.boot("panic").partition?.label, "ota_0");
    const online = r.d.waitFor(
      "published",
      (m) => m.topic.endsWith("/status") && m.payload.toString() === "online",
    );
    await r.d.boot(2);
    await online;
    const s = states(r.d).at(-1);
    assert.equal(s.fw, fwA);
    assert.equal(s.run, "ota_0");
    assert.deepEqual(s.rb, { job: job(r), fw: fwB });
    await r.d.waitFor("stdout", (l) => l === `mpota: job ${job(r)} rolled back`);
    // The next state (after a reconnect) no longer carries it.
    const again = r.d.nextPublish("state");
    r.d.dropConnections();
    assert.equal(JSON.parse((await again).payload.toString()).rb, undefined);
  });

  test("a deep-sleeping ESP32 takes a retained pull on a wake, hard-resets into B (never sleeps after set_boot) and confirms", async () => {
    const r = await rig("e32-sleepy", false, 60);
    const slept = r.d.waitFor("ended", (e) => e.kind === "deepsleep");
    await slept;
    await hooks.broker.publish(`mpota/${r.id}/cmd`, pull(r), true);
    // The wake: the bootloader's fast path boots the slot that ran before.
    assert.equal(r.board.boot("deepsleep").partition?.label, "ota_0");
    const reset = r.d.waitFor("ended", (e) => e.kind === "reset", 60_000);
    await r.d.boot(4);
    await reset;
    assert.equal(states(r.d).at(-1).wake, "deepsleep");
    assert.deepEqual(acks(r.d).at(-1), { job: job(r), got: imageB.length, total: imageB.length, done: true });
    assert.equal(await rebootAfterReset(r), "ota_1");
    await r.d.waitFor("stdout", (l) => l === `mpota: job ${job(r)} done`);
    assert.equal(states(r.d).at(-1).fw, fwB);
    // The retained command is for the running firmware now: noted, not taken again.
    await r.d.waitFor("ended", (e) => e.kind === "deepsleep");
    assert.equal(acks(r.d).filter((a) => a.ready === true).length, 1);
    assert.ok(r.board.otadata()?.some((e) => e.slot === "ota_1" && e.state === "VALID"));
  });

  test("an ota command (the ESP8266's path) is refused on an ESP32, with the reason", async () => {
    const r = await rig("e32-ota");
    const ack = r.d.waitFor("published", (m) => m.topic.endsWith("/ack"));
    await hooks.broker.publish(
      `mpota/${r.id}/cmd`,
      signer.ota({ dev: r.id, job: job(r), fw: fwB, seq: nextSeq++ }),
      false,
    );
    assert.deepEqual(JSON.parse((await ack).payload.toString()), {
      job: job(r),
      ready: false,
      error: "this board is an ESP32: it takes op pull (contract v3), not ota",
    });
  });

  test("the server's retry (a new seq, a new job) for the same image goes on from what is written", async () => {
    const r = await rig("e32-retry");
    r.server.dropAfter = 100_000;
    const stopped = r.d.waitFor("stdout", (l) => l.startsWith(`mpota: job ${job(r)} stopped at 98304 of`));
    await hooks.broker.publish(`mpota/${r.id}/cmd`, pull(r), false);
    await stopped;
    // Within the agent's 2 s back-off, the retry arrives and is taken at once.
    const reset = r.d.waitFor("ended", (e) => e.kind === "reset", 60_000);
    await hooks.broker.publish(`mpota/${r.id}/cmd`, pull(r, { job: "j-retry" }), false);
    await reset;
    assert.deepEqual(
      r.server.requests.map((q) => q.range ?? null),
      [null, "bytes=98304-"],
    );
    const a = acks(r.d);
    assert.deepEqual(
      a.filter((x) => x.ready === true).map((x) => x.job),
      [job(r), "j-retry"],
    );
    assert.deepEqual(a.at(-1), { job: "j-retry", got: imageB.length, total: imageB.length, done: true });
  });
});
