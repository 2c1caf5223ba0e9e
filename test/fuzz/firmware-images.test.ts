import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { analyzeBootloader, isYaotaBootloader } from "../../src/firmware/bootloader-image.ts";
import { EspImageError, parseEspImage } from "../../src/firmware/esp-image.ts";
import { inspectFirmware } from "../../src/firmware/inspect-file.ts";
import { analyzeMicroPythonImage, isMicroPythonImage } from "../../src/firmware/micropython-image.ts";
import { preflight } from "../../src/firmware/preflight.ts";
import { parsePrivateKeyPem } from "../../src/protocol/rsa-key.ts";
import { buildBootloaderImage, buildEspImage } from "../support/bootloader-image.ts";
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

/** Random bytes (some behind the 0xE9 magic), a small app image, or a real image mutated. */
function imageInput(rng: Rng): Uint8Array {
  const r = rng.int(10);
  if (r === 0) return rng.bytes(rng.length(3000));
  if (r === 1) return concat(new Uint8Array([0xe9, rng.int(20)]), rng.bytes(rng.length(3000)));
  if (r <= 3) return rng.chance(0.5) ? smallEspImage(rng) : mutate(rng, smallEspImage(rng));
  return mutate(rng, rng.pick(VALID));
}

describe("fuzz: firmware images", () => {
  it("the valid inputs are what the mutations start from", () => {
    assert.ok(isMicroPythonImage(micropython) && isMicroPythonImage(normalBuild));
    assert.ok(isYaotaBootloader(bootloader) && isYaotaBootloader(fullFlash));
    assert.equal(analyzeBootloader(fullFlash).mainApp?.micropython?.trailer.status, "ok");
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
        assert.ok(["micropython", "esp8266-app", "yaota8266", "ota-file", "unknown"].includes(report.kind));
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
