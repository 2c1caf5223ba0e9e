import assert from "node:assert/strict";
import { afterEach, describe, test } from "node:test";
import type { Esp32Board } from "../../src/emulator/esp32-board.ts";
import { ESP32_FACTORY_TABLE } from "../../src/emulator/esp32-partition-table.ts";
import {
  SimulatedEsp32Device,
  type SimulatedEsp32Options,
} from "../../src/simulator/simulated-esp32-device.ts";
import { buildEsp32AppImage, buildMergedFirmware, esp32Identity } from "../support/esp32-image.ts";

// The simulated ESP32 under real MicroPython: esp32.Partition.set_boot(),
// machine.reset(), deepsleep() and mark_app_valid_cancel_rollback() against
// the bootloader model (otadata, rollback, the deep-sleep fast boot).

const A = buildEsp32AppImage({ seed: 1, size: 48 * 1024 });
const B = buildEsp32AppImage({ seed: 2, size: 40 * 1024 });
const fwA = esp32Identity({ seed: 1 }).slice(0, 32);
const fwB = esp32Identity({ seed: 2 }).slice(0, 32);

/**
 * main.py: reports where it runs; `go` switches to the other slot (then
 * resets, or deep-sleeps with `sleep`); `confirm` confirms at the next boot
 * without `go`.
 */
const MAIN = `import esp32, machine, os
P = esp32.Partition
r = P(P.RUNNING)
print("run", r.info()[4], machine.reset_cause())
def has(f):
    try:
        os.stat(f)
        return True
    except OSError:
        return False
if has("confirm") and not has("go"):
    os.remove("confirm")
    P.mark_app_valid_cancel_rollback()
    print("confirmed")
if has("go"):
    os.remove("go")
    try:
        r.get_next_update().set_boot()
    except OSError as e:
        print("set_boot", e.args)
    else:
        if has("sleep"):
            os.remove("sleep")
            machine.deepsleep(50)
        machine.reset()
`;

const devices: SimulatedEsp32Device[] = [];
afterEach(async () => {
  await Promise.all(devices.splice(0).map((d) => d.stop()));
});

function device(options: Partial<SimulatedEsp32Options> = {}) {
  const d = new SimulatedEsp32Device({
    id: "esp-1",
    broker: "mqtt://127.0.0.1:1",
    firmware: A,
    agent: { main: MAIN },
    ...options,
  });
  devices.push(d);
  const lines: string[] = [];
  d.events.on("event", (e) => {
    if (e.type === "output" && /^(run|set_boot|confirmed)/.test(e.line)) lines.push(e.line);
  });
  return { d, lines };
}

const states = (board: Esp32Board) => board.otadata()?.map((e) => `${e.seq}:${e.state}:${e.slot}`);

/** Starts (or resets) and waits until main.py has ended at the REPL. */
async function settle(d: SimulatedEsp32Device, action: () => Promise<void> | void) {
  const halted = d.waitForEvent("halted");
  await action();
  await halted;
}

describe("simulated ESP32: set_boot, reset, rollback", () => {
  test("the first boot of an erased otadata writes seq 1 VALID for ota_0", async () => {
    const { d, lines } = device();
    assert.deepEqual(states(d.board), ["4294967295:UNDEFINED:null", "4294967295:UNDEFINED:null"]);
    await settle(d, () => d.start());
    assert.deepEqual(lines, ["run ota_0 1"]);
    assert.deepEqual(states(d.board), ["1:VALID:ota_0", "4294967295:UNDEFINED:null"]);
    assert.equal(d.fw, fwA);
    // esp_rom_crc32_le(UINT32_MAX, &seq, 4) for seq 1, as it lies in flash.
    assert.equal(
      Buffer.from(d.board.read(0xd000, 32)).toString("hex"),
      `01000000${"ff".repeat(20)}020000009a984347`,
    );
  });

  test("set_boot + machine.reset(): the other slot boots PENDING_VERIFY; confirming makes it VALID", async () => {
    const { d, lines } = device();
    d.board.writeImage("ota_1", B);
    await settle(d, () => d.start());
    const atBoot: unknown[] = [];
    d.events.on("event", (e) => {
      if (e.type === "esp32-boot") atBoot.push([e.partition, e.resetCause, states(d.board)]);
    });
    d.agent.fs.writeFile("go", "");
    d.agent.fs.writeFile("confirm", "");
    const firmware = d.waitForEvent("firmware-changed");
    await settle(d, () => d.reset("software"));
    assert.deepEqual(await firmware.then((e) => [e.from, e.to]), [fwA, fwB]);
    assert.deepEqual(lines, ["run ota_0 1", "run ota_0 2", "run ota_1 2", "confirmed"]);
    assert.deepEqual(atBoot, [
      ["ota_0", 2, ["1:VALID:ota_0", "4294967295:UNDEFINED:null"]],
      ["ota_1", 2, ["1:VALID:ota_0", "2:PENDING_VERIFY:ota_1"]],
    ]);
    assert.deepEqual(states(d.board), ["1:VALID:ota_0", "2:VALID:ota_1"]);
    // Confirmed: a later reset keeps the new firmware.
    await settle(d, () => d.reset("power-on"));
    assert.deepEqual(lines.slice(4), ["run ota_1 1"]);
  });

  test("a reset before confirming marks the new entry ABORTED and the old slot boots", async () => {
    const { d, lines } = device();
    d.board.writeImage("ota_1", B);
    await settle(d, () => d.start());
    d.agent.fs.writeFile("go", "");
    await settle(d, () => d.reset("software"));
    await settle(d, () => d.reset("watchdog"));
    assert.deepEqual(lines, ["run ota_0 1", "run ota_0 2", "run ota_1 2", "run ota_0 3"]);
    assert.deepEqual(states(d.board), ["1:VALID:ota_0", "2:ABORTED:ota_1"]);
    assert.equal(d.fw, fwA);
  });

  test("a firmware that panics at start-up is rolled back by the bootloader", async () => {
    const { d, lines } = device({ behaviour: { [fwB]: "crash" } });
    d.board.writeImage("ota_1", B);
    await settle(d, () => d.start());
    d.agent.fs.writeFile("go", "");
    const panic = d.waitForEvent("panic");
    await settle(d, () => d.reset("software"));
    assert.equal((await panic).fw, fwB);
    assert.deepEqual(lines, ["run ota_0 1", "run ota_0 2", "run ota_0 2"]);
    assert.deepEqual(states(d.board), ["1:VALID:ota_0", "2:ABORTED:ota_1"]);
  });

  test("set_boot + deepsleep: the wake boots the old slot without reading otadata (the trap)", async () => {
    const { d, lines } = device();
    d.board.writeImage("ota_1", B);
    await settle(d, () => d.start());
    d.agent.fs.writeFile("go", "");
    d.agent.fs.writeFile("sleep", "");
    const sleeping = d.waitForStatus("sleeping");
    await settle(d, () => d.reset("software"));
    await sleeping.catch(() => undefined);
    assert.deepEqual(lines, ["run ota_0 1", "run ota_0 2", "run ota_0 4"]);
    assert.deepEqual(states(d.board), ["1:VALID:ota_0", "2:NEW:ota_1"]);
    // The next reset that is not a wake reads otadata: the new firmware boots.
    await settle(d, () => d.reset("software"));
    assert.deepEqual(lines.slice(3), ["run ota_1 2"]);
    assert.deepEqual(states(d.board), ["1:VALID:ota_0", "2:PENDING_VERIFY:ota_1"]);
  });

  test("set_boot refuses a corrupt, truncated, other-chip or merged image with OSError(-5379); otadata stays", async () => {
    const corrupt = B.slice();
    corrupt[5000] = (corrupt[5000] as number) ^ 0xff;
    const images = [
      corrupt,
      B.subarray(0, 30_000),
      buildEsp32AppImage({ seed: 3, chipId: 9 }),
      buildMergedFirmware(B),
    ];
    const { d, lines } = device();
    await settle(d, () => d.start());
    for (const image of images) {
      d.board.writeImage("ota_1", image);
      d.agent.fs.writeFile("go", "");
      await settle(d, () => d.reset("software"));
    }
    assert.deepEqual(
      lines.filter((l) => l.startsWith("set_boot")),
      [
        "set_boot (-5379, 'ESP_ERR_OTA_VALIDATE_FAILED')",
        "set_boot (-5379, 'ESP_ERR_OTA_VALIDATE_FAILED')",
        "set_boot (-5379, 'ESP_ERR_OTA_VALIDATE_FAILED')",
        "set_boot (-5379, 'ESP_ERR_OTA_VALIDATE_FAILED')",
      ],
    );
    assert.deepEqual(states(d.board), ["1:VALID:ota_0", "4294967295:UNDEFINED:null"]);
  });

  test("a merged firmware.bin as MicroPython's makeimg writes it passes set_boot but does not boot", async () => {
    // ESP32: the bootloader at file offset 0 (flash 0x1000), the table at 0x7000, the app at 0xf000.
    const merged = new Uint8Array(0xf000 + B.length).fill(0xff);
    merged.set(buildEsp32AppImage({ seed: 99, size: 0x3000, noAppDesc: true }), 0);
    merged.set(B, 0xf000);
    const { d, lines } = device();
    d.board.writeImage("ota_1", merged);
    await settle(d, () => d.start());
    d.agent.fs.writeFile("go", "");
    await settle(d, () => d.reset("software"));
    assert.deepEqual(lines, ["run ota_0 1", "run ota_0 2", "run ota_0 2"]);
    assert.match(d.board.bootable("ota_1") ?? "", /not bootable/);
    assert.deepEqual(states(d.board), ["1:VALID:ota_0", "2:PENDING_VERIFY:ota_1"]);
  });

  test("a board with one factory app: no next update, no BOOT, mark_app_valid finds no otadata", async () => {
    const { d } = device({
      table: ESP32_FACTORY_TABLE,
      agent: {
        main: [
          "import esp32, os",
          "P = esp32.Partition",
          "print('run', P(P.RUNNING).info()[4], os.uname().machine)",
          "for f in (lambda: P(P.RUNNING).get_next_update(), lambda: P(P.BOOT), P.mark_app_valid_cancel_rollback):",
          "    try:",
          "        f()",
          "    except OSError as e:",
          "        print('run', e.args)",
        ].join("\n"),
      },
    });
    const out: string[] = [];
    d.events.on("event", (e) => {
      if (e.type === "output") out.push(e.line);
    });
    await settle(d, () => d.start());
    assert.deepEqual(out, [
      "run factory Generic ESP32 module with ESP32",
      "run (2,)",
      "run (2,)",
      "run (-261, 'ESP_ERR_NOT_FOUND')",
    ]);
    assert.equal(d.board.otadata(), null);
  });
});
