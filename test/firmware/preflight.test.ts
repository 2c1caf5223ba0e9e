import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { FlashSizeError, flashLayout } from "../../src/firmware/flash-layout.ts";
import {
  assertPreflight,
  type CheckId,
  PreflightError,
  type PreflightResult,
  preflight,
  type Verdict,
} from "../../src/firmware/preflight.ts";
import { withSeq } from "../../src/protocol/datagram.ts";
import { signImage } from "../../src/protocol/image-packets.ts";
import { encodeOtaFile } from "../../src/protocol/ota-file.ts";
import { parsePrivateKeyPem } from "../../src/protocol/rsa-key.ts";
import { buildBootloaderImage } from "../support/bootloader-image.ts";
import { readFixtureText } from "../support/fixtures.ts";
import { buildMicroPythonImage, imageIdentity } from "../support/images.ts";
import { linkedImage } from "../support/linked-image.ts";
import { patched, withFreshTrailer } from "./image-edits.ts";

const MiB = 1024 * 1024;
const key = parsePrivateKeyPem(readFixtureText("reference/priv-pkcs8.key"));
const ota = buildMicroPythonImage({ size: 600 * 1024, seed: 21, ota: true });
const normal = buildMicroPythonImage({ size: 600 * 1024, seed: 21, ota: false });

function verdict(result: PreflightResult, check: CheckId, level?: Verdict["level"]): Verdict {
  const v = result.verdicts.find((x) => x.check === check && (level === undefined || x.level === level));
  assert.ok(v, `no ${level ?? ""} verdict for ${check}: ${JSON.stringify(result.verdicts, null, 1)}`);
  return v;
}

function levels(result: PreflightResult): string[] {
  return result.verdicts.map((v) => `${v.check}:${v.level}${v.forced ? ":forced" : ""}`);
}

describe("flash layout of the OTA build", () => {
  test("1 MiB: app region to 0xd4000, one native-code sector, filesystem 0xd5000-0xfb000, SDK 20 KiB", () => {
    assert.deepEqual(flashLayout(MiB), {
      flashSize: MiB,
      appOffset: 0x3c000,
      appRegionEnd: 0xd4000,
      filesystemStart: 0xd5000,
      usableEnd: 0xfb000,
      filesystemSize: 0x26000,
    });
    assert.equal(flashLayout(4 * MiB).filesystemSize, 0x3fb000 - 0xd5000);
    assert.equal(flashLayout(512 * 1024).filesystemSize, 0);
  });
});

describe("preflight", () => {
  test("an OTA build on 1 MiB passes every check and reports the filesystem room", () => {
    const r = preflight(ota, { flashSize: MiB });
    assert.equal(r.ok, true);
    assert.equal(r.forced, false);
    assert.deepEqual(levels(r), [
      "md5-trailer:ok",
      "build-kind:ok",
      "app-offset:ok",
      "flash-size:ok",
      "filesystem:ok",
    ]);
    assert.equal(r.identity, imageIdentity(ota));
    assert.equal(r.build, "ota");
    assert.equal(r.layout.appEnd, 0x3c000 + 600 * 1024);
    assert.equal(r.layout.firmwareRoom, 0xd4000 - (0x3c000 + 600 * 1024));
    assert.match(
      verdict(r, "filesystem").message,
      /^Room left for the filesystem: 155,648 bytes \(152\.0 KiB\) at 0xd5000-0xfb000/,
    );
    assert.equal(assertPreflight(ota, { flashSize: MiB }).ok, true);
  });

  test("4 MiB leaves 3.15 MiB for the filesystem", () => {
    const r = preflight(ota, { flashSize: 4 * MiB });
    assert.equal(r.ok, true);
    assert.equal(r.layout.filesystemSize, 3_301_376);
  });

  test("a normal build is refused with the Fatal exception (0) explanation; --force overrides it", () => {
    const r = preflight(normal, { flashSize: MiB, source: "firmware.bin" });
    assert.equal(r.ok, false);
    const v = verdict(r, "build-kind");
    assert.deepEqual([v.level, v.forceable, v.forced], ["refusal", true, false]);
    assert.match(
      v.message,
      /^This is a normal MicroPython build, not an OTA build: .*"Fatal exception \(0\)"/,
    );
    assert.match(v.fix as string, /BOARD_VARIANT=OTA.*firmware-ota\.bin/);
    assert.throws(
      () => assertPreflight(normal, { flashSize: MiB, source: "firmware.bin" }),
      (e: Error) =>
        e instanceof PreflightError &&
        e.exitCode === 10 &&
        e.message.startsWith(
          "firmware.bin must not go to this device:\n- This is a normal MicroPython build",
        ) &&
        e.message.includes(" Fix: Build MicroPython's OTA variant") &&
        e.message.endsWith("Pass --force to go ahead anyway.") &&
        e.result.ok === false,
    );
    const forced = assertPreflight(normal, { flashSize: MiB, force: true });
    assert.equal(forced.ok, true);
    assert.equal(forced.forced, true);
    assert.equal(verdict(forced, "build-kind").forced, true);
  });

  test("a corrupt MD5 trailer is refused and --force cannot override it", () => {
    const bad = patched(ota, 0x20000, new Uint8Array([(ota[0x20000] as number) ^ 0x80]));
    for (const force of [false, true]) {
      const r = preflight(bad, { flashSize: MiB, force });
      assert.equal(r.ok, false);
      const v = verdict(r, "md5-trailer");
      assert.deepEqual([v.level, v.forceable, v.forced], ["refusal", false, false]);
      assert.match(v.message, /does not match the MD5 of bytes/);
      assert.match(v.fix as string, /corrupt or was changed after the build/);
    }
    assert.throws(
      () => assertPreflight(bad, { flashSize: MiB, force: true }),
      /--force cannot override this\.$/,
    );
  });

  test("a truncated image is refused as corrupt", () => {
    const r = preflight(ota.subarray(0, ota.length - 100), { flashSize: MiB, force: true });
    assert.equal(verdict(r, "md5-trailer").level, "refusal");
    assert.match(verdict(r, "md5-trailer").message, /it is truncated/);
    assert.equal(r.ok, false);
  });

  test("a size word above 800000 is refused (boot8266's limit), never forced", () => {
    const big = new Uint8Array(ota);
    new DataView(big.buffer).setUint32(0x8ffc, 800_004, true);
    const r = preflight(big, { flashSize: 4 * MiB, force: true });
    const v = verdict(r, "size-limit");
    assert.deepEqual([v.level, v.forceable], ["refusal", false]);
    assert.match(v.message, /800004 bytes, more than the 800000 boot8266 accepts/);
  });

  test("512 KiB (an old ESP-01): does not fit, and there would be no filesystem", () => {
    const r = preflight(ota, { flashSize: 512 * 1024, force: true });
    assert.equal(r.ok, false);
    const v = verdict(r, "flash-size");
    assert.deepEqual([v.level, v.forceable], ["refusal", false]);
    assert.match(v.message, /needs flash from 0x3c000 to 0xd2000, but the device has only 512 KiB/);
    assert.match(v.fix as string, /ESP-01S rather than an old 512 KiB ESP-01/);
    assert.equal(verdict(r, "filesystem").level, "refusal");
  });

  test("a small image on 512 KiB fits but has no filesystem: refused, --force allowed", () => {
    const small = buildMicroPythonImage({ size: 0x20000, seed: 4 });
    const r = preflight(small, { flashSize: 512 * 1024 });
    assert.equal(verdict(r, "flash-size").level, "ok");
    const v = verdict(r, "filesystem");
    assert.deepEqual([v.level, v.forceable], ["refusal", true]);
    assert.match(v.message, /MicroPython makes no filesystem on flash smaller than 1 MiB/);
    assert.equal(preflight(small, { flashSize: 512 * 1024, force: true }).ok, true);
  });

  test("an image reaching into the SDK's last 20 KiB on 1 MiB is refused, never forced", () => {
    const huge = buildMicroPythonImage({ size: 0xc0000, seed: 5 }); // ends at 0xfc000
    const r = preflight(huge, { flashSize: MiB, force: true });
    const v = verdict(r, "sdk-sectors");
    assert.deepEqual([v.level, v.forceable], ["refusal", false]);
    assert.match(
      v.message,
      /reach 0xfc000, into the SDK's RF calibration, PHY init and system parameter sectors \(0xfb000-0x100000 on 1 MiB\)/,
    );
  });

  test("an image running into the filesystem is refused, --force allowed (custom linker scripts)", () => {
    const large = buildMicroPythonImage({ size: 0x9a000, seed: 6 }); // ends at 0xd6000
    const r = preflight(large, { flashSize: MiB });
    const v = verdict(r, "filesystem", "refusal");
    assert.equal(v.forceable, true);
    assert.match(v.message, /reach 0xd6000, past 0xd5000 where a standard OTA build's filesystem starts/);
    assert.equal(preflight(large, { flashSize: MiB, force: true }).ok, true);
  });

  test("a trailer ending in the native-code sector is only a warning", () => {
    const edge = buildMicroPythonImage({ size: 0x98010, seed: 6 }); // ends at 0xd4010
    const r = preflight(edge, { flashSize: MiB });
    assert.equal(r.ok, true);
    assert.match(
      verdict(r, "filesystem", "warning").message,
      /in the sector after the OTA build's code region \(0xd4000\)/,
    );
  });

  test("past the 1 MiB irom0 window on 4 MiB is refused, never forced", () => {
    const image = buildMicroPythonImage({ size: 0xc0000, seed: 7 });
    const r = preflight(image, { flashSize: 4 * MiB, mainAppOffset: 0x50000, force: true });
    const v = verdict(r, "irom0-window");
    assert.deepEqual([v.level, v.forceable], ["refusal", false]);
    assert.match(v.message, /past the first 1 MiB of flash, the only part the ESP8266 maps for code/);
  });

  test("an OTA build for another MAIN_APP_OFFSET, on strong evidence, is refused; the matching --app-offset passes", () => {
    // 400 references over the image's irom0 linked at 0x4024d000: a fifth point past where its code ends at 0x3c000.
    const relinked = linkedImage({ size: 0x30000, irom0Base: 0x4024d000, references: 400 });
    const r = preflight(relinked, { flashSize: MiB });
    const v = verdict(r, "app-offset");
    assert.deepEqual([v.level, v.forceable], ["refusal", true]);
    assert.match(
      v.message,
      /seems linked for MAIN_APP_OFFSET 0x44000 \(irom0 at 0x4024d000\), but this device's yaota8266 puts the app at 0x3c000/,
    );
    assert.match(v.fix as string, /pass --app-offset 0x44000/);
    const right = preflight(relinked, { flashSize: MiB, mainAppOffset: 0x44000 });
    assert.equal(verdict(right, "app-offset").level, "ok");
  });

  test("weak evidence for another MAIN_APP_OFFSET (sparse first pages, every reference inside the right range): a warning", () => {
    const view = new DataView(new Uint8Array(ota).buffer);
    const moved = new Uint8Array(view.buffer);
    for (let i = 0; i + 4 <= moved.length; i += 4) {
      const w = view.getUint32(i, true);
      if (w >= 0x40245000 && w < 0x402f0000) view.setUint32(i, w + 0x8000, true);
    }
    const r = preflight(withFreshTrailer(moved), { flashSize: MiB });
    const v = verdict(r, "app-offset");
    assert.deepEqual([v.level, r.ok], ["warning", true]);
    assert.match(
      v.message,
      /may be linked for MAIN_APP_OFFSET 0x44000 rather than 0x3c000, but the evidence is weak/,
    );
  });

  test("an image with no telling references: a warning, not a refusal", () => {
    const out = new Uint8Array(ota);
    const view = new DataView(out.buffer);
    for (let i = 0; i + 4 <= out.length; i += 4) {
      const w = view.getUint32(i, true);
      if (w >= 0x40209000 && w < 0x40300000) view.setUint32(i, 0, true);
    }
    const r = preflight(withFreshTrailer(out), { flashSize: MiB });
    assert.equal(r.ok, true);
    assert.equal(verdict(r, "build-kind").level, "warning");
    assert.match(verdict(r, "build-kind").message, /heuristic/);
  });

  test("bytes after the trailer: a warning", () => {
    const r = preflight(new Uint8Array([...ota, 0, 0]), { flashSize: MiB });
    assert.equal(r.ok, true);
    assert.match(verdict(r, "trailing-bytes", "warning").message, /2 bytes after its MD5 trailer/);
  });

  test("a canned .ota file is unpacked and its firmware checked", () => {
    const file = encodeOtaFile(signImage(ota, key, 256).map((p, i) => withSeq(i + 1, p)));
    const r = preflight(file, { flashSize: MiB, source: "update.ota" });
    assert.equal(r.input, "ota-file");
    assert.equal(r.ok, true);
    assert.equal(r.identity, imageIdentity(ota));
    assert.equal(r.imageSize, ota.length);
    assert.match(verdict(r, "file-kind").message, /^update\.ota is a canned \.ota update/);
    const nfile = encodeOtaFile(signImage(normal, key, 256).map((p, i) => withSeq(i + 1, p)));
    assert.equal(verdict(preflight(nfile, { flashSize: MiB }), "build-kind").level, "refusal");
  });

  test("a damaged .ota file is refused, never forced", () => {
    const file = encodeOtaFile(signImage(ota.subarray(0, 0x9100), key, 256).map((p, i) => withSeq(i + 1, p)));
    file[50] = (file[50] as number) ^ 1;
    const r = preflight(file, { flashSize: MiB, force: true, source: "update.ota" });
    assert.equal(r.ok, false);
    assert.match(verdict(r, "file-kind").message, /update\.ota fails its SHA1 checksum/);
  });

  test("yaota8266.bin, a plain ESP8266 app, a damaged image and a text file are refused as the wrong file", () => {
    const yaota = buildBootloaderImage({ modulus: key.modulus });
    const boot = verdict(
      preflight(yaota, { flashSize: MiB, force: true, source: "yaota8266.bin" }),
      "file-kind",
    );
    assert.equal(boot.forceable, false);
    assert.match(
      boot.message,
      /^yaota8266\.bin is a yaota8266 bootloader \(boot8266 \+ ota-server\), not an app/,
    );
    assert.match(boot.fix as string, /mpota flash-plan/);
    const plain = patched(ota, 0x8ffc, new Uint8Array([0xff, 0xff, 0xff, 0xff]));
    assert.match(
      verdict(preflight(plain, { flashSize: MiB }), "file-kind").message,
      /without MicroPython's size word at 0x8ffc/,
    );
    const cut = preflight(ota.subarray(0, 0x5000), { flashSize: MiB });
    assert.match(verdict(cut, "file-kind").message, /is damaged: .*is truncated: segment 1 of 2/);
    const text = preflight(Buffer.from("hello world\n"), { flashSize: MiB, source: "notes.txt" });
    assert.match(
      verdict(text, "file-kind").message,
      /^notes\.txt is not a firmware image I know \(it looks like text; first bytes 68656c6c6f20776f726c640a\)/,
    );
    assert.equal(text.ok, false);
  });

  test("impossible flash sizes and offsets are usage errors", () => {
    assert.throws(
      () => preflight(ota, { flashSize: 1000000 }),
      (e: Error) => e instanceof FlashSizeError && e.exitCode === 2,
    );
    assert.throws(
      () => preflight(ota, { flashSize: MiB, mainAppOffset: 0x3c100 }),
      /MAIN_APP_OFFSET 0x3c100 is not possible/,
    );
  });
});
