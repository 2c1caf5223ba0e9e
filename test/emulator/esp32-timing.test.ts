import assert from "node:assert/strict";
import { afterEach, describe, test } from "node:test";
import { AgentDevice } from "../../src/agent-host/agent-device.ts";
import { Esp32Board } from "../../src/emulator/esp32-board.ts";
import { ESP32_TYPICAL, esp32FlashFloorMs } from "../../src/emulator/esp32-timing.ts";
import { buildEsp32AppImage } from "../support/esp32-image.ts";

// The bench's cost model of the emulated ESP32 (src/emulator/esp32-timing.ts):
// what each partition call is charged, and that the timing changes no byte.
// Modelled milliseconds are arithmetic, not measured time.

const A = buildEsp32AppImage({ seed: 1, size: 48 * 1024 });
const devices: AgentDevice[] = [];

afterEach(async () => {
  await Promise.all(devices.splice(0).map((d) => d.close()));
});

/** A board that records what its calls were charged. */
class ChargedBoard extends Esp32Board {
  readonly charged: Array<[string, number]> = [];
  override callMs(name: string, args: ReadonlyArray<string | number>): number {
    const ms = super.callMs(name, args);
    if (ms > 0) this.charged.push([name, Number(ms.toFixed(3))]);
    return ms;
  }
}

function board(timed: boolean): ChargedBoard {
  const b = new ChargedBoard(timed ? { timing: ESP32_TYPICAL } : {});
  b.writeImage("ota_0", A);
  b.boot("power-on");
  return b;
}

describe("the ESP32 timing model", () => {
  test("erase per 4 KiB sector, program per 256-byte page, set_boot by the image it reads; nothing by default", () => {
    const b = board(true);
    assert.equal(b.callMs("erase", ["ota_1", 0, 4096]), 45);
    assert.equal(b.callMs("erase", ["ota_1", 4096, 8192]), 90);
    assert.equal(b.callMs("erase", ["ota_1", 100, 4096]), 90, "an unaligned range touches two sectors");
    assert.equal(b.callMs("write", ["ota_1", 0, "ab".repeat(4096)]).toFixed(3), "6.400");
    assert.equal(b.callMs("write", ["ota_1", 200, "ab".repeat(100)]).toFixed(3), "0.800");
    assert.equal(b.callMs("set_boot", ["ota_0"]), A.length / ESP32_TYPICAL.readBytesPerMs);
    assert.equal(b.callMs("set_boot", ["ota_1"]), 0, "an erased slot: set_boot stops at the header");
    assert.equal(b.callMs("erase", ["no-such", 0, 4096]), 0);
    const plain = board(false);
    for (const call of [
      ["erase", ["ota_1", 0, 4096]],
      ["write", ["ota_1", 0, "ab".repeat(4096)]],
      ["set_boot", ["ota_0"]],
    ] as const) {
      assert.equal(plain.callMs(call[0], call[1]), 0);
    }
    assert.equal(esp32FlashFloorMs(0x17f000, ESP32_TYPICAL).toFixed(1), (383 * (45 + 16 * 0.4)).toFixed(1));
  });

  test("under MicroPython, writeblocks on a timed board is charged an erase and a program and writes the same bytes", async () => {
    const flash: Uint8Array[] = [];
    const charges: Array<Array<[string, number]>> = [];
    for (const timed of [false, true]) {
      const b = board(timed);
      const d = new AgentDevice({
        broker: "mqtt://127.0.0.1:1",
        chip: "esp32",
        esp32: b,
        main: [
          "import esp32",
          "p = esp32.Partition(esp32.Partition.RUNNING).get_next_update()",
          "buf = bytearray(4096)",
          "for i in range(4096):",
          "    buf[i] = (i * 7) & 255",
          "p.writeblocks(3, buf)",
          "print('written')",
        ].join("\n"),
      });
      devices.push(d);
      const ended = d.waitFor("ended");
      await d.powerOn();
      await ended;
      assert.ok(d.output.includes("written"), d.output.join("\n"));
      const ota1 = b.partitions().find((p) => p.label === "ota_1");
      assert.ok(ota1);
      flash.push(b.read(ota1.address + 3 * 4096, 4096));
      charges.push(b.charged.filter(([name]) => name === "erase" || name === "write"));
    }
    assert.deepEqual(Buffer.from(flash[1] as Uint8Array), Buffer.from(flash[0] as Uint8Array));
    assert.equal((flash[0] as Uint8Array)[5], 35);
    assert.deepEqual(charges[0], []);
    assert.deepEqual(charges[1], [
      ["erase", 45],
      ["write", 6.4],
    ]);
  });
});
