import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { EXAMPLE_MODULUS } from "../../src/firmware/bootloader-image.ts";
import { INSPECT_FORMAT, type InspectReport, inspectFirmware } from "../../src/firmware/inspect-file.ts";
import { describeUnknownFile } from "../../src/firmware/unknown-file.ts";
import { withSeq } from "../../src/protocol/datagram.ts";
import { signImage } from "../../src/protocol/image-packets.ts";
import { encodeOtaFile } from "../../src/protocol/ota-file.ts";
import { generateKeyPair, parsePrivateKeyPem } from "../../src/protocol/rsa-key.ts";
import { seededBytes } from "../../src/simulator/esp-image-bytes.ts";
import { buildBootloaderImage, buildEspImage } from "../support/bootloader-image.ts";
import { buildEsp32AppImage, buildMergedFirmware } from "../support/esp32-image.ts";
import { readFixture, readFixtureText } from "../support/fixtures.ts";
import { buildMicroPythonImage, imageIdentity } from "../support/images.ts";
import { bannerBytes, patched, withFreshTrailer } from "./image-edits.ts";

const key = parsePrivateKeyPem(readFixtureText("reference/priv-pkcs8.key"));
const otherKey = generateKeyPair(512).key;
const ota = withFreshTrailer(
  patched(buildMicroPythonImage({ size: 0x40000, seed: 8 }), 0x9800, bannerBytes()),
);

const KEYS: Array<keyof InspectReport> = [
  "format",
  "file",
  "size",
  "kind",
  "summary",
  "errors",
  "warnings",
  "notes",
  "appOffset",
  "key",
  "espImage",
  "micropython",
  "bootloader",
  "otaFile",
  "esp32",
  "unknown",
];

describe("inspect: recognising a file by its first bytes", () => {
  test("every report has the same top-level keys, whatever the kind", () => {
    for (const bytes of [
      ota,
      buildBootloaderImage({ modulus: key.modulus }),
      readFixture("reference/firmware.bin.ota"),
      buildEsp32AppImage(),
      buildMergedFirmware(buildEsp32AppImage()),
      new Uint8Array(3),
    ]) {
      const r = inspectFirmware(bytes, { file: "f" });
      assert.deepEqual(Object.keys(r), KEYS);
      assert.equal(r.format, INSPECT_FORMAT);
      assert.doesNotThrow(() => JSON.stringify(r));
    }
  });

  test("MicroPython OTA build: summary with version, kind, size and trailer; no errors", () => {
    const r = inspectFirmware(ota, { file: "firmware-ota.bin" });
    assert.equal(r.kind, "micropython");
    assert.equal(r.summary, "MicroPython v1.27.0, OTA build, 262,144 bytes (256.0 KiB), MD5 trailer ok");
    assert.deepEqual([r.errors, r.warnings], [[], []]);
    assert.equal(r.micropython?.identity, imageIdentity(ota));
    assert.equal(r.espImage?.segments.length, 2);
  });

  test("normal build and corrupt trailer are errors", () => {
    const normal = inspectFirmware(buildMicroPythonImage({ size: 0x20000, ota: false }), {
      file: "firmware.bin",
    });
    assert.equal(normal.kind, "micropython");
    assert.match(
      normal.errors.join("\n"),
      /Normal \(non-OTA\) build: .*"Fatal exception \(0\)": use firmware-ota\.bin/,
    );
    const corrupt = inspectFirmware(patched(ota, ota.length - 1, new Uint8Array([0])), { file: "x.bin" });
    assert.match(corrupt.errors.join("\n"), /does not match the MD5/);
    assert.match(corrupt.summary, /MD5 trailer mismatch$/);
  });

  test("a key given with a firmware image is noted as unused", () => {
    const r = inspectFirmware(ota, { file: "f", key });
    assert.deepEqual(r.key, { bits: 512 });
    assert.match(r.notes.join("\n"), /A key says nothing about a firmware image/);
  });

  test("yaota8266.bin with its own key, someone else's key, no key, the example key", () => {
    const yaota = buildBootloaderImage({ modulus: key.modulus });
    const good = inspectFirmware(yaota, { file: "yaota8266.bin", key });
    assert.equal(good.kind, "yaota8266");
    assert.deepEqual(good.errors, []);
    assert.equal(
      good.summary,
      "yaota8266 bootloader (boot8266 + ota-server), GPIO mask 0xf035, wait 3000 ms, holds the key's modulus",
    );
    assert.equal(good.appOffset, 0x3c000);
    const wrong = inspectFirmware(yaota, { file: "yaota8266.bin", key: otherKey });
    assert.match(wrong.summary, /does NOT hold the key's modulus$/);
    assert.match(wrong.errors.join("\n"), /silently drop every update signed with that key/);
    const none = inspectFirmware(yaota, { file: "yaota8266.bin" });
    assert.match(none.summary, /key not checked$/);
    assert.match(none.notes.join("\n"), /Give --key, --modulus or --config-h/);
    const example = inspectFirmware(buildBootloaderImage({ modulus: new Uint8Array(EXAMPLE_MODULUS) }), {
      file: "y",
    });
    assert.match(example.summary, /built with the EXAMPLE key$/);
    assert.equal(example.errors.length, 1);
  });

  test("yaota8266.bin checked against a MAIN_APP_OFFSET its code does not hold", () => {
    const yaota = buildBootloaderImage({ modulus: key.modulus });
    const r = inspectFirmware(yaota, { file: "y", appOffset: 0x44000, appOffsetGiven: true });
    assert.match(r.errors.join("\n"), /boot8266's code holds MAIN_APP_OFFSET 0x3c000, not the 0x44000 given/);
  });

  test("a canned .ota file with the right key, a wrong key and a key of another size", () => {
    const file = encodeOtaFile(signImage(ota, key, 256).map((p, i) => withSeq(i + 1, p)));
    const good = inspectFirmware(file, { file: "update.ota", key });
    assert.equal(good.kind, "ota-file");
    assert.deepEqual(good.errors, []);
    assert.equal(
      good.summary,
      `canned .ota update: 1024 data datagrams of up to 256 bytes carrying MicroPython v1.27.0, OTA build, 262,144 bytes (256.0 KiB), MD5 trailer ok; checksum ok; all 1027 signatures verify`,
    );
    assert.equal(good.otaFile?.image?.micropython?.identity, imageIdentity(ota));
    const wrong = inspectFirmware(file, { file: "update.ota", key: otherKey });
    assert.match(
      wrong.errors.join("\n"),
      /^1027 of 1027 datagrams do not verify with the given key \(the first is record 1, seq 1, image offset 0\): the device would drop them silently/,
    );
    const bigKey = generateKeyPair(1024).key;
    const sized = inspectFirmware(file, { file: "update.ota", key: bigKey });
    assert.match(sized.errors.join("\n"), /signed for a 512-bit key, the given key has 1024 bits/);
    const unchecked = inspectFirmware(file, { file: "update.ota" });
    assert.match(unchecked.summary, /signatures not checked$/);
  });

  test("a canned .ota file carrying a normal build or random bytes is an error", () => {
    const normal = buildMicroPythonImage({ size: 0x12000, ota: false });
    const nfile = encodeOtaFile(signImage(normal, key, 256).map((p, i) => withSeq(i + 1, p)));
    assert.match(
      inspectFirmware(nfile, { file: "n.ota" }).errors.join("\n"),
      /^The firmware inside: Normal \(non-OTA\) build/,
    );
    const ref = inspectFirmware(readFixture("reference/firmware.bin.ota"), { file: "r.ota", key });
    assert.match(ref.errors.join("\n"), /The firmware inside is not a MicroPython image/);
  });

  test("a damaged .ota file", () => {
    const damaged = new Uint8Array(readFixture("reference/firmware.bin.ota"));
    damaged[300] = (damaged[300] as number) ^ 4;
    const r = inspectFirmware(damaged, { file: "bad.ota" });
    assert.equal(r.summary, "canned .ota update, damaged");
    assert.match(r.errors[0] as string, /bad\.ota fails its SHA1 checksum/);
  });

  test("a plain ESP8266 app image is explained, and why boot8266 would not start it", () => {
    const app = buildEspImage({ segments: [{ address: 0x40100000, data: seededBytes(0x800, 1) }] });
    const r = inspectFirmware(app, { file: "app.bin" });
    assert.equal(r.kind, "esp8266-app");
    assert.equal(r.summary, "ESP8266 app image (esptool v1, 1 segments), not a MicroPython image");
    assert.match(r.errors.join("\n"), /shorter than a MicroPython image/);
  });

  test("a truncated ESP image: kind unknown, the truncation is the error", () => {
    const r = inspectFirmware(ota.subarray(0, 0x1000), { file: "cut.bin" });
    assert.equal(r.kind, "unknown");
    assert.match(r.errors[0] as string, /^cut\.bin is truncated: segment 1 of 2/);
    assert.equal(r.unknown?.looksLike, "damaged ESP image");
  });

  test("anything else: not a firmware image I know, with what it looks like", () => {
    const cases: Array<[Uint8Array, string]> = [
      [new Uint8Array(0), "empty"],
      [new Uint8Array(4096).fill(0xff), "erased flash"],
      [new Uint8Array(10), "zeros"],
      [Buffer.from("\x7fELF\x01\x01\x01\0\0\0\0\0\0\0\0\0\x02\0", "latin1"), "ELF"],
      [Buffer.from("PK\x03\x04\x14\0\0\0", "latin1"), "ZIP"],
      [Buffer.from([0x1f, 0x8b, 8, 0, 1, 2]), "gzip"],
      [Buffer.from("-----BEGIN RSA PRIVATE KEY-----\nMIIB\n", "latin1"), "PEM"],
      [Buffer.from(":100000000C9434000C9446000C9446000C94460061\n", "latin1"), "Intel HEX"],
      [Buffer.from("yaota8266\x02rest", "latin1"), "canned .ota (unknown version)"],
      [Buffer.from([0xea, 4, 0, 0, 1, 2, 3, 4]), "esptool v2 image"],
      [Buffer.from("just some notes\n", "latin1"), "text"],
      [seededBytes(100, 3).map((b) => (b < 0x20 ? 0x80 : b)), "binary"],
    ];
    for (const [bytes, looksLike] of cases) {
      assert.equal(describeUnknownFile(bytes).looksLike, looksLike, looksLike);
      const r = inspectFirmware(bytes, { file: "x" });
      assert.equal(r.kind, "unknown", looksLike);
      assert.match(
        r.summary,
        new RegExp(`^not a firmware image I know: looks like ${looksLike.replace(/[.()]/g, "\\$&")}, `),
      );
      assert.equal(r.errors.length, 1);
    }
    const elf = inspectFirmware(Buffer.from("\x7fELF\x01\x01\x01\0", "latin1"), { file: "firmware.elf" });
    assert.equal(
      elf.summary,
      "not a firmware image I know: looks like ELF, 8 bytes, starting 7f454c4601010100",
    );
    assert.match(elf.errors[0] as string, /Flash and push the \.bin made from it/);
  });
});
