import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { analyzeBootloader, isYaotaBootloader } from "../../src/firmware/bootloader-image.ts";
import { EspImageError, parseEspImage } from "../../src/firmware/esp-image.ts";
import { Esp32ImageError, parseEsp32AppImage } from "../../src/firmware/esp32-app-image.ts";
import { ESP32_CHIPS } from "../../src/firmware/esp32-chips.ts";
import { preflightEsp32 } from "../../src/firmware/esp32-preflight.ts";
import { inspectFirmware } from "../../src/firmware/inspect-file.ts";
import { analyzeMicroPythonImage, isMicroPythonImage } from "../../src/firmware/micropython-image.ts";
import { preflight } from "../../src/firmware/preflight.ts";
import { parsePrivateKeyPem } from "../../src/protocol/rsa-key.ts";
import { buildBootloaderImage, buildEspImage } from "../support/bootloader-image.ts";
import { buildEsp32AppImage, buildMergedFirmware } from "../support/esp32-image.ts";
import { readFixture, readFixtureText } from "../support/fixtures.ts";
import { buildMicroPythonImage } from "../support/images.ts";
import {
  assertClearMessage,
  concat,
  fuzz,
  fuzzRuns,
  fuzzSeed,
  mutate,
  parseOrClearError,
  type Rng,
} from "./fuzz.ts";

const key = parsePrivateKeyPem(readFixtureText("reference/priv-pkcs1.key"), "priv-pkcs1.key");

/** An ESP8266 app image of 1 to 4 small segments. */
function smallEspImage(rng: Rng): Uint8Array {
  const addresses = [0x40100000, 0x3ffe8000, 0x40210000, 0x3ff00000, 0x60000000];
  return buildEspImage({
    segments: Array.from({ length: 1 + rng.int(4) }, () => ({
      address: rng.pick(addresses),
      data: rng.bytes(rng.length(600)),
    })),
    flashMode: rng.int(6),
    sizeFreq: rng.int(256),
  });
}

const micropython = buildMicroPythonImage({ size: 40000, seed: 21 });
const normalBuild = buildMicroPythonImage({ size: 40000, seed: 22, ota: false });
/** A yaota8266.bin with a small ota-server irom0, and the same followed by an app at MAIN_APP_OFFSET 0xa000. */
const bootloader = buildBootloaderImage({ modulus: key.modulus, irom0Length: 0x1000, mainAppOffset: 0xa000 });
const fullFlash = concat(bootloader, micropython);
const VALID = [micropython, normalBuild, bootloader, fullFlash, readFixture("reference/firmware.bin.ota")];

/** A small ESP32-family app image: the app description's segment, then 0 to 3 small segments. */
function smallEsp32Image(rng: Rng): Uint8Array {
  return buildEsp32AppImage({
    chipId: rng.chance(0.8) ? rng.pick(ESP32_CHIPS).id : rng.int(0x10000),
    hashAppended: rng.chance(0.8),
    seed: rng.int(1000),
    segments: Array.from({ length: rng.int(4) }, () => ({
      address: rng.pick([0x3ffb0000, 0x40080000, 0x400d0020, 0x42000020]),
      data: rng.bytes(rng.length(600)),
    })),
  });
}

const esp32App = buildEsp32AppImage({ size: 20000, seed: 23 });
const esp32Merged = buildMergedFirmware(buildEsp32AppImage({ size: 8000, seed: 24 }));

/** An ESP32 app image or merged firmware.bin, valid or mutated, or random bytes behind the app description's magic. */
function esp32Input(rng: Rng): Uint8Array {
  const r = rng.int(6);
  if (r === 0) {
    const header = new Uint8Array(0x24);
    header.set([0xe9, rng.int(20)], 0);
    header.set([0x32, 0x54, 0xcd, 0xab], 0x20);
    return concat(header, rng.bytes(rng.length(3000)));
  }
  if (r <= 2) return rng.chance(0.3) ? smallEsp32Image(rng) : mutate(rng, smallEsp32Image(rng));
  return mutate(rng, rng.pick([esp32App, esp32App, esp32Merged]));
}

/** Random bytes (some behind the 0xE9 magic), a small app image, or a real image mutated. */
function imageInput(rng: Rng): Uint8Array {
  const r = rng.int(12);
  if (r === 0) return rng.bytes(rng.length(3000));
  if (r === 1) return concat(new Uint8Array([0xe9, rng.int(20)]), rng.bytes(rng.length(3000)));
  if (r <= 3) return rng.chance(0.5) ? smallEspImage(rng) : mutate(rng, smallEspImage(rng));
  if (r <= 5) return esp32Input(rng);
  return mutate(rng, rng.pick(VALID));
}

describe("fuzz: firmware images", () => {
  it("the valid inputs are what the mutations start from", () => {
    assert.ok(isMicroPythonImage(micropython) && isMicroPythonImage(normalBuild));
    assert.ok(isYaotaBootloader(bootloader) && isYaotaBootloader(fullFlash));
    assert.equal(analyzeBootloader(fullFlash).mainApp?.micropython?.trailer.status, "ok");
    assert.equal(preflightEsp32(esp32App).ok, true);
    assert.throws(() => parseEsp32AppImage(esp32Merged), /merged firmware\.bin/);
  });

  it("parseEspImage reads any bytes or refuses them with a clear EspImageError", async () => {
    await fuzz({
      name: "parseEspImage",
      seed: fuzzSeed(0xe59),
      runs: fuzzRuns(3000),
      generate: (rng) => ({
        bytes: imageInput(rng),
        offset: rng.chance(0.9) ? 0 : rng.pick([1, 0x1000, 0xa000]),
      }),
      check: ({ bytes, offset }) => {
        const image = parseOrClearError(() => parseEspImage(bytes, offset, "fuzz.bin"), EspImageError);
        if (!image) return;
        assert.ok(image.segmentCount >= 1 && image.segmentCount <= 16);
        for (const s of image.segments) assert.ok(s.fileOffset + s.length <= bytes.length);
        assert.ok(image.end > offset);
      },
    });
  });

  it("parseEsp32AppImage reads any bytes or refuses them with a clear Esp32ImageError", async () => {
    await fuzz({
      name: "parseEsp32AppImage",
      seed: fuzzSeed(0xe32),
      runs: fuzzRuns(3000),
      generate: (rng) => (rng.chance(0.8) ? esp32Input(rng) : imageInput(rng)),
      check: (bytes) => {
        const image = parseOrClearError(() => parseEsp32AppImage(bytes, "fuzz.bin"), Esp32ImageError);
        if (!image) return;
        assert.ok(image.segmentCount >= 1 && image.segmentCount <= 16);
        for (const s of image.segments) assert.ok(s.fileOffset + s.length <= bytes.length);
        assert.ok(image.imageLength <= bytes.length && image.trailingBytes >= 0);
        assertClearMessage(image.chip.label, "chip label");
        JSON.parse(JSON.stringify(image));
      },
    });
  });

  it("preflightEsp32 gives verdicts for any bytes against any chip, never throws", async () => {
    await fuzz({
      name: "preflightEsp32",
      seed: fuzzSeed(0x5e32),
      runs: fuzzRuns(1500),
      generate: (rng) => ({
        bytes: rng.chance(0.8) ? esp32Input(rng) : imageInput(rng),
        chip: rng.chance(0.5) ? rng.pick(ESP32_CHIPS) : undefined,
        slotSize: rng.chance(0.3) ? rng.pick([0x1000, 0x8000, 0x180000]) : undefined,
      }),
      check: ({ bytes, chip, slotSize }) => {
        const result = preflightEsp32(bytes, { chip, slotSize, source: "fuzz.bin" });
        assert.ok(result.verdicts.length > 0);
        for (const v of result.verdicts) assertClearMessage(v.message, `${v.check} verdict`);
        assert.equal(
          result.ok,
          result.verdicts.every((v) => v.level !== "refusal"),
        );
        if (result.ok) assert.match(result.identity ?? "", /^[0-9a-f]{64}$/);
      },
    });
  });

  it("MicroPython and bootloader analyses read any bytes or refuse them with a clear EspImageError", async () => {
    await fuzz({
      name: "analyzeMicroPythonImage / analyzeBootloader",
      seed: fuzzSeed(0x3b),
      runs: fuzzRuns(1500),
      generate: imageInput,
      check: (bytes) => {
        const mp = parseOrClearError(
          () => analyzeMicroPythonImage(bytes, { source: "fuzz.bin" }),
          EspImageError,
        );
        if (mp) {
          assertClearMessage(mp.micropython.trailer.message, "trailer message");
          assertClearMessage(mp.micropython.build.explanation, "build explanation");
        }
        const boot = parseOrClearError(
          () => analyzeBootloader(bytes, { key, source: "fuzz.bin" }),
          EspImageError,
        );
        if (boot) {
          for (const text of [...boot.errors, ...boot.warnings, ...boot.keyErrors]) assertClearMessage(text);
        }
      },
    });
  });

  it("inspect recognises any file as some kind and explains it, never throws", async () => {
    await fuzz({
      name: "inspectFirmware",
      seed: fuzzSeed(0x1f5),
      runs: fuzzRuns(1500),
      generate: (rng) => ({ bytes: imageInput(rng), withKey: rng.chance(0.3) }),
      check: ({ bytes, withKey }) => {
        const report = inspectFirmware(bytes, { file: "fuzz.bin", ...(withKey ? { key } : {}) });
        assert.ok(
          [
            "micropython",
            "esp8266-app",
            "yaota8266",
            "ota-file",
            "esp32-app",
            "esp32-merged",
            "unknown",
          ].includes(report.kind),
        );
        assertClearMessage(report.summary, "summary");
        for (const text of [...report.errors, ...report.warnings, ...report.notes]) assertClearMessage(text);
        assert.equal(report.size, bytes.length);
        JSON.parse(JSON.stringify(report)); // the --json output
      },
    });
  });

  it("preflight (the checks before an image is stored or pushed) gives verdicts for any bytes, never throws", async () => {
    await fuzz({
      name: "preflight",
      seed: fuzzSeed(0x9f),
      runs: fuzzRuns(1500),
      generate: (rng) => ({
        bytes: imageInput(rng),
        flashSize: rng.pick([512, 1024, 4096]) * 1024,
        force: rng.chance(0.3),
      }),
      check: ({ bytes, flashSize, force }) => {
        const result = preflight(bytes, { flashSize, force, source: "fuzz.bin" });
        assert.ok(result.verdicts.length > 0);
        for (const v of result.verdicts) assertClearMessage(v.message, `${v.check} verdict`);
        if (result.ok) assert.ok(result.verdicts.every((v) => v.level !== "refusal" || v.forced));
      },
    });
  });
});
