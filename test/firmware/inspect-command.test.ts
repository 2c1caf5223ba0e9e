import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { InspectFindingsError, registerInspectCommand } from "../../src/cli/inspect.ts";
import { FileError, UsageError } from "../../src/errors.ts";
import { DEFAULT_SETTINGS, renderConfigH } from "../../src/protocol/config-h.ts";
import { withSeq } from "../../src/protocol/datagram.ts";
import { signImage } from "../../src/protocol/image-packets.ts";
import { encodeOtaFile } from "../../src/protocol/ota-file.ts";
import { generateKeyPair, parsePrivateKeyPem } from "../../src/protocol/rsa-key.ts";
import { buildBootloaderImage } from "../support/bootloader-image.ts";
import { readFixtureText } from "../support/fixtures.ts";
import { buildMicroPythonImage, imageIdentity } from "../support/images.ts";
import { runCommand, tempFiles } from "./cli-harness.ts";
import { bannerBytes, patched, withFreshTrailer } from "./image-edits.ts";

const keyPem = readFixtureText("reference/priv-pkcs8.key");
const key = parsePrivateKeyPem(keyPem);
const other = generateKeyPair(512);
const ota = withFreshTrailer(
  patched(buildMicroPythonImage({ size: 0x30000, seed: 31 }), 0x9100, bannerBytes()),
);
const normal = buildMicroPythonImage({ size: 0x30000, seed: 31, ota: false });
const files = tempFiles({
  "firmware-ota.bin": ota,
  "firmware.bin": normal,
  "yaota8266.bin": buildBootloaderImage({ modulus: key.modulus }),
  "update.ota": encodeOtaFile(signImage(ota, key, 256).map((p, i) => withSeq(i + 1, p))),
  "priv.key": keyPem,
  "other.key": other.privatePem,
  "config.h": renderConfigH(key, { ...DEFAULT_SETTINGS, gpioMask: 0x1, gpioWaitMs: 1000 }),
  "notes.txt": "remember the milk\n",
});
after(() => files.remove());
const f = files.path;
const inspect = (...args: string[]) => runCommand(registerInspectCommand, ["inspect", ...args]);

describe("mpota inspect", () => {
  test("a MicroPython OTA build: summary, version, identity, trailer, build, segments; exit 0", async () => {
    const r = await inspect(f("firmware-ota.bin"));
    assert.equal(r.code, 0);
    const lines = r.stdout.split("\n");
    assert.equal(
      lines[0],
      `${f("firmware-ota.bin")}: MicroPython v1.27.0, OTA build, 196,608 bytes (192.0 KiB), MD5 trailer ok`,
    );
    assert.match(r.stdout, /\n {2}version +v1\.27\.0 on 2025-12-10 \(ESP module \(1M\) with ESP8266\)\n/);
    assert.match(
      r.stdout,
      new RegExp(
        `\\n {2}identity +${imageIdentity(ota)} \\(the MD5 trailer; the device agent reports it\\)\\n`,
      ),
    );
    assert.match(r.stdout, /\n {2}size word +0x2fff0 at 0x8ffc = 0x9000 \+ 0x26ff0 bytes of irom0 text\n/);
    assert.match(r.stdout, /\n {2}build +OTA build: irom0 linked at 0x40245000 \(high confidence;/);
    assert.match(r.stdout, /\n {2}0 +0x40100000 +24576 +iram +0x10\n/);
    assert.match(r.stdout, /\n {2}1 +0x3ffe8000 +4608 +dram +0x6018\n/);
    assert.doesNotMatch(r.stdout, /errors/);
  });

  test("a normal build: the error is printed, and the command fails with exit code 11", async () => {
    const r = await inspect(f("firmware.bin"));
    assert.equal(r.code, 11);
    assert.ok(r.error instanceof InspectFindingsError);
    assert.match(r.stdout, /\nerrors\n {2}- Normal \(non-OTA\) build: .*"Fatal exception \(0\)"/);
    assert.match((r.error as Error).message, /firmware\.bin: 1 problem found\. Normal \(non-OTA\) build/);
  });

  test("yaota8266.bin with the right key (file, modulus hex or config.h) and with someone else's", async () => {
    const good = await inspect(f("yaota8266.bin"), "--key", f("priv.key"));
    assert.equal(good.code, 0);
    assert.match(good.stdout, /GPIO mask +0xf035 \(GPIO 0, 2, 4, 5, 12, 13, 14, 15\) at 0xf00\n/);
    assert.match(good.stdout, /GPIO wait +3000 ms at 0xf04\n/);
    assert.match(good.stdout, /MAIN_APP_OFFSET +0x3c000 \(read from boot8266's code\)\n/);
    assert.match(
      good.stdout,
      /\n {2}the 512-bit modulus is at 0x[0-9a-f]+: updates signed with this key are accepted\n/,
    );
    assert.match(good.stdout, /\n {2}ota-server irom0 +0x9000 +65536\n/);

    const hex = Buffer.from(key.modulus).toString("hex");
    assert.equal((await inspect(f("yaota8266.bin"), "--modulus", hex)).code, 0);

    const wrong = await inspect(f("yaota8266.bin"), "--key", f("other.key"));
    assert.equal(wrong.code, 11);
    assert.match(
      wrong.stdout,
      /the 512-bit modulus is NOT in this bootloader: updates signed with this key are dropped/,
    );
    assert.match(
      wrong.stdout,
      /errors\n {2}- This bootloader does not hold the 512-bit modulus of the given key/,
    );
  });

  test("--config-h: its key is checked and GPIO settings that differ from the boot sector are warned about", async () => {
    const r = await inspect(f("yaota8266.bin"), "--config-h", f("config.h"));
    assert.equal(r.code, 0);
    assert.match(
      r.stdout,
      /warnings\n {2}- boot8266's gpio_mask is 0xf035, .*config\.h says 0x1: the bootloader was built from another config\.h/,
    );
    assert.match(r.stdout, /boot8266's gpio_wait_ms is 3000, .*config\.h says 1000\./);
  });

  test("a canned .ota file with --json: a documented, stable shape", async () => {
    const r = await inspect(f("update.ota"), "--key", f("priv.key"), "--json");
    assert.equal(r.code, 0);
    const report = JSON.parse(r.stdout);
    assert.equal(report.format, "mpota-inspect/1");
    assert.equal(report.kind, "ota-file");
    assert.deepEqual(report.key, { bits: 512 });
    assert.deepEqual(
      {
        datagrams: report.otaFile.datagrams,
        blockSize: report.otaFile.blockSize,
        imageSize: report.otaFile.imageSize,
        integrity: report.otaFile.integrity,
        signatures: report.otaFile.signatures,
      },
      {
        datagrams: 771,
        blockSize: 256,
        imageSize: ota.length,
        integrity: "ok",
        signatures: { keyBits: 512, checked: 771, valid: 771, firstInvalid: null },
      },
    );
    assert.equal(report.otaFile.image.micropython.identity, imageIdentity(ota));
    assert.equal(report.otaFile.image.micropython.version.version, "v1.27.0");
    assert.deepEqual(
      [report.errors, report.espImage, report.micropython, report.bootloader, report.unknown],
      [[], null, null, null, null],
    );
  });

  test("a canned .ota file checked with someone else's key fails", async () => {
    const r = await inspect(f("update.ota"), "--key", f("other.key"));
    assert.equal(r.code, 11);
    assert.match(r.stdout, /signatures +0 of 771 verify with the 512-bit key/);
  });

  test("a file that is no firmware: what it looks like, exit 11", async () => {
    const r = await inspect(f("notes.txt"));
    assert.equal(r.code, 11);
    const start = Buffer.from("remember the mil").toString("hex");
    assert.equal(
      r.stdout.split("\n")[0],
      `${f("notes.txt")}: not a firmware image I know: looks like text, 18 bytes, starting ${start}`,
    );
    assert.match(r.stdout, /\n {2}looks like +text\n/);
  });

  test("usage and file errors: a missing file, two keys at once", async () => {
    const missing = await inspect(f("nope.bin"));
    assert.equal(missing.code, 3);
    assert.ok(missing.error instanceof FileError);
    assert.match((missing.error as Error).message, /nope\.bin does not exist/);
    const two = await inspect(f("yaota8266.bin"), "--key", f("priv.key"), "--modulus", "00");
    assert.equal(two.code, 2);
    assert.ok(two.error instanceof UsageError);
  });

  test("--help explains what it recognises", async () => {
    const r = await inspect("--help");
    assert.equal(r.code, 0);
    assert.match(r.stdout, /Usage: mpota inspect \[options\] <file>/);
    assert.match(r.stdout, /a yaota8266\.bin: its parts, boot8266's GPIO settings/);
    assert.match(r.stdout, /--config-h <file>/);
  });
});
