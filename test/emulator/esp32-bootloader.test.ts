import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Esp32Board } from "../../src/emulator/esp32-board.ts";
import { otadataCrc } from "../../src/emulator/esp32-otadata.ts";
import { ESP32_FACTORY_TABLE } from "../../src/emulator/esp32-partition-table.ts";
import { EspErr } from "../../src/firmware/esp-err.ts";
import { buildEsp32AppImage } from "../support/esp32-image.ts";

// The board model against ESP-IDF's bootloader_utility.c and esp_ota_ops.c:
// which slot boots, and the otadata bytes each step leaves.

const A = buildEsp32AppImage({ seed: 1, size: 20_000 });
const B = buildEsp32AppImage({ seed: 2, size: 20_000 });
const states = (board: Esp32Board) => board.otadata()?.map((e) => `${e.seq}:${e.state}:${e.slot}`);

function board(): Esp32Board {
  const b = new Esp32Board();
  b.writeImage("ota_0", A);
  b.writeImage("ota_1", B);
  return b;
}

describe("ESP32 otadata and bootloader", () => {
  test("the CRC of ota_seq is zlib's CRC-32 continued from 0xFFFFFFFF (otatool.py's values)", () => {
    assert.deepEqual([1, 2, 3].map(otadataCrc), [0x4743989a, 0x55f63774, 0xed4a5011]);
  });

  test("updates alternate slots with growing seq: 1 (ota_0), 2 (ota_1), 3 (ota_0)", () => {
    const b = board();
    assert.equal(b.boot("power-on").partition?.label, "ota_0");
    assert.equal(b.setBoot("ota_1"), EspErr.OK);
    assert.equal(b.bootPartition(), "ota_1");
    assert.deepEqual(states(b), ["1:VALID:ota_0", "2:NEW:ota_1"]);
    assert.equal(b.boot("software").partition?.label, "ota_1");
    assert.equal(b.markAppValid(), EspErr.OK);
    assert.equal(b.setBoot("ota_0"), EspErr.OK);
    assert.deepEqual(states(b), ["3:NEW:ota_0", "2:VALID:ota_1"]);
    assert.equal(b.boot("software").partition?.label, "ota_0");
    assert.deepEqual(states(b), ["3:PENDING_VERIFY:ota_0", "2:VALID:ota_1"]);
    // The entry lies in flash as ESP-IDF writes it: seq, the 20 label bytes kept, state, CRC.
    const entry = Buffer.from(b.read(0xd000, 32)).toString("hex");
    assert.equal(entry, `03000000${"ff".repeat(20)}0100000011504aed`);
  });

  test("an image that does not load is skipped: back towards factory, then forward", () => {
    const b = board();
    b.boot("power-on");
    b.setBoot("ota_1");
    b.writeImage("ota_1", B.subarray(0, 10_000)); // truncated after set_boot
    const result = b.boot("software");
    assert.equal(result.partition?.label, "ota_0");
    assert.match(result.log.join("\n"), /ota_1 at 0x190000 is not bootable/);
    assert.deepEqual(states(b), ["1:VALID:ota_0", "2:PENDING_VERIFY:ota_1"]);
    assert.equal(b.boot("software").partition?.label, "ota_0");
    assert.deepEqual(states(b), ["1:VALID:ota_0", "2:ABORTED:ota_1"]);
  });

  test("with both entries aborted or invalid and no factory app, ota_0 boots and otadata is left alone", () => {
    const b = board();
    b.boot("power-on");
    b.setBoot("ota_1");
    b.boot("software");
    b.writeImage("ota_0", A);
    // ota_0's entry invalidated by hand: both entries now unusable.
    const p = 0xd000;
    b.flash.eraseSector(p / 0x1000);
    b.flash.write(p, Uint8Array.from(Buffer.from(`01000000${"ff".repeat(20)}030000009a984347`, "hex")));
    assert.equal(b.boot("software").partition?.label, "ota_0");
    assert.deepEqual(states(b), ["1:INVALID:ota_0", "2:ABORTED:ota_1"]);
    assert.equal(b.markAppValid(), EspErr.FAIL);
  });

  test("a deep-sleep wake boots what ran before; after a power cut it reads otadata", () => {
    const b = board();
    b.boot("power-on");
    b.setBoot("ota_1");
    assert.deepEqual(b.boot("deepsleep"), {
      partition: b.partitions()[3],
      fastBoot: true,
      log: ["Fast booting app from partition at offset 0x10000 (ota_0)"],
    });
    b.powerOff();
    assert.equal(b.boot("deepsleep").partition?.label, "ota_1");
    assert.deepEqual(states(b), ["1:VALID:ota_0", "2:PENDING_VERIFY:ota_1"]);
  });

  test("set_boot on the running slot's image, a data partition, or a slot of a one-app board", () => {
    const b = board();
    b.boot("power-on");
    assert.equal(b.setBoot("vfs"), EspErr.OTA_VALIDATE_FAILED);
    assert.equal(b.setBoot("nope"), EspErr.INVALID_ARG);
    const f = new Esp32Board({ table: ESP32_FACTORY_TABLE });
    f.writeImage("factory", A);
    assert.equal(f.boot("power-on").partition?.label, "factory");
    assert.equal(f.nextUpdatePartition("factory"), null);
    assert.equal(f.bootPartition(), null);
    assert.equal(f.markAppValid(), EspErr.NOT_FOUND);
    // set_boot(factory) on a table without otadata: nothing to erase.
    assert.equal(f.setBoot("factory"), EspErr.NOT_FOUND);
  });
});
