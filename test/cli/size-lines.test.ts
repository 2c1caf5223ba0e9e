import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { registerCheckCommand } from "../../src/cli/check.ts";
import { registerFlashPlanCommand } from "../../src/cli/flash-plan.ts";
import { parsePrivateKeyPem } from "../../src/protocol/rsa-key.ts";
import { runCommand, tempFiles } from "../firmware/cli-harness.ts";
import { buildBootloaderImage } from "../support/bootloader-image.ts";
import { readFixtureText } from "../support/fixtures.ts";
import { buildMicroPythonImage } from "../support/images.ts";

// A size is printed as "860,160 bytes (840.0 KiB)": a line that puts it in
// parentheses of its own, or another parenthesis right after it, reads as
// "(860,160 bytes (840.0 KiB))". These are the lines as a user sees them.

const files = tempFiles({
  "yaota8266.bin": buildBootloaderImage({
    modulus: parsePrivateKeyPem(readFixtureText("reference/priv-pkcs8.key")).modulus,
  }),
  "firmware-ota.bin": buildMicroPythonImage({ size: 600 * 1024, seed: 51 }),
});
after(() => files.remove());
const f = files.path;

describe("sizes in flash-plan and check lines", () => {
  test("flash-plan -o says how large the merged image it wrote is, without nested parentheses", async () => {
    const r = await runCommand(registerFlashPlanCommand, [
      "flash-plan",
      "--bootloader",
      f("yaota8266.bin"),
      "--firmware",
      f("firmware-ota.bin"),
      "--board",
      "Sonoff Basic",
      "-o",
      f("full.bin"),
    ]);
    assert.equal(r.code, 0, String(r.error));
    // 0x3c000 bytes of bootloader and padding, then the 614,400-byte app.
    assert.ok(r.stdout.includes(`\nwrote ${f("full.bin")}: 860,160 bytes (840.0 KiB)\n`), r.stdout);
    assert.ok(r.stdout.includes("\n  0x03c000-0x0d2000  app, 614,400 bytes (600.0 KiB)\n"), r.stdout);
    assert.doesNotMatch(r.stdout, /\([^()\n]*\(/);
  });

  test("check on too small a flash: the app's size, then why it does not fit after a colon", async () => {
    const r = await runCommand(registerCheckCommand, ["check", f("firmware-ota.bin"), "--board", "esp-01"]);
    assert.equal(r.code, 10);
    assert.ok(
      r.stdout.includes(
        "\nflash layout\n" +
          "  0x000000-0x03c000  yaota8266 (boot8266 + ota-server)\n" +
          "  0x03c000-0x0d2000  app, 614,400 bytes (600.0 KiB): past the end of the flash!\n" +
          "  0x07b000-0x080000  SDK: RF calibration, PHY init data, system parameters\n",
      ),
      r.stdout,
    );
  });
});
