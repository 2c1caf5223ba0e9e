import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { registerCheckCommand } from "../../src/cli/check.ts";
import { InspectFindingsError, registerInspectCommand } from "../../src/cli/inspect.ts";
import { UsageError } from "../../src/errors.ts";
import { PreflightError } from "../../src/firmware/preflight.ts";
import { buildEsp32AppImage, buildMergedFirmware, esp32Identity } from "../support/esp32-image.ts";
import { buildMicroPythonImage } from "../support/images.ts";
import { runCommand, tempFiles } from "./cli-harness.ts";

const app = buildEsp32AppImage({ size: 1_466_432, seed: 12 });
const damaged = new Uint8Array(app);
damaged[0x8000] = (damaged[0x8000] as number) ^ 0x10;
const files = tempFiles({
  "micropython.bin": app,
  "s3.app-bin": buildEsp32AppImage({ size: 300_000, seed: 13, chipId: 9 }),
  "firmware.bin": buildMergedFirmware(app),
  "damaged.bin": damaged,
  "big.bin": buildEsp32AppImage({ size: 1_712_512, seed: 14 }),
  "firmware-ota.bin": buildMicroPythonImage({ size: 600 * 1024, seed: 41 }),
});
after(() => files.remove());
const f = files.path;
const inspect = (...args: string[]) => runCommand(registerInspectCommand, ["inspect", ...args]);
const check = (...args: string[]) => runCommand(registerCheckCommand, ["check", ...args]);

describe("mpota inspect and check with ESP32 app images", () => {
  test("inspect: chip, identity, IDF version, checksum, SHA-256, slot fit and segments; exit 0", async () => {
    const r = await inspect(f("micropython.bin"), "--chip", "esp32");
    assert.equal(r.code, 0, r.stdout);
    const lines = r.stdout.split("\n");
    assert.equal(
      lines[0],
      `${f("micropython.bin")}: ESP32 app image, ESP-IDF v5.5.1, 1,466,432 bytes (1.40 MiB), checksum and SHA-256 ok`,
    );
    assert.match(r.stdout, /\n {2}chip +ESP32 \(revisions v0\.0 to v3\.99\)\n/);
    assert.match(
      r.stdout,
      new RegExp(`\\n {2}identity +${esp32Identity({ seed: 12 })} \\(the app description's ELF SHA-256;`),
    );
    assert.match(r.stdout, /\n {2}ESP-IDF +v5\.5\.1\n/);
    assert.match(r.stdout, /\n {2}SHA-256 +[0-9a-f]{64}, ok\n/);
    assert.match(
      r.stdout,
      /\n {2}slot +1,572,864 bytes \(1\.50 MiB\), ota_0\/ota_1 of MicroPython's ESP32_GENERIC OTA variant: fits, 106,432 bytes \(103\.9 KiB\) left\n/,
    );
    assert.match(r.stdout, /\n {2}0 +0x3f400020 +4096 +0x20\n/);
    assert.doesNotMatch(r.stdout, /errors/);
  });

  test("inspect --json: kind esp32-app with the decoded image", async () => {
    const r = await inspect(f("micropython.bin"), "--json");
    const report = JSON.parse(r.stdout);
    assert.equal(report.kind, "esp32-app");
    assert.equal(report.esp32.image.appDescription.elfSha256, esp32Identity({ seed: 12 }));
    assert.equal(report.esp32.image.chip.name, "esp32");
    assert.equal(report.esp32.slot.size, 0x180000);
  });

  test("an ESP32-S3 image for an ESP32: inspect exits 11, check refuses it with exit 10", async () => {
    const i = await inspect(f("s3.app-bin"), "--chip", "esp32");
    assert.equal(i.code, 11);
    assert.ok(i.error instanceof InspectFindingsError);
    assert.match(
      i.stdout,
      /errors\n {2}- .*s3\.app-bin is built for ESP32-S3, but the device is an ESP32: its bootloader would refuse the image \(set_boot\(\) raises OSError\(-5379\)\)\. Use the ESP32 build of MicroPython\.\n/,
    );
    const c = await check(f("s3.app-bin"), "--chip", "ESP32");
    assert.equal(c.code, 10);
    assert.ok(c.error instanceof PreflightError);
    assert.match(c.stdout, /^.*s3\.app-bin for an ESP32, app slot 1,572,864 bytes .*: REFUSED\n/);
    assert.match(c.stdout, /\n {2}REFUSED {2}chip {11}.*built for ESP32-S3, but the device is an ESP32/);
    assert.equal((await check(f("s3.app-bin"), "--chip", "esp32s3")).code, 0);
  });

  test("a merged firmware.bin: both commands say to use micropython.bin (.app-bin)", async () => {
    const i = await inspect(f("firmware.bin"));
    assert.equal(i.code, 11);
    assert.match(
      i.stdout.split("\n")[0] as string,
      /firmware\.bin: merged ESP32-family firmware\.bin for ESP32 \(bootloader \+ partition table \+ app\)/,
    );
    assert.match(
      i.stdout,
      /\n {2}bootloader +0x1000\n {2}partition table +0x8000\n {2}app +0x10000 \(for ESP32\)\n/,
    );
    const c = await check(f("firmware.bin"));
    assert.equal(c.code, 10);
    assert.match(
      String((c.error as Error).message),
      /is a merged firmware\.bin for ESP32 \(bootloader at 0x1000, partition table at 0x8000, app at 0x10000\).*Use micropython\.bin from the same build \(published on micropython\.org as the \.app-bin file\)\.\n--force cannot override this\.$/s,
    );
  });

  test("check: a damaged image and one too large for the slot are refused with cause and fix", async () => {
    const d = await check(f("damaged.bin"), "--chip", "esp32");
    assert.equal(d.code, 10);
    assert.match(
      d.stdout,
      /\n {2}REFUSED {2}checksum {7}the checksum byte is 0x[0-9a-f]{2}, the segments give 0x[0-9a-f]{2}: the image was changed/,
    );
    assert.match(
      d.stdout,
      /\n {2}REFUSED {2}sha256 {9}the appended SHA-256 is [0-9a-f]{64}, the image gives [0-9a-f]{64}/,
    );
    const b = await check(f("big.bin"));
    assert.equal(b.code, 10);
    assert.match(
      b.stdout,
      /\n {2}REFUSED {2}slot-size {6}1,712,512 bytes \(1\.63 MiB\) is larger than the app slot by 139,648 bytes \(136\.4 KiB\): it cannot be written there\. The slot \(.*\) holds 1,572,864 bytes \(1\.50 MiB\)\./,
    );
    assert.match(b.stdout, /fix: Build a smaller firmware/);
    // A layout with larger slots (a custom partition table) takes it.
    assert.equal((await check(f("big.bin"), "--slot-size", "0x1c0000")).code, 0);
  });

  test("an ESP8266 image with --chip esp32, and ESP8266 options stay as they were", async () => {
    const i = await inspect(f("firmware-ota.bin"), "--chip", "esp32");
    assert.equal(i.code, 11);
    assert.match(
      i.stdout,
      /This is not an ESP32 app image \(no app description at 0x20; it reads as an ESP8266 file\), but the device is an ESP32/,
    );
    const c = await check(f("firmware-ota.bin"), "--chip", "esp32");
    assert.equal(c.code, 10);
    assert.match(c.stdout, /REFUSED {2}file-kind {6}.*has no app description/);
    assert.equal((await check(f("firmware-ota.bin"), "--flash-size", "1M", "--chip", "esp8266")).code, 0);
    const slot = await check(f("firmware-ota.bin"), "--flash-size", "1M", "--slot-size", "1M");
    assert.ok(slot.error instanceof UsageError);
    assert.equal(slot.code, 2);
    const chip = await inspect(f("micropython.bin"), "--chip", "esp64");
    assert.equal(chip.code, 2);
    assert.match(
      String((chip.error as Error).message),
      /Unknown chip "esp64": give one of esp8266, esp32, esp32s2, esp32c3, esp32s3/,
    );
  });
});
