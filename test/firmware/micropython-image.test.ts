import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { describe, test } from "node:test";
import { classifyBuild } from "../../src/firmware/build-kind.ts";
import {
  analyzeMicroPythonImage,
  checkMd5Trailer,
  isMicroPythonImage,
} from "../../src/firmware/micropython-image.ts";
import { findMicroPythonVersion } from "../../src/firmware/micropython-version.ts";
import { buildMicroPythonImage, imageIdentity } from "../support/images.ts";
import { bannerBytes, patched, withFreshTrailer } from "./image-edits.ts";

const ota = buildMicroPythonImage({ size: 0x30000, seed: 3, ota: true });
const normal = buildMicroPythonImage({ size: 0x30000, seed: 3, ota: false });

/** Moves every aligned word in [from, to) by `delta`: relinks the image's irom0 references. */
function relink(image: Uint8Array, from: number, to: number, delta: number): Uint8Array {
  const out = new Uint8Array(image);
  const view = new DataView(out.buffer);
  for (let i = 0; i + 4 <= out.length; i += 4) {
    const w = view.getUint32(i, true);
    if (w >= from && w < to) view.setUint32(i, w + delta, true);
  }
  return withFreshTrailer(out);
}

describe("MicroPython image: size word and MD5 trailer, as boot8266 checks them", () => {
  test("a good image: size word, trailer ok, identity = the 16 trailer bytes as hex", () => {
    assert.equal(isMicroPythonImage(ota), true);
    const t = checkMd5Trailer(ota);
    const total = new DataView(ota.buffer).getUint32(0x8ffc, true);
    assert.equal(t.status, "ok");
    assert.equal(t.totalSize, total);
    assert.equal(total + 16, ota.length);
    assert.equal(t.computed, createHash("md5").update(ota.subarray(4, total)).digest("hex"));
    const { micropython } = analyzeMicroPythonImage(ota);
    assert.equal(micropython.identity, imageIdentity(ota));
    assert.equal(micropython.identity?.length, 32);
    assert.equal(micropython.irom0Length, total - 0x9000);
    assert.equal(micropython.trailingBytes, 0);
  });

  test("the first 4 bytes are outside the MD5 (esptool may patch flash mode and size)", () => {
    const repatched = patched(ota, 2, new Uint8Array([3, 0x40]));
    assert.equal(checkMd5Trailer(repatched).status, "ok");
  });

  test("a changed byte anywhere in [4, total) makes the trailer mismatch", () => {
    for (const at of [4, 0x100, 0x8ffc, 0x9000, ota.length - 17]) {
      const bad = patched(ota, at, new Uint8Array([(ota[at] as number) ^ 1]));
      const t = checkMd5Trailer(bad);
      assert.equal(t.status, at === 0x8ffc ? t.status : "mismatch", `byte ${at}`);
      if (at !== 0x8ffc) {
        assert.match(
          t.message,
          /does not match the MD5 of bytes 0x4-0x2fff0 .*boot8266 would reject the app and start the OTA receiver/,
        );
        assert.notEqual(t.stored, t.computed);
      }
    }
  });

  test("a corrupt trailer: stored and computed MD5 both reported", () => {
    const bad = patched(ota, ota.length - 16, new Uint8Array(16));
    const t = checkMd5Trailer(bad);
    assert.equal(t.status, "mismatch");
    assert.equal(t.stored, "00".repeat(16));
    assert.equal(t.computed, imageIdentity(ota));
  });

  test("truncated file, oversized and undersized size words", () => {
    const cut = checkMd5Trailer(ota.subarray(0, ota.length - 10));
    assert.equal(cut.status, "truncated");
    assert.match(
      cut.message,
      /says the image is 196592 bytes plus a 16-byte MD5, but the file has only 196598 bytes/,
    );
    assert.equal(checkMd5Trailer(ota.subarray(0, 0x8000)).status, "truncated");
    const big = new Uint8Array(ota);
    new DataView(big.buffer).setUint32(0x8ffc, 800001, true);
    const tooLarge = checkMd5Trailer(big);
    assert.equal(tooLarge.status, "too-large");
    assert.match(tooLarge.message, /800001 bytes, more than the 800000 boot8266 accepts/);
    new DataView(big.buffer).setUint32(0x8ffc, 800000, true);
    assert.notEqual(checkMd5Trailer(big).status, "too-large");
    new DataView(big.buffer).setUint32(0x8ffc, 0x100, true);
    assert.equal(checkMd5Trailer(big).status, "invalid-size");
  });

  test("extra bytes after the trailer are counted", () => {
    const longer = new Uint8Array([...ota, 1, 2, 3]);
    const { micropython } = analyzeMicroPythonImage(longer);
    assert.equal(micropython.trailer.status, "ok");
    assert.equal(micropython.trailingBytes, 3);
  });

  test("an esptool image without a size word (0xFF at 0x8ffc) is not a MicroPython image", () => {
    const plain = patched(ota, 0x8ffc, new Uint8Array([0xff, 0xff, 0xff, 0xff]));
    assert.equal(isMicroPythonImage(plain), false);
    assert.equal(isMicroPythonImage(ota.subarray(0, 0x8fff)), false);
  });
});

describe("OTA build or normal build (irom0 link address heuristic)", () => {
  for (const size of [0x10000, 0x30000, 600 * 1024]) {
    test(`${size} bytes: the OTA build is recognised with high confidence, the normal build too`, () => {
      const o = analyzeMicroPythonImage(buildMicroPythonImage({ size, seed: 11, ota: true })).micropython
        .build;
      assert.equal(o.kind, "ota");
      assert.equal(o.confidence, "high");
      assert.equal(o.irom0LinkBase, 0x40245000);
      assert.equal(o.otherAppOffset, null);
      assert.match(o.explanation, /^OTA build: irom0 linked at 0x40245000 \(high confidence; /);
      const n = analyzeMicroPythonImage(buildMicroPythonImage({ size, seed: 11, ota: false })).micropython
        .build;
      assert.equal(n.kind, "normal");
      assert.equal(n.confidence, "high");
      assert.equal(n.irom0LinkBase, 0x40209000);
      assert.match(n.explanation, /^Normal \(non-OTA\) build: irom0 linked at 0x40209000/);
    });
  }

  test("an image with no irom0 references: unknown, low confidence, and it says it is a heuristic", () => {
    const scrubbed = relink(ota, 0x40209000, 0x40300000, -0x40000000);
    const b = analyzeMicroPythonImage(scrubbed).micropython.build;
    assert.equal(b.kind, "unknown");
    assert.equal(b.confidence, "low");
    assert.match(b.explanation, /Cannot tell an OTA build from a normal one: .* This check is a heuristic/);
  });

  test("only a few references: medium confidence", () => {
    // Keep 30 of the 80 references.
    const out = new Uint8Array(relink(ota, 0x40209000, 0x40300000, -0x40000000));
    const view = new DataView(out.buffer);
    for (let i = 0; i < 30; i++) view.setUint32(0x9000 + i * 64, 0x40245000 + i * 0x100, true);
    const b = analyzeMicroPythonImage(withFreshTrailer(out)).micropython.build;
    assert.deepEqual([b.kind, b.confidence], ["ota", "medium"]);
  });

  test("an OTA build linked for another MAIN_APP_OFFSET is told apart", () => {
    const moved = relink(ota, 0x40245000, 0x40300000 - 0x8000, 0x8000); // irom0 at 0x4024d000
    const b = classifyBuild(moved, { appOffset: 0x3c000, irom0Length: 0x27000 });
    assert.equal(b.kind, "ota");
    assert.equal(b.irom0LinkBase, 0x4024d000);
    assert.equal(b.otherAppOffset, 0x44000);
    // 80 references, all still inside where its code lies at 0x3c000: too little to say it is wrong.
    assert.equal(b.offsetEvidence, "weak");
    assert.match(
      b.explanation,
      /would mean MAIN_APP_OFFSET 0x44000 rather than 0x3c000, but the evidence is weak/,
    );
    const right = classifyBuild(moved, { appOffset: 0x44000, irom0Length: 0x27000 });
    assert.deepEqual(
      [right.kind, right.otherAppOffset, right.linkedAppOffset, right.expectedIrom0Base],
      ["ota", null, 0x44000, 0x4024d000],
    );
  });

  test("the counts: references from the link base on, none below it beyond chance", () => {
    const n = analyzeMicroPythonImage(normal).micropython.build;
    assert.deepEqual([n.irom0LinkBase, n.references.belowLinkBase, n.linkedAppOffset], [0x40209000, 0, null]);
    assert.ok(n.references.atLinkBase >= 80);
    const o = analyzeMicroPythonImage(ota).micropython.build;
    assert.deepEqual([o.irom0LinkBase, o.linkedAppOffset], [0x40245000, 0x3c000]);
    assert.ok(o.references.atLinkBase >= 80);
    assert.ok(o.references.belowLinkBase < 5 && o.expectedByChance.belowLinkBase < 3);
  });

  test("an OTA build for 0x3c000 judged against 0x44000 is still an OTA build, for the other offset", () => {
    const b = classifyBuild(ota, { appOffset: 0x44000, irom0Length: 0x27000 });
    assert.deepEqual([b.kind, b.linkedAppOffset, b.otherAppOffset], ["ota", 0x3c000, 0x3c000]);
  });
});

describe("MicroPython version string", () => {
  test("found with its build date and machine", () => {
    const image = withFreshTrailer(patched(ota, 0x9400, bannerBytes()));
    const v = analyzeMicroPythonImage(image).micropython.version;
    assert.deepEqual(v, {
      version: "v1.27.0",
      buildDate: "2025-12-10",
      banner: "MicroPython v1.27.0 on 2025-12-10",
      machine: "ESP module (1M) with ESP8266",
      offset: 0x9400,
    });
  });

  test("development builds and the bare os.uname() form are recognised", () => {
    const dev = findMicroPythonVersion(
      Buffer.from("\0\0v1.22.0-123-gabcdef0-dirty on 2024-03-01\0", "latin1"),
    );
    assert.equal(dev?.version, "v1.22.0-123-gabcdef0-dirty");
    assert.equal(dev?.machine, null);
    assert.equal(findMicroPythonVersion(Buffer.from("v1.9 on 2017-01-01", "latin1"))?.version, "v1.9");
  });

  test("null when the image holds none", () => {
    assert.equal(analyzeMicroPythonImage(ota).micropython.version, null);
  });
});
