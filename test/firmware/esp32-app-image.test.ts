import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { describe, test } from "node:test";
import { UsageError } from "../../src/errors.ts";
import { parseEspImage } from "../../src/firmware/esp-image.ts";
import { Esp32ImageError, isEsp32AppImage, parseEsp32AppImage } from "../../src/firmware/esp32-app-image.ts";
import { parseChipName } from "../../src/firmware/esp32-chips.ts";
import { preflightEsp32 } from "../../src/firmware/esp32-preflight.ts";
import { buildEspImage } from "../support/bootloader-image.ts";
import { buildEsp32AppImage, buildMergedFirmware, esp32Identity } from "../support/esp32-image.ts";

const app = buildEsp32AppImage({ size: 200 * 1024, seed: 5 });

function flipped(bytes: Uint8Array, at: number): Uint8Array {
  const out = new Uint8Array(bytes);
  out[at] = (out[at] as number) ^ 0x01;
  return out;
}

function refusals(result: ReturnType<typeof preflightEsp32>): string[] {
  return result.verdicts.filter((v) => v.level === "refusal").map((v) => `${v.check}: ${v.message}`);
}

describe("ESP32 app image", () => {
  test("decodes chip, revisions, segments, checksum, the appended SHA-256 and the app description", () => {
    const image = parseEsp32AppImage(app, "micropython.bin");
    assert.equal(image.chip.label, "ESP32");
    assert.equal(image.minChipRevision, "v0.0");
    assert.equal(image.maxChipRevision, "v3.99");
    assert.equal(image.flashMode, "dio");
    assert.equal(image.flashSize, "4MB");
    assert.equal(image.flashFrequency, "40m");
    assert.deepEqual(
      image.segments.map((s) => [s.loadAddress, s.fileOffset]),
      [
        [0x3f400020, 0x20],
        [0x3ffb0000, 0x1028],
        [0x40080000, 0x1830],
        [0x400d0020, 0x3838],
      ],
    );
    assert.equal(image.checksum.ok, true);
    assert.equal(image.hash.appended, true);
    assert.equal(image.hash.ok, true);
    assert.equal(
      image.hash.stored,
      createHash("sha256")
        .update(app.subarray(0, app.length - 32))
        .digest("hex"),
    );
    assert.equal(image.imageLength, app.length);
    assert.equal(image.trailingBytes, 0);
    assert.deepEqual(image.appDescription, {
      secureVersion: 0,
      version: "",
      projectName: "",
      time: "12:00:00",
      date: "Dec  6 2026",
      idfVersion: "v5.5.1",
      elfSha256: esp32Identity({ seed: 5 }),
    });
    // The identity sits at image offset 0xb0, in the slot's first block, as the spec says.
    assert.equal(Buffer.from(app.subarray(0xb0, 0xd0)).toString("hex"), esp32Identity({ seed: 5 }));
  });

  test("names every chip of the family from its header id", () => {
    for (const [id, label] of [
      [2, "ESP32-S2"],
      [5, "ESP32-C3"],
      [9, "ESP32-S3"],
      [0x0d, "ESP32-C6"],
      [0x77, "an unknown chip (id 0x0077)"],
    ] as const) {
      assert.equal(parseEsp32AppImage(buildEsp32AppImage({ chipId: id })).chip.label, label);
    }
  });

  test("the ESP8266 parser reads the same bytes as before the shared segment walk", () => {
    const esp8266 = buildEspImage({
      segments: [
        { address: 0x40100000, data: new Uint8Array(20).fill(7) },
        { address: 0x3ffe8000, data: new Uint8Array(9).fill(3) },
      ],
    });
    const image = parseEspImage(esp8266);
    assert.deepEqual(
      image.segments.map((s) => [s.index, s.loadAddress, s.length, s.fileOffset, s.region]),
      [
        [0, 0x40100000, 20, 16, "iram"],
        [1, 0x3ffe8000, 9, 44, "dram"],
      ],
    );
    assert.equal(image.checksum.ok, true);
    assert.equal(image.end, 64);
  });

  test("a damaged checksum or hash is reported; the checks refuse it with the cause", () => {
    const badChecksum = flipped(app, 0x2000);
    const image = parseEsp32AppImage(badChecksum);
    assert.equal(image.checksum.ok, false);
    assert.equal(image.hash.ok, false);
    assert.deepEqual(
      refusals(preflightEsp32(badChecksum)).map((r) => r.split(":")[0]),
      ["checksum", "sha256"],
    );
    // Only the hash changed: the checksum still matches, the SHA-256 does not.
    const badHash = flipped(app, app.length - 1);
    const r = preflightEsp32(badHash, { source: "micropython.bin" });
    assert.deepEqual(refusals(r), [
      `sha256: the appended SHA-256 is ${Buffer.from(badHash.subarray(-32)).toString("hex")}, the image gives ${createHash("sha256").update(app.subarray(0, -32)).digest("hex")}: it was changed after it was built, and the bootloader refuses it.`,
    ]);
  });

  test("truncated files, bad magic and impossible segment counts are clear Esp32ImageErrors", () => {
    const cases: Array<[Uint8Array, RegExp]> = [
      [app.subarray(0, 10), /needs a 24-byte header, but the file ends at byte 10/],
      [
        app.subarray(0, 0x1000),
        /segment 1 of 4 \(load address 0x3f400020, 4096 bytes\) needs the file to reach byte 4128/,
      ],
      [app.subarray(0, app.length - 10), /a SHA-256 follows the checksum .* but the file ends at byte/],
      [
        new Uint8Array([0x7f, 0x45, 0x4c, 0x46, ...new Uint8Array(40)]),
        /found 0x7f.*not an ESP32 app image. Use micropython.bin/,
      ],
      [Uint8Array.from([0xe9, 17, ...app.subarray(2)]), /claims 17 segments; an ESP32 app image has 1 to 16/],
    ];
    for (const [bytes, message] of cases) {
      assert.throws(
        () => parseEsp32AppImage(bytes, "fw.bin"),
        (e: unknown) => {
          assert.ok(e instanceof Esp32ImageError);
          assert.equal(e.exitCode, 14);
          assert.match(e.message, message);
          return true;
        },
      );
    }
  });

  test("a merged firmware.bin is refused with the file to use instead", () => {
    for (const [offset, chipId, label] of [
      [0x1000, 0, "ESP32"],
      [0x0, 9, "ESP32-S3"],
    ] as const) {
      const merged = buildMergedFirmware(buildEsp32AppImage({ chipId }), offset);
      assert.throws(
        () => parseEsp32AppImage(merged, "firmware.bin"),
        new Esp32ImageError(
          `firmware.bin is a merged firmware.bin for ${label} (bootloader at 0x${offset.toString(16)}, partition table at 0x8000, app at 0x10000), made for the first flash over serial. An OTA slot takes only the app: written there, this file passes set_boot() but never boots. Use micropython.bin from the same build (published on micropython.org as the .app-bin file).`,
        ),
      );
    }
  });

  test("MicroPython's own ESP32 firmware.bin (makeimg.py starts it at the bootloader, 0x1000) is refused as merged", () => {
    const file = buildMergedFirmware(buildEsp32AppImage({ chipId: 0 }), 0x1000).subarray(0x1000);
    assert.throws(
      () => parseEsp32AppImage(file, "ESP32_GENERIC-OTA.bin"),
      /is a merged firmware\.bin for ESP32 \(bootloader at 0x1000, partition table at 0x8000, app at 0x10000\)/,
    );
    // ESP-IDF reads whatever image starts a partition: the bootloader, an image without app description.
    const first = parseEsp32AppImage(file, "slot", { refuseMerged: false });
    assert.equal(first.appDescription, null);
  });

  test("checks against a chip: an ESP32-S3 image for an ESP32 is refused", () => {
    const s3 = buildEsp32AppImage({ chipId: 9 });
    const esp32 = parseChipName("esp32");
    assert.deepEqual(preflightEsp32(s3, { chip: parseChipName("ESP32-S3"), source: "s3.bin" }).ok, true);
    assert.deepEqual(refusals(preflightEsp32(s3, { chip: esp32, source: "s3.bin" })), [
      "chip: s3.bin is built for ESP32-S3, but the device is an ESP32: its bootloader would refuse the image (set_boot() raises OSError(-5379)).",
    ]);
    assert.throws(() => parseChipName("esp33"), UsageError);
  });

  test("the slot: 1.5 MiB fits the OTA variant's slot, the custom 1,712,512-byte build does not", () => {
    const fits = buildEsp32AppImage({ size: 0x180000, seed: 8 });
    assert.ok(fits.length <= 0x180000 && fits.length > 0x180000 - 64);
    const ok = preflightEsp32(fits);
    assert.equal(ok.ok, true);
    assert.equal(ok.slot.room, 0x180000 - fits.length);
    const big = buildEsp32AppImage({ size: 1_712_512, seed: 8 });
    assert.deepEqual(
      refusals(preflightEsp32(big, { source: "big.bin" })).map((r) => r.replace(/\(.*?\) /, "")),
      [
        `slot-size: ${big.length.toLocaleString("en-US")} bytes is larger than the app slot by ${(big.length - 0x180000).toLocaleString("en-US")} bytes (136.4 KiB): it cannot be written there. The slot (ota_0/ota_1 of MicroPython's ESP32_GENERIC OTA variant) holds 1,572,864 bytes (1.50 MiB).`,
      ],
    );
  });

  test("without an app description it is not an app (a bootloader.bin); without a hash, a warning", () => {
    const noDesc = buildEsp32AppImage({ noAppDesc: true });
    assert.equal(isEsp32AppImage(noDesc), false);
    assert.match(
      refusals(preflightEsp32(noDesc)).join("\n"),
      /^file-kind: The image has no app description \(esp_app_desc_t, magic 0xABCD5432\).*not an ESP-IDF app \(an ESP8266 image, or a bootloader\.bin\?\)/,
    );
    const noHash = buildEsp32AppImage({ hashAppended: false });
    const r = preflightEsp32(noHash);
    assert.equal(r.ok, true);
    assert.equal(r.verdicts.find((v) => v.check === "sha256")?.level, "warning");
  });
});
