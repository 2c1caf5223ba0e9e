import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import { SimulatedDevice } from "../../src/simulator/simulated-device.ts";
import type { SimulatedDeviceOptions } from "../../src/simulator/simulated-device-options.ts";
import type { SimulatedEvent } from "../../src/simulator/simulated-events.ts";
import { buildSyntheticFirmware, firmwareIdentity } from "../../src/simulator/synthetic-firmware.ts";
import { TestBroker } from "../agent/support.ts";
import {
  APP,
  addressPool,
  CMD_KEYS,
  command,
  FAST,
  key,
  pushImage,
  SHORT_GPIO,
  stateWhere,
} from "./support.ts";

// One simulated ESP8266 = the yaota8266 emulator + the real MicroPython agent,
// against a real broker, with this test playing the update server.

const imageA = buildSyntheticFirmware({ size: 40_000, seed: 1 });
const imageB = buildSyntheticFirmware({ size: 48_000, seed: 2 });
const fwA = firmwareIdentity(imageA) as string;
const fwB = firmwareIdentity(imageB) as string;

const nextAddress = addressPool();
let broker: TestBroker;
const devices: SimulatedDevice[] = [];

before(async () => {
  broker = await TestBroker.start();
});
afterEach(async () => {
  await Promise.all(devices.splice(0).map((d) => d.stop()));
});
after(async () => {
  await broker.close();
});

function simulated(id: string, options: Partial<SimulatedDeviceOptions> = {}) {
  const events: SimulatedEvent[] = [];
  const device = new SimulatedDevice({
    id,
    address: nextAddress(),
    broker: broker.url,
    key,
    firmware: imageA,
    timing: FAST,
    settings: SHORT_GPIO,
    ...options,
    agent: { commandKeys: CMD_KEYS, ...options.agent },
  });
  device.events.on("event", (e) => events.push(e));
  devices.push(device);
  return { device, events };
}

function flashHolds(device: SimulatedDevice, image: Uint8Array): boolean {
  return Buffer.from(device.emulator.flash.read(APP, image.length)).equals(Buffer.from(image));
}

describe("an always-on simulated device", () => {
  test("checks in with the identity of its flash and its own address, takes a command, receives the push, comes back with the new firmware", async () => {
    const { device, events } = simulated("sim-on-1");
    await device.start();

    const first = await stateWhere(broker, "sim-on-1", () => true);
    assert.equal(first.fw, fwA);
    assert.equal(first.ip, device.address);
    assert.equal(first.wake, "power");
    assert.equal(first.sleep, 0);
    assert.equal(await broker.seen("mpota/sim-on-1/status", "online"), "online");
    assert.equal(device.status, "awake");

    await broker.publish("mpota/sim-on-1/cmd", command("sim-on-1", "j-on-1", fwB, imageB.length), true);
    const ack = JSON.parse(await broker.seen("mpota/sim-on-1/ack"));
    assert.deepEqual(ack, { job: "j-on-1", ready: true, ip: device.address, port: 8266 });
    await device.waitForStatus("ota", 10_000);
    assert.equal(await broker.retained("mpota/sim-on-1/status"), "ota");
    // boot8266 saw the RTC magic and rewrote it.
    assert.equal(Buffer.from(device.emulator.rtcMemory ?? []).toString("latin1"), "zaotaota");
    const otaBoot = events.find((e) => e.type === "boot" && e.mode === "ota");
    assert.equal(otaBoot?.type === "boot" && otaBoot.reason, "rtc-magic");

    const result = await pushImage({ address: ack.ip, port: ack.port }, imageB);
    assert.equal(result.ackedBytes, imageB.length);

    const after = await stateWhere(broker, "sim-on-1", (s) => s.fw === fwB);
    assert.equal(after.ip, device.address);
    assert.equal(after.wake, "soft");
    assert.ok(flashHolds(device, imageB), "the new image is in flash byte for byte");
    assert.equal(device.fw, fwB);
    assert.deepEqual(
      events.filter((e) => e.type === "firmware-changed").map((e) => e.type === "firmware-changed" && e.to),
      [fwB],
    );
    assert.equal(device.summary().updates, 1);
    // The server clears the command; the device stays online with the new firmware.
    await broker.publish("mpota/sim-on-1/cmd", "", true);
    await device.waitForStatus("awake", 10_000);
  });

  test("a command for the firmware it already runs is ignored: no ack, no OTA mode", async () => {
    const { device, events } = simulated("sim-on-2");
    await device.start();
    await stateWhere(broker, "sim-on-2", (s) => s.fw === fwA);
    await broker.publish("mpota/sim-on-2/cmd", command("sim-on-2", "j-same", fwA, imageA.length), true);
    await device.waitForEvent("output", (e) => e.line.includes("is for the running firmware"), 10_000);
    assert.equal(broker.on("mpota/sim-on-2/ack").length, 0);
    assert.equal(device.status, "awake");
    assert.equal(events.filter((e) => e.type === "boot").length, 1);
    await broker.publish("mpota/sim-on-2/cmd", "", true);
  });
});

describe("resets and power", () => {
  test("the reset pin stops the app wherever it is and boots it again (wake hard); a power cycle loses RTC memory (wake power)", async () => {
    const { device } = simulated("sim-reset-1");
    await device.start();
    await stateWhere(broker, "sim-reset-1", (s) => s.wake === "power");
    await device.waitForStatus("awake", 10_000);
    device.emulator.rtcMemory = Buffer.from("kept");

    await device.reset("hard");
    // The app lost power mid-run: no clean disconnect, so the broker publishes the last will.
    await broker.seen("mpota/sim-reset-1/status", "offline");
    const hard = await stateWhere(broker, "sim-reset-1", (s) => s.wake === "hard");
    assert.equal(hard.fw, fwA);
    assert.equal(Buffer.from(device.agent.rtc).toString(), "kept", "RTC memory survives the reset pin");

    await device.waitForStatus("awake", 10_000);
    await device.powerCycle();
    await stateWhere(
      broker,
      "sim-reset-1",
      (s) => s.wake === "power" && broker.on("mpota/sim-reset-1/state").length > 2,
    );
    assert.equal(device.emulator.rtcMemory, undefined);
    assert.equal(device.agent.rtc.length, 0);
    assert.equal(device.summary().boots, 3);
  });
});

describe("a deep-sleeping simulated device", () => {
  test("gets the retained command on its next wake and is updated within that wake cycle", async () => {
    const { device, events } = simulated("sim-sleepy-1", { sleepSeconds: 2 });
    await device.start();
    const first = await stateWhere(broker, "sim-sleepy-1", () => true);
    assert.deepEqual([first.fw, first.wake, first.sleep], [fwA, "power", 2]);
    await device.waitForStatus("sleeping", 10_000);
    assert.equal(await broker.retained("mpota/sim-sleepy-1/status"), "sleeping");

    // The server publishes the command while the device sleeps.
    const wakesBefore = events.filter((e) => e.type === "boot" && e.reason === "deep-sleep-wake").length;
    await broker.publish(
      "mpota/sim-sleepy-1/cmd",
      command("sim-sleepy-1", "j-sleepy", fwB, imageB.length),
      true,
    );
    const ack = JSON.parse(await broker.seen("mpota/sim-sleepy-1/ack", undefined, 10_000));
    assert.deepEqual(ack, { job: "j-sleepy", ready: true, ip: device.address, port: 8266 });
    const wakesToAck = events.filter((e) => e.type === "boot" && e.reason === "deep-sleep-wake").length;
    assert.equal(wakesToAck - wakesBefore, 1, "the update starts on the first wake after the command");
    const woke = await stateWhere(broker, "sim-sleepy-1", (s) => s.wake === "deepsleep");
    assert.equal(woke.fw, fwA);
    // boot8266 started the app at once on the deep-sleep wake, without checking it.
    assert.ok(events.some((e) => e.type === "app-start" && e.wake === "deepsleep" && !e.checked));

    await device.waitForStatus("ota", 10_000);
    await pushImage({ address: ack.ip, port: ack.port }, imageB);
    const updated = await stateWhere(broker, "sim-sleepy-1", (s) => s.fw === fwB);
    assert.deepEqual([updated.wake, updated.sleep, updated.ip], ["soft", 2, device.address]);
    assert.ok(flashHolds(device, imageB));
    await broker.publish("mpota/sim-sleepy-1/cmd", "", true);
    // With the new firmware it goes on with its sleep cycle.
    await device.waitForStatus("sleeping", 10_000);
  });
});

describe("waking a deep-sleeping simulated device by hand", () => {
  test("wake() fires its RTC timer now: it boots from the deep-sleep wake, checks in and sleeps again", async () => {
    const { device, events } = simulated("sim-wake-1", { sleepSeconds: 3600 });
    await device.start();
    // Awake, it ignores wake(): one boot, and it goes to sleep as usual.
    device.wake();
    await device.waitForStatus("sleeping", 10_000);
    assert.equal(device.summary().boots, 1);
    const before = events.filter((e) => e.type === "checkin").length;
    device.wake();
    const woke = await stateWhere(broker, "sim-wake-1", (s) => s.wake === "deepsleep");
    assert.deepEqual([woke.fw, woke.sleep], [fwA, 3600]);
    await device.waitForEvent("deepsleep", () => true, 10_000);
    assert.equal(events.filter((e) => e.type === "checkin").length, before + 1);
    assert.ok(events.some((e) => e.type === "boot" && e.reason === "deep-sleep-wake"));
    assert.equal(device.summary().boots, 2);
  });
});

describe("a corrupt push", () => {
  test("fails boot8266's MD5 check: the device stays in OTA mode (and returns to it after IDLE_REBOOT); a correct push recovers it", async () => {
    const { device, events } = simulated("sim-bad-1", {
      settings: { ...SHORT_GPIO, idleRebootMs: 1500 },
    });
    await device.start();
    await stateWhere(broker, "sim-bad-1", (s) => s.fw === fwA);
    await broker.publish("mpota/sim-bad-1/cmd", command("sim-bad-1", "j-bad", fwB, imageB.length), true);
    const ack = JSON.parse(await broker.seen("mpota/sim-bad-1/ack"));
    await device.waitForStatus("ota", 10_000);

    // A byte of irom0 changed in transit or on disk: the trailer no longer matches.
    const tampered = new Uint8Array(imageB);
    tampered[0x9000 + 100] = (tampered[0x9000 + 100] as number) ^ 0x40;
    await pushImage({ address: ack.ip, port: ack.port }, tampered);
    const rejected = await device.waitForEvent("boot", (e) => e.reason === "app-invalid", 10_000);
    assert.equal(rejected.mode, "ota");
    assert.match(rejected.message, /MD5 mismatch/);
    await device.waitForStatus("ota", 10_000);
    assert.equal(await broker.retained("mpota/sim-bad-1/status"), "ota");
    assert.equal(stateCount("sim-bad-1"), 1, "the agent did not run: no new state");

    // Nobody pushes: IDLE_REBOOT_MS later the receiver reboots, boot8266 rejects the app again.
    await device.waitForEvent("boot", (e) => e.reason === "app-invalid", 10_000);
    await device.waitForStatus("ota", 10_000);

    await pushImage({ address: ack.ip, port: ack.port }, imageB);
    const recovered = await stateWhere(broker, "sim-bad-1", (s) => s.fw === fwB);
    assert.equal(recovered.ip, device.address);
    assert.ok(flashHolds(device, imageB));
    assert.equal(events.filter((e) => e.type === "push-received").length, 2);
    await broker.publish("mpota/sim-bad-1/cmd", "", true);
  });
});

function stateCount(id: string): number {
  return broker.on(`mpota/${id}/state`).length;
}
