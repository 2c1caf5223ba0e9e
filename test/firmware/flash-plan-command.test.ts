import assert from "node:assert/strict";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { after, describe, test } from "node:test";
import { registerFlashPlanCommand } from "../../src/cli/flash-plan.ts";
import { FileError, UsageError } from "../../src/errors.ts";
import { buildFullFlashImage, FlashPlanError } from "../../src/firmware/full-flash.ts";
import { PreflightError } from "../../src/firmware/preflight.ts";
import { generateKeyPair, parsePrivateKeyPem } from "../../src/protocol/rsa-key.ts";
import { buildBootloaderImage } from "../support/bootloader-image.ts";
import { readFixtureText } from "../support/fixtures.ts";
import { buildMicroPythonImage, imageIdentity } from "../support/images.ts";
import { linkedImage } from "../support/linked-image.ts";
import { runCommand, tempFiles } from "./cli-harness.ts";

const MiB = 1024 * 1024;
const keyPem = readFixtureText("reference/priv-pkcs8.key");
const key = parsePrivateKeyPem(keyPem);
const bootloader = buildBootloaderImage({ modulus: key.modulus });
const firmware = buildMicroPythonImage({ size: 600 * 1024, seed: 51 });
const files = tempFiles({
  "yaota8266.bin": bootloader,
  "yaota8266-44000.bin": buildBootloaderImage({ modulus: key.modulus, mainAppOffset: 0x44000 }),
  "firmware-ota.bin": firmware,
  "firmware.bin": buildMicroPythonImage({ size: 600 * 1024, seed: 51, ota: false }),
  // As many literal-pool references as a real build has: enough to say it is linked for 0x3c000.
  "firmware-3c000.bin": linkedImage({ size: 600 * 1024, irom0Base: 0x40245000, references: 1000 }),
  "priv.key": keyPem,
  "other.key": generateKeyPair(512).privatePem,
});
after(() => files.remove());
const f = files.path;
const plan = (...args: string[]) =>
  runCommand(registerFlashPlanCommand, [
    "flash-plan",
    "--bootloader",
    f("yaota8266.bin"),
    "--firmware",
    f("firmware-ota.bin"),
    ...args,
  ]);

describe("mpota flash-plan", () => {
  test("Sonoff Basic with -o: writes the merged image (dout, 1MB) and prints the exact esptool commands", async () => {
    const r = await plan("--board", "Sonoff Basic", "--key", f("priv.key"), "-o", f("full.bin"));
    assert.equal(r.code, 0, String(r.error));
    const written = new Uint8Array(readFileSync(f("full.bin")));
    const expected = buildFullFlashImage({
      bootloader,
      firmware,
      appOffset: 0x3c000,
      flashSize: MiB,
      flashMode: "dout",
    });
    assert.deepEqual(Buffer.from(written), Buffer.from(expected));
    assert.deepEqual([written[2], written[3]], [3, 0x20]);
    const out = r.stdout;
    assert.equal(out.split("\n")[0], "Sonoff Basic: 1 MiB flash, mode dout, MAIN_APP_OFFSET 0x3c000");
    assert.match(out, /\n {2}0x03c000-0x0d2000 {2}app, 614,400 bytes \(600\.0 KiB\)\n/);
    assert.match(out, /\n {2}0x0d5000-0x0fb000 {2}filesystem, 155,648 bytes \(152\.0 KiB\)\n/);
    assert.match(out, new RegExp(`\\nfirmware .*firmware-ota\\.bin: identity ${imageIdentity(firmware)}\\n`));
    assert.match(out, /\nbootloader .*yaota8266\.bin: GPIO mask 0xf035, wait 3000 ms, key matches\n/);
    assert.match(out, /\nEnter flash mode: Unplug mains; .*hold the button \(GPIO0\)/);
    assert.ok(out.includes(`\n  esptool.py --port /dev/ttyUSB0 --baud 460800 erase_flash\n`));
    assert.ok(
      out.includes(
        `\n  esptool.py --port /dev/ttyUSB0 --baud 460800 write_flash -fm dout -fs 1MB 0x0 ${f("full.bin")}\n`,
      ),
    );
    assert.ok(
      out.includes(
        `\n  esptool.py --port /dev/ttyUSB0 --baud 460800 write_flash -fm dout -fs 1MB 0x0 ${f("yaota8266.bin")} 0x3c000 ${f("firmware-ota.bin")}\n`,
      ),
    );
  });

  test("an existing -o file is not overwritten without --overwrite", async () => {
    writeFileSync(f("old.bin"), "keep me");
    const r = await plan("--board", "nodemcu", "-o", f("old.bin"));
    assert.equal(r.code, 3);
    assert.ok(r.error instanceof FileError);
    assert.match((r.error as Error).message, /old\.bin exists already; pass --overwrite/);
    assert.equal(readFileSync(f("old.bin"), "utf8"), "keep me");
    const again = await plan("--board", "nodemcu", "-o", f("old.bin"), "--overwrite");
    assert.equal(again.code, 0);
    assert.equal(readFileSync(f("old.bin"))[2], 2); // dio
    assert.equal(readFileSync(f("old.bin"))[3] >> 4, 4); // 4MB
  });

  test("a bootloader built with another key is refused; --force flashes it with a warning", async () => {
    const r = await plan("--board", "sonoff-s20", "--key", f("other.key"), "-o", f("never.bin"));
    assert.equal(r.code, 12);
    assert.ok(r.error instanceof FlashPlanError);
    assert.match(
      (r.error as Error).message,
      /does not hold the 512-bit modulus of the given key.*Pass --force to flash it anyway\.$/,
    );
    assert.equal(existsSync(f("never.bin")), false);
    const forced = await plan("--board", "sonoff-s20", "--key", f("other.key"), "--force");
    assert.equal(forced.code, 0);
    assert.match(forced.stdout, /key does NOT match/);
    assert.match(forced.stdout, /\nwarning: This bootloader does not hold the 512-bit modulus/);
  });

  test("a normal MicroPython build is refused by the preflight checks", async () => {
    const r = await runCommand(registerFlashPlanCommand, [
      "flash-plan",
      "--bootloader",
      f("yaota8266.bin"),
      "--firmware",
      f("firmware.bin"),
      "--board",
      "esp-01s",
    ]);
    assert.equal(r.code, 10);
    assert.ok(r.error instanceof PreflightError);
    assert.match((r.error as Error).message, /This is a normal MicroPython build/);
  });

  test("swapped files are recognised", async () => {
    const r = await runCommand(registerFlashPlanCommand, [
      "flash-plan",
      "--bootloader",
      f("firmware-ota.bin"),
      "--firmware",
      f("yaota8266.bin"),
      "--flash-size",
      "1M",
    ]);
    assert.equal(r.code, 12);
    assert.match(
      (r.error as Error).message,
      /is a MicroPython image and .* is the bootloader: swap --bootloader and --firmware\./,
    );
  });

  test("MAIN_APP_OFFSET comes from boot8266's code; a contradicting --app-offset is refused", async () => {
    const wrong = await plan("--flash-size", "1M", "--app-offset", "0x44000");
    assert.equal(wrong.code, 12);
    assert.match(
      (wrong.error as Error).message,
      /looks for the app at 0x3c000 \(read from its code\), not at 0x44000/,
    );
    const moved = await runCommand(registerFlashPlanCommand, [
      "flash-plan",
      "--bootloader",
      f("yaota8266-44000.bin"),
      "--firmware",
      f("firmware-3c000.bin"),
      "--flash-size",
      "1M",
    ]);
    // The bootloader wants the app at 0x44000, the firmware is linked for 0x3c000.
    assert.equal(moved.code, 10);
    assert.match(
      (moved.error as Error).message,
      /seems linked for MAIN_APP_OFFSET 0x3c000 .* puts the app at 0x44000/,
    );
  });

  test("--json: the documented shape", async () => {
    const r = await plan(
      "--board",
      "wemos-d1-mini",
      "--flash-mode",
      "DOUT",
      "--port",
      "COM4",
      "--baud",
      "115200",
      "--json",
    );
    assert.equal(r.code, 0);
    const p = JSON.parse(r.stdout);
    assert.deepEqual(Object.keys(p), [
      "format",
      "board",
      "flashSize",
      "flashMode",
      "appOffset",
      "bootloader",
      "firmware",
      "output",
      "layout",
      "checks",
      "commands",
      "warnings",
    ]);
    assert.equal(p.format, "mpota-flash-plan/1");
    assert.deepEqual(
      [p.board.id, p.flashSize, p.flashMode, p.appOffset, p.output],
      ["wemos-d1-mini", 4 * MiB, "dout", 0x3c000, null],
    );
    assert.equal(p.commands.merged, null);
    assert.equal(
      p.commands.parts,
      `esptool.py --port COM4 --baud 115200 write_flash -fm dout -fs 4MB 0x0 ${f("yaota8266.bin")} 0x3c000 ${f("firmware-ota.bin")}`,
    );
    assert.deepEqual(p.layout[0], { start: 0, end: 0x3c000, content: "yaota8266 (boot8266 + ota-server)" });
    assert.equal(p.bootloader.keyFound, null);
    assert.equal(p.firmware.identity, imageIdentity(firmware));
  });

  test("usage errors: no board and no size, an unknown board, a bad flash mode", async () => {
    const none = await plan();
    assert.equal(none.code, 2);
    assert.ok(none.error instanceof UsageError);
    assert.match((none.error as Error).message, /Give --board \(sonoff-basic, .*\) or --flash-size/);
    const unknown = await plan("--board", "esp32");
    assert.equal(unknown.code, 2);
    assert.match((unknown.error as Error).message, /No board profile named "esp32"/);
    const mode = await plan("--board", "nodemcu", "--flash-mode", "fast");
    assert.equal(mode.code, 2);
    assert.match((mode.error as Error).message, /Flash mode "fast" is not one esptool knows/);
  });

  test("--help lists the boards", async () => {
    const r = await runCommand(registerFlashPlanCommand, ["flash-plan", "--help"]);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /\n {2}sonoff-basic {3}1 MiB {4}dout {2}Sonoff Basic\n/);
    assert.match(r.stdout, /\n {2}nodemcu {8}4 MiB {4}dio {3}NodeMCU \(ESP-12E\/F\)\n/);
  });
});
