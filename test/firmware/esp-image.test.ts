import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  EspImageError,
  fileOffsetOfAddress,
  parseEspImage,
  strangeSegments,
  withFlashParams,
} from "../../src/firmware/esp-image.ts";
import { seededBytes } from "../../src/simulator/esp-image-bytes.ts";
import { buildEspImage } from "../support/bootloader-image.ts";

const iram = seededBytes(0x1234, 1);
const dram = seededBytes(0x200, 2);
const rodata = seededBytes(0x51, 3);
const image = buildEspImage({
  segments: [
    { address: 0x40100000, data: iram },
    { address: 0x3ffe8000, data: dram },
    { address: 0x3ffe8200, data: rodata },
  ],
  entry: 0x401004f4,
  flashMode: 3,
  sizeFreq: 0x4f,
});

describe("esptool v1 image", () => {
  test("decodes header, flash parameters in words, entry and segments with their file offsets", () => {
    const parsed = parseEspImage(image);
    assert.equal(parsed.format, "esp8266-v1");
    assert.equal(parsed.segmentCount, 3);
    assert.equal(parsed.flashMode, "dout");
    assert.equal(parsed.flashSize, "4MB");
    assert.equal(parsed.flashFrequency, "80m");
    assert.equal(parsed.entry, 0x401004f4);
    assert.deepEqual(
      parsed.segments.map((s) => [s.loadAddress, s.length, s.fileOffset, s.region]),
      [
        [0x40100000, 0x1234, 16, "iram"],
        [0x3ffe8000, 0x200, 16 + 0x1234 + 8, "dram"],
        [0x3ffe8200, 0x51, 16 + 0x1234 + 8 + 0x200 + 8, "dram"],
      ],
    );
    assert.equal(parsed.checksum.ok, true);
    assert.equal(parsed.end, image.length);
    assert.equal(parsed.end % 16, 0);
  });

  test("every flash mode, size and frequency code has its esptool name", () => {
    const names = (mode: number, sizeFreq: number) => {
      const p = parseEspImage(
        buildEspImage({ segments: [{ address: 0x40100000, data: iram }], flashMode: mode, sizeFreq }),
      );
      return [p.flashMode, p.flashSize, p.flashFrequency];
    };
    assert.deepEqual(names(0, 0x00), ["qio", "512KB", "40m"]);
    assert.deepEqual(names(1, 0x11), ["qout", "256KB", "26m"]);
    assert.deepEqual(names(2, 0x22), ["dio", "1MB", "20m"]);
    assert.deepEqual(names(3, 0x3f), ["dout", "2MB", "80m"]);
    assert.deepEqual(names(3, 0x50), ["dout", "2MB-c1", "40m"]);
    assert.deepEqual(names(3, 0x60), ["dout", "4MB-c1", "40m"]);
    assert.deepEqual(names(3, 0x80), ["dout", "8MB", "40m"]);
    assert.deepEqual(names(3, 0x90), ["dout", "16MB", "40m"]);
    assert.deepEqual(names(7, 0x7e), ["unknown (0x7)", "unknown (0x7)", "unknown (0xe)"]);
  });

  test("a flipped data byte shows as a checksum mismatch", () => {
    const damaged = new Uint8Array(image);
    damaged[100] = (damaged[100] as number) ^ 0x40;
    const parsed = parseEspImage(damaged);
    assert.equal(parsed.checksum.ok, false);
    assert.equal(parsed.checksum.stored, image[image.length - 1]);
    assert.equal(parsed.checksum.computed, (image[image.length - 1] as number) ^ 0x40);
  });

  test("truncated inside a segment: says which segment and where the file ends", () => {
    const cut = image.subarray(0, 16 + 0x1234 + 8 + 0x100);
    assert.throws(
      () => parseEspImage(cut, 0, "app.bin"),
      (e: Error) =>
        e instanceof EspImageError &&
        e.exitCode === 9 &&
        /^app\.bin is truncated: segment 2 of 3 \(load address 0x3ffe8000, 512 bytes\) needs the file to reach byte 5196, but it ends at byte 4940\./.test(
          e.message,
        ),
    );
  });

  test("truncated header and truncated segment header are reported as such", () => {
    assert.throws(
      () => parseEspImage(image.subarray(0, 5), 0, "x.bin"),
      /x\.bin is truncated: an ESP8266 image needs an 8-byte header, but the file ends at byte 5/,
    );
    assert.throws(
      () => parseEspImage(image.subarray(0, 16 + 0x1234 + 3), 0, "x.bin"),
      /x\.bin is truncated: the header of segment 2 of 3 would start at byte 4676, but the file ends at byte 4679/,
    );
  });

  test("rejects a wrong magic and an impossible segment count", () => {
    const wrong = new Uint8Array(image);
    wrong[0] = 0xea;
    assert.throws(
      () => parseEspImage(wrong),
      /does not start with the esptool image magic 0xE9 \(found 0xea\)/,
    );
    const none = new Uint8Array(image);
    none[1] = 0;
    assert.throws(() => parseEspImage(none), /claims 0 segments/);
  });

  test("maps CPU addresses to file offsets and spots load addresses outside ESP8266 memory", () => {
    const parsed = parseEspImage(image);
    assert.equal(fileOffsetOfAddress(parsed, 0x40100010), 16 + 0x10);
    assert.equal(fileOffsetOfAddress(parsed, 0x3ffe8204), 16 + 0x1234 + 8 + 0x200 + 8 + 4);
    assert.equal(fileOffsetOfAddress(parsed, 0x40200000), undefined);
    const esp32ish = buildEspImage({ segments: [{ address: 0xee000000, data: iram }] });
    assert.deepEqual(
      strangeSegments(parseEspImage(esp32ish)).map((s) => s.loadAddress),
      [0xee000000],
    );
  });

  test("withFlashParams rewrites only the mode byte and the size nibble, as esptool -fm -fs does", () => {
    const patched = withFlashParams(image, "qio", 0x2);
    assert.equal(patched[2], 0);
    assert.equal(patched[3], 0x2f);
    assert.deepEqual(Buffer.from(patched.subarray(4)), Buffer.from(image.subarray(4)));
    assert.deepEqual([patched[0], patched[1]], [0xe9, 3]);
    assert.equal(parseEspImage(patched).checksum.ok, true);
  });
});
