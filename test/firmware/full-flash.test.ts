import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { BOARDS, findBoard, UnknownBoardError } from "../../src/firmware/boards.ts";
import { parseEspImage } from "../../src/firmware/esp-image.ts";
import {
  buildFullFlashImage,
  esptoolCommands,
  FlashPlanError,
  shellWord,
} from "../../src/firmware/full-flash.ts";
import { inspectFirmware } from "../../src/firmware/inspect-file.ts";
import { parsePrivateKeyPem } from "../../src/protocol/rsa-key.ts";
import { buildBootloaderImage } from "../support/bootloader-image.ts";
import { readFixtureText } from "../support/fixtures.ts";
import { buildMicroPythonImage, imageIdentity } from "../support/images.ts";

const MiB = 1024 * 1024;
const key = parsePrivateKeyPem(readFixtureText("reference/priv-pkcs8.key"));
const bootloader = buildBootloaderImage({ modulus: key.modulus });
const firmware = buildMicroPythonImage({ size: 0x50000, seed: 2 });

describe("board profiles", () => {
  test("every board the issue names, with flash size, mode and how to enter flash mode", () => {
    assert.deepEqual(
      BOARDS.map((b) => [b.id, b.flashSize, b.flashMode]),
      [
        ["sonoff-basic", MiB, "dout"],
        ["sonoff-s20", MiB, "dout"],
        ["sonoff-th", MiB, "dout"],
        ["esp-01", 512 * 1024, "dout"],
        ["esp-01s", MiB, "dout"],
        ["nodemcu", 4 * MiB, "dio"],
        ["wemos-d1-mini", 4 * MiB, "dio"],
        ["generic-1m", MiB, "dout"],
        ["generic-4m", 4 * MiB, "dio"],
      ],
    );
    for (const b of BOARDS) assert.ok(b.enterFlashMode.length > 20 && !b.enterFlashMode.includes("\n"), b.id);
  });

  test("found by id, display name or alias, ignoring case and punctuation", () => {
    assert.equal(findBoard("Sonoff Basic").id, "sonoff-basic");
    assert.equal(findBoard("SONOFF_S20").id, "sonoff-s20");
    assert.equal(findBoard("Wemos D1 mini").id, "wemos-d1-mini");
    assert.equal(findBoard("ESP-01S").id, "esp-01s");
    assert.equal(findBoard("esp01").id, "esp-01");
    assert.equal(findBoard("generic 4 MiB").id, "generic-4m");
    assert.throws(
      () => findBoard("esp32-devkit"),
      (e: Error) =>
        e instanceof UnknownBoardError &&
        e.exitCode === 2 &&
        /No board profile named "esp32-devkit"\. Known boards: sonoff-basic, .*generic-4m\./.test(e.message),
    );
  });
});

describe("merged full-flash image", () => {
  test("bootloader at 0, 0xFF up to MAIN_APP_OFFSET, the app there, nothing after it", () => {
    const full = buildFullFlashImage({ bootloader, firmware, appOffset: 0x3c000, flashSize: MiB });
    assert.equal(full.length, 0x3c000 + firmware.length);
    assert.deepEqual(Buffer.from(full.subarray(4, bootloader.length)), Buffer.from(bootloader.subarray(4)));
    assert.ok(full.subarray(bootloader.length, 0x3c000).every((b) => b === 0xff));
    assert.deepEqual(Buffer.from(full.subarray(0x3c000)), Buffer.from(firmware));
    assert.deepEqual(Buffer.from(full.subarray(0, 4)), Buffer.from(bootloader.subarray(0, 4)));
  });

  test("with a flash mode, the header at 0x0 carries the board's mode and size (the app is untouched)", () => {
    const full = buildFullFlashImage({
      bootloader,
      firmware,
      appOffset: 0x3c000,
      flashSize: MiB,
      flashMode: "dout",
    });
    const header = parseEspImage(full);
    assert.deepEqual([header.flashMode, header.flashSize, header.flashFrequency], ["dout", "1MB", "40m"]);
    assert.equal(header.checksum.ok, true);
    const r = inspectFirmware(full, { file: "full.bin", key });
    assert.equal(r.kind, "yaota8266");
    assert.deepEqual(r.errors, []);
    assert.equal(r.bootloader?.mainApp?.micropython?.identity, imageIdentity(firmware));
    assert.equal(r.bootloader?.key?.found, true);
    const four = parseEspImage(
      buildFullFlashImage({ bootloader, firmware, appOffset: 0x3c000, flashSize: 4 * MiB, flashMode: "dio" }),
    );
    assert.deepEqual([four.flashMode, four.flashSize], ["dio", "4MB"]);
  });

  test("refuses a bootloader that reaches past MAIN_APP_OFFSET and an app that does not fit the flash", () => {
    assert.throws(
      () => buildFullFlashImage({ bootloader, firmware, appOffset: 0x10000, flashSize: MiB }),
      (e: Error) =>
        e instanceof FlashPlanError && e.exitCode === 12 && /past MAIN_APP_OFFSET 0x10000/.test(e.message),
    );
    assert.throws(
      () =>
        buildFullFlashImage({
          bootloader,
          firmware: new Uint8Array(0x50000),
          appOffset: 0x3c000,
          flashSize: 512 * 1024,
        }),
      /more than the 524288-byte flash holds/,
    );
    // Trailing 0xFF padding past the offset is no content and is dropped.
    const padded = new Uint8Array(0x3d000).fill(0xff);
    padded.set(bootloader, 0);
    assert.equal(
      buildFullFlashImage({ bootloader: padded, firmware, appOffset: 0x3c000, flashSize: MiB }).length,
      0x3c000 + firmware.length,
    );
  });
});

describe("esptool commands", () => {
  test("erase, merged and two-part write lines with the board's mode and size", () => {
    const c = esptoolCommands({
      port: "/dev/ttyUSB0",
      baud: 460800,
      flashMode: "dout",
      flashSize: MiB,
      appOffset: 0x3c000,
      bootloaderFile: "yaota8266.bin",
      firmwareFile: "build/firmware-ota.bin",
      mergedFile: "full.bin",
    });
    assert.deepEqual(c, {
      erase: "esptool.py --port /dev/ttyUSB0 --baud 460800 erase_flash",
      merged: "esptool.py --port /dev/ttyUSB0 --baud 460800 write_flash -fm dout -fs 1MB 0x0 full.bin",
      parts:
        "esptool.py --port /dev/ttyUSB0 --baud 460800 write_flash -fm dout -fs 1MB 0x0 yaota8266.bin 0x3c000 build/firmware-ota.bin",
    });
  });

  test("file names with spaces or quotes are quoted for the shell", () => {
    assert.equal(shellWord("my firmware.bin"), "'my firmware.bin'");
    assert.equal(shellWord("it's.bin"), "'it'\\''s.bin'");
    const c = esptoolCommands({
      port: "COM3",
      baud: 115200,
      flashMode: "dio",
      flashSize: 4 * MiB,
      appOffset: 0x44000,
      bootloaderFile: "boot loader.bin",
      firmwareFile: "fw.bin",
    });
    assert.equal(c.merged, null);
    assert.equal(
      c.parts,
      "esptool.py --port COM3 --baud 115200 write_flash -fm dio -fs 4MB 0x0 'boot loader.bin' 0x44000 fw.bin",
    );
  });
});
