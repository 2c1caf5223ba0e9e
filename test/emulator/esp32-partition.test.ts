import assert from "node:assert/strict";
import { afterEach, describe, test } from "node:test";
import { AgentDevice } from "../../src/agent-host/agent-device.ts";
import { Esp32Board } from "../../src/emulator/esp32-board.ts";
import { buildEsp32AppImage, esp32Identity } from "../support/esp32-image.ts";

// esp32.Partition under real MicroPython (wasm) on the emulated board: what
// ports/esp32/esp32_partition.c and ESP-IDF's esp_partition / esp_ota_ops do.

const A = buildEsp32AppImage({ seed: 1, size: 48 * 1024 });
const devices: AgentDevice[] = [];

afterEach(async () => {
  await Promise.all(devices.splice(0).map((d) => d.close()));
});

function otaBoard(): Esp32Board {
  const board = new Esp32Board();
  board.writeImage("ota_0", A);
  board.boot("power-on");
  return board;
}

/** Runs `main` as main.py on a device of `board` (booted already) until its run ends. */
async function run(board: Esp32Board, main: string) {
  const d = new AgentDevice({ broker: "mqtt://127.0.0.1:1", chip: "esp32", esp32: board, main });
  devices.push(d);
  const ended = d.waitFor("ended");
  await d.powerOn();
  return { end: await ended, output: d.output };
}

describe("esp32.Partition", () => {
  test("the table, BOOT, RUNNING, find, info and ioctl of the OTA variant", async () => {
    const { output, end } = await run(
      otaBoard(),
      [
        "import esp32, sys, os",
        "P = esp32.Partition",
        "print(sys.platform, os.uname().machine)",
        "print([p.info() for p in P.find(P.TYPE_APP)])",
        "print([p.info()[4] for p in P.find(P.TYPE_DATA)])",
        "r = P(P.RUNNING)",
        "print(r.info()[4], P(P.BOOT).info()[4], r.get_next_update().info()[4])",
        "print(r.ioctl(1, 0), r.ioctl(4, 0), r.ioctl(5, 0), r.ioctl(7, 0))",
        "print(P('vfs').info(), P('ota_1', 512).ioctl(4, 0))",
        "try:",
        "    P('nope')",
        "except OSError as e:",
        "    print('OSError', e.errno)",
        "print(r)",
      ].join("\n"),
    );
    assert.equal(end.kind, "exit");
    assert.deepEqual(output, [
      "esp32 Generic ESP32 module with OTA with ESP32",
      "[(0, 16, 65536, 1572864, 'ota_0', False), (0, 17, 1638400, 1572864, 'ota_1', False)]",
      "['nvs', 'otadata', 'phy_init', 'vfs']",
      "ota_0 ota_0 ota_1",
      "0 384 4096 None",
      "(1, 129, 3211264, 983040, 'vfs', False) 3072",
      "OSError 2",
      "<Partition type=0, subtype=16, address=65536, size=1572864, label=ota_0, encrypted=0>",
    ]);
  });

  test("writeblocks erases what it writes; with an offset it only clears bits; -260 for a partial block", async () => {
    const board = otaBoard();
    const { output } = await run(
      board,
      [
        "import esp32",
        "p = esp32.Partition('ota_1')",
        "p.writeblocks(1, b'\\x0f' * 4096)",
        "p.writeblocks(1, b'\\xf3' * 4, 8)",
        "b = bytearray(12)",
        "p.readblocks(1, b)",
        "print(b.hex())",
        "p.readblocks(1, b, 4090)",
        "print(b.hex())",
        "try:",
        "    p.writeblocks(2, b'x' * 100)",
        "except OSError as e:",
        "    print(e.args)",
        "try:",
        "    p.readblocks(384, bytearray(1))",
        "except OSError as e:",
        "    print(e.args)",
        "print(p.ioctl(6, 1))",
        "p.readblocks(1, b)",
        "print(b.hex())",
      ].join("\n"),
    );
    assert.deepEqual(output, [
      "0f0f0f0f0f0f0f0f03030303",
      "0f0f0f0f0f0fffffffffffff",
      "(-260, 'ESP_ERR_INVALID_SIZE')",
      "(-260, 'ESP_ERR_INVALID_SIZE')",
      "0",
      "ffffffffffffffffffffffff",
    ]);
    assert.deepEqual(
      [...board.read(0x190000 + 4096, 12)],
      [...Buffer.from("ffffffffffffffffffffffff", "hex")],
    );
  });

  test("machine and esp as the ESP32 port has them: reset causes, 2048 B of RTC memory, a 6-byte id, flash_read into a buffer", async () => {
    const board = otaBoard();
    const { output } = await run(
      board,
      [
        "import machine, esp, esp32",
        "print(machine.PWRON_RESET, machine.HARD_RESET, machine.WDT_RESET, machine.DEEPSLEEP_RESET, machine.SOFT_RESET)",
        "print(machine.reset_cause(), len(machine.unique_id()))",
        "r = machine.RTC()",
        "r.memory(b'x' * 2048)",
        "try:",
        "    r.memory(b'x' * 2049)",
        "except ValueError as e:",
        "    print('ValueError', e, len(r.memory()))",
        "b = bytearray(32)",
        "esp.flash_read(0x10000 + 0xb0, b)",
        "print(b.hex())",
        "try:",
        "    esp.flash_read(0, 4)",
        "except TypeError:",
        "    print('TypeError')",
        "print(esp.flash_size(), hex(esp.flash_user_start()))",
      ].join("\n"),
    );
    assert.deepEqual(output, [
      "1 2 3 4 5",
      "1 6",
      "ValueError buffer too long 2048",
      esp32Identity({ seed: 1 }),
      "TypeError",
      "4194304 0x200000",
    ]);
  });
});
