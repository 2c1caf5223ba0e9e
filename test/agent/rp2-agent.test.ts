import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { after, afterEach, before, describe, test } from "node:test";
import { AgentDevice } from "../../src/agent-host/agent-device.ts";
import type { AgentDeviceOptions } from "../../src/agent-host/agent-device-options.ts";
import { DEFAULT_MICROPYTHON, MICROPYTHON_BUILDS } from "../../src/agent-host/micropython-release.ts";
import { signedPull } from "./pull-support.ts";
import { CommandSigner, TestBroker } from "./support.ts";

// The unmodified agent on a Raspberry Pi Pico W (the rp2 port's modules: no
// esp module, reset_cause() 1 or 3, an 8-byte unique_id, no RTC memory),
// against a real broker: it reports an honest firmware identity (its
// MicroPython build) and answers every firmware command ready:false.

const signer = new CommandSigner();
let broker: TestBroker;
const devices: AgentDevice[] = [];

before(async () => {
  broker = await TestBroker.start();
});
afterEach(async () => {
  await Promise.all(devices.splice(0).map((d) => d.close()));
});
after(async () => {
  await broker.close();
});

async function online(options: Partial<AgentDeviceOptions> = {}): Promise<AgentDevice> {
  const d = new AgentDevice({
    broker: broker.url,
    chip: "rp2",
    commandKeys: [signer.modulusHex],
    ...options,
  });
  devices.push(d);
  const up = d.nextPublish("status");
  await d.powerOn();
  await up;
  return d;
}

const lastState = (d: AgentDevice) =>
  JSON.parse(
    d.published
      .filter((m) => m.topic.endsWith("/state"))
      .at(-1)
      ?.payload.toString() ?? "{}",
  ) as Record<string, unknown>;

/** The fw the agent derives on a Pico W: the first 32 hex digits of SHA-256("<os.uname().version>; <machine>"). */
const buildFw = createHash("sha256")
  .update(`${MICROPYTHON_BUILDS[DEFAULT_MICROPYTHON].banner}; Raspberry Pi Pico W with RP2040`)
  .digest("hex")
  .slice(0, 32);

const ONLY_APP =
  "this rp2 board takes app updates only: mpota does not update its firmware (flash MicroPython by USB)";

describe("the agent on a Pico W (rp2)", () => {
  test("reports its build as fw, the id from its 8-byte unique_id, no flash size, wake power", async () => {
    const uniqueId = Uint8Array.from([0xe6, 0x61, 0x41, 0x04, 0x03, 0x2f, 0x5a, 0x2c]);
    const d = await online({ uniqueId });
    assert.equal(d.id, "e6614104032f5a2c");
    const s = lastState(d);
    assert.equal(s.fw, buildFw);
    assert.equal(s.wake, "power");
    assert.equal(s.flash, undefined);
    assert.equal(s.ver, MICROPYTHON_BUILDS[DEFAULT_MICROPYTHON].banner);
    assert.equal(s.rssi, -61);
  });

  test("a signed ota command is answered ready:false with the reason; the board stays up", async () => {
    const d = await online({ id: "pico-ota" });
    const ack = d.nextPublish("ack");
    await broker.publish(
      "mpota/pico-ota/cmd",
      signer.ota({ dev: "pico-ota", job: "j-ota", fw: "a".repeat(32) }),
      false,
    );
    assert.deepEqual(JSON.parse((await ack).payload.toString()), {
      job: "j-ota",
      ready: false,
      error: ONLY_APP,
    });
    assert.equal(d.phase, "running");
  });

  test("a signed pull command is answered ready:false with the reason", async () => {
    const d = await online({ id: "pico-pull" });
    const ack = d.nextPublish("ack");
    const pull = signedPull(
      {
        dev: "pico-pull",
        seq: 1,
        job: "j-pull",
        fw: "b".repeat(32),
        size: 1_400_000,
        ver: "2.0",
        down: 0,
        sha: "c".repeat(64),
        url: "http://127.0.0.1:1/device/firmware/x",
      },
      signer,
    );
    await broker.publish("mpota/pico-pull/cmd", pull, false);
    assert.deepEqual(JSON.parse((await ack).payload.toString()), {
      job: "j-pull",
      ready: false,
      error: ONLY_APP,
    });
  });

  test("machine.reset() comes back as WDT_RESET, which the agent reports as wake other", async () => {
    const d = await online({
      id: "pico-reset",
      main: "import machine, os\nif not 'was' in os.listdir():\n    open('was', 'w').close()\n    machine.reset()\nfrom mpota_agent import Agent\nAgent().checkin()\n",
    });
    // online() saw the status of the boot after the reset: the first boot published nothing.
    assert.equal(d.boots, 2);
    assert.equal(d.resetCause, 3);
    assert.equal(lastState(d).wake, "other");
  });

  test("VBAT_ADC_SCALE: the state carries VSYS, read on GPIO29 with the CYW43's select high", async () => {
    // The harness sets VBAT_ADC_SCALE = 3 * 3.3 / 65535 on a Pico W (read_u16 counts of VSYS/3).
    const d = await online({ id: "pico-vsys", vbat: 3.7 });
    assert.equal(lastState(d).vbat, 3.7);
    assert.ok(!d.output.some((l) => l.startsWith("mpota: vbat:")), d.output.join("\n"));
    // Each state reads it afresh: the rssi before it was an SPI transfer, which took GPIO29 back.
    d.vbat = 3.1;
    const next = d.nextPublish("state");
    await broker.publish("mpota/pico-vsys/cmd", signer.keys("pico-vsys", [signer.modulusHex]), false);
    assert.equal(JSON.parse((await next).payload.toString()).vbat, 3.1);
  });

  test("the fake's GPIO29 as machine_adc.c and the CYW43 driver leave it; mpota_rp2.read() takes it each time", async () => {
    const d = new AgentDevice({
      broker: broker.url,
      chip: "rp2",
      vbat: 3.7,
      autoWake: false,
      autoRestart: false,
      main: [
        "import machine, network, mpota_rp2",
        "v = lambda n: round(n * 9.9 / 65535, 2)",
        "print(v(machine.ADC(3).read_u16()))  # a channel number leaves the pin on the PIO",
        "a = machine.ADC(29)",
        "print(v(a.read_u16()))",
        "network.WLAN(network.STA_IF).status('rssi')",
        "print(v(a.read_u16()))  # the transfer took the pin back",
        "machine.Pin(25, machine.Pin.OUT, value=0)",
        "print(v(machine.ADC(29).read_u16()))  # select low: the divider is cut off",
        "print(v(mpota_rp2.read()))",
      ].join("\n"),
    });
    devices.push(d);
    const ended = d.waitFor("ended");
    await d.powerOn();
    assert.equal((await ended).kind, "exit");
    assert.deepEqual(d.output, ["1.58", "3.7", "1.58", "0.0", "3.7"]);
  });

  test("a sleeper's deep sleep ends in a reboot the agent reports as wake other (no RTC memory kept)", async () => {
    const d = new AgentDevice({ broker: broker.url, chip: "rp2", id: "pico-sleepy", sleepSeconds: 1 });
    devices.push(d);
    const sleeping = d.waitFor("deepsleep");
    await d.powerOn();
    assert.equal((await sleeping).ms, 1000);
    assert.deepEqual(lastState(d).wake, "power");
    // Registered before the 1 s timer fires: the next state is the one after the wake.
    await d.waitFor("published", (m) => m.topic.endsWith("/state"));
    assert.equal(d.resetCause, 3, "WDT_RESET after the light sleep's reset");
    assert.equal(lastState(d).wake, "other");
    assert.equal(d.rtc.length, 0);
  });
});
