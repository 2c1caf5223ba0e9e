import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { registerCheckCommand } from "../../src/cli/check.ts";
import { PreflightError } from "../../src/firmware/preflight.ts";
import { buildMicroPythonImage, imageIdentity } from "../support/images.ts";
import { runCommand, tempFiles } from "./cli-harness.ts";
import { patched } from "./image-edits.ts";

const ota = buildMicroPythonImage({ size: 600 * 1024, seed: 41 });
const files = tempFiles({
  "firmware-ota.bin": ota,
  "firmware.bin": buildMicroPythonImage({ size: 600 * 1024, seed: 41, ota: false }),
  "corrupt.bin": patched(ota, 0x40000, new Uint8Array([(ota[0x40000] as number) ^ 2])),
});
after(() => files.remove());
const f = files.path;
const check = (...args: string[]) => runCommand(registerCheckCommand, ["check", ...args]);

describe("mpota check", () => {
  test("an OTA build on 1 MiB: OK, every verdict, the flash layout with the filesystem room", async () => {
    const r = await check(f("firmware-ota.bin"), "--flash-size", "1M");
    assert.equal(r.code, 0);
    const lines = r.stdout.split("\n");
    assert.equal(lines[0], `${f("firmware-ota.bin")} on 1 MiB flash, MAIN_APP_OFFSET 0x3c000: OK`);
    assert.equal(lines[1], `identity ${imageIdentity(ota)}`);
    for (const check of ["md5-trailer", "build-kind", "app-offset", "flash-size", "filesystem"]) {
      assert.match(r.stdout, new RegExp(`\\n {2}ok {7}${check} +`), check);
    }
    assert.ok(
      r.stdout.endsWith(
        [
          "flash layout",
          "  0x000000-0x03c000  yaota8266 (boot8266 + ota-server)",
          "  0x03c000-0x0d2000  app, 614,400 bytes (600.0 KiB)",
          "  0x0d2000-0x0d4000  free for larger builds, 8,192 bytes (8.0 KiB)",
          "  0x0d4000-0x0d5000  kept by MicroPython for native code",
          "  0x0d5000-0x0fb000  filesystem, 155,648 bytes (152.0 KiB)",
          "  0x0fb000-0x100000  SDK: RF calibration, PHY init data, system parameters",
          "",
        ].join("\n"),
      ),
      r.stdout,
    );
  });

  test("a normal build is refused with cause and fix (exit 10); --force lets it pass, marked FORCED", async () => {
    const r = await check(f("firmware.bin"), "--flash-size", "1M");
    assert.equal(r.code, 10);
    assert.ok(r.error instanceof PreflightError);
    assert.match(r.stdout, /: REFUSED\n/);
    assert.match(r.stdout, /\n {2}REFUSED {2}build-kind {5}This is a normal MicroPython build/);
    assert.match(r.stdout, /\n {26}fix: Build MicroPython's OTA variant/);
    assert.match(
      (r.error as Error).message,
      /must not go to this device:\n- This is a normal MicroPython build.*\nPass --force to go ahead anyway\.$/s,
    );
    const forced = await check(f("firmware.bin"), "--flash-size", "1M", "--force");
    assert.equal(forced.code, 0);
    assert.match(forced.stdout, /: OK \(forced\)\n/);
    assert.match(forced.stdout, /\n {2}FORCED {3}build-kind /);
  });

  test("a corrupt image stays refused with --force", async () => {
    const r = await check(f("corrupt.bin"), "--flash-size", "1M", "--force");
    assert.equal(r.code, 10);
    assert.match(r.stdout, /REFUSED {2}md5-trailer/);
    assert.match((r.error as Error).message, /--force cannot override this\.$/);
  });

  test("--board takes the flash size from the profile: an ESP-01 has too little", async () => {
    const r = await check(f("firmware-ota.bin"), "--board", "esp-01");
    assert.equal(r.code, 10);
    assert.match(r.stdout, /on 512 KiB flash/);
    assert.match(
      r.stdout,
      /REFUSED {2}flash-size {5}The app needs flash from 0x3c000 to 0xd2000, but the device has only 512 KiB/,
    );
    assert.match(
      r.stdout,
      /\n {2}0x03c000-0x0d2000 {2}app, 614,400 bytes \(600\.0 KiB\): past the end of the flash!\n {2}0x07b000-0x080000 {2}SDK/,
    );
  });

  test("--json prints the verdicts in the documented shape, also when refused", async () => {
    const r = await check(f("firmware.bin"), "--flash-size", "4M", "--json");
    assert.equal(r.code, 10);
    const report = JSON.parse(r.stdout);
    assert.deepEqual(Object.keys(report), [
      "format",
      "file",
      "force",
      "ok",
      "forced",
      "input",
      "imageSize",
      "identity",
      "version",
      "build",
      "layout",
      "verdicts",
    ]);
    assert.equal(report.format, "mpota-check/1");
    assert.equal(report.ok, false);
    assert.equal(report.build, "normal");
    assert.equal(report.layout.filesystemSize, 0x3fb000 - 0xd5000);
    const refusal = report.verdicts.find((v: { check: string }) => v.check === "build-kind");
    assert.deepEqual(Object.keys(refusal), ["check", "level", "forceable", "forced", "message", "fix"]);
    assert.deepEqual([refusal.level, refusal.forceable, refusal.forced], ["refusal", true, false]);
  });

  test("usage errors: no flash size, an impossible flash size, a bad offset", async () => {
    const none = await check(f("firmware-ota.bin"));
    assert.equal(none.code, 2);
    assert.match((none.error as Error).message, /Give the device's flash size with --flash-size/);
    const odd = await check(f("firmware-ota.bin"), "--flash-size", "3M");
    assert.equal(odd.code, 2);
    assert.match((odd.error as Error).message, /not one an ESP8266 has/);
    const offset = await check(f("firmware-ota.bin"), "--flash-size", "1M", "--app-offset", "banana");
    assert.equal(offset.code, 2);
  });
});
