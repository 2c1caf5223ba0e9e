import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { analyzeOtaFile, imageFromOtaFile, isOtaFile } from "../../src/firmware/ota-file-analysis.ts";
import { withSeq } from "../../src/protocol/datagram.ts";
import { signImage } from "../../src/protocol/image-packets.ts";
import { encodeOtaFile } from "../../src/protocol/ota-file.ts";
import { generateKeyPair, parsePrivateKeyPem, parsePublicKeyPem } from "../../src/protocol/rsa-key.ts";
import { readFixture, readFixtureText } from "../support/fixtures.ts";
import { buildMicroPythonImage, imageIdentity } from "../support/images.ts";

const key = parsePrivateKeyPem(readFixtureText("reference/priv-pkcs8.key"));
const publicKey = parsePublicKeyPem(readFixtureText("reference/pub.key"));
const otherKey = generateKeyPair(512).key;
const reference = readFixture("reference/firmware.bin.ota");
const firmware = readFixture("reference/firmware.bin");

function canned(image: Uint8Array, block = 256, tamper?: (datagrams: Uint8Array[]) => void): Uint8Array {
  const datagrams = signImage(image, key, block).map((p, i) => withSeq(i + 1, p));
  tamper?.(datagrams);
  return encodeOtaFile(datagrams);
}

describe(".ota file analysis", () => {
  test("the reference file: counts, block size, image size, checksum", () => {
    assert.equal(isOtaFile(reference), true);
    const a = analyzeOtaFile(reference);
    assert.equal(a.integrity, "ok");
    assert.deepEqual(
      [a.datagrams, a.dataPackets, a.endPackets, a.blockSize, a.imageSize, a.signatureLength],
      [7, 4, 3, 256, 1000, 64],
    );
    assert.equal(a.sha1, Buffer.from(reference.subarray(reference.length - 20)).toString("hex"));
    assert.equal(a.signatures, null);
    assert.deepEqual(Buffer.from(imageFromOtaFile(reference)), Buffer.from(firmware));
    // 1000 random bytes are no MicroPython image.
    assert.equal(a.image?.micropython, null);
  });

  test("with the right key (public or private PEM) every datagram verifies", () => {
    for (const k of [key, publicKey]) {
      const a = analyzeOtaFile(reference, { key: k });
      assert.deepEqual(a.signatures, { keyBits: 512, checked: 7, valid: 7, firstInvalid: null });
    }
  });

  test("with someone else's key none verifies, and the first failure is named", () => {
    const a = analyzeOtaFile(reference, { key: otherKey });
    assert.deepEqual(a.signatures, {
      keyBits: 512,
      checked: 7,
      valid: 0,
      firstInvalid: { record: 1, seq: 1, offset: 0 },
    });
  });

  test("one datagram whose data was changed after signing (checksum rewritten) fails alone", () => {
    const file = canned(firmware, 256, (datagrams) => {
      const d = datagrams[2] as Uint8Array;
      d[4 + 8 + 10] = (d[4 + 8 + 10] as number) ^ 0xff;
    });
    const a = analyzeOtaFile(file, { key });
    assert.equal(a.integrity, "ok");
    assert.deepEqual(a.signatures, {
      keyBits: 512,
      checked: 7,
      valid: 6,
      firstInvalid: { record: 3, seq: 3, offset: 512 },
    });
  });

  test("a damaged file: integrity says why", () => {
    const damaged = new Uint8Array(reference);
    damaged[200] = (damaged[200] as number) ^ 1;
    const a = analyzeOtaFile(damaged, { key, source: "update.ota" });
    assert.equal(a.integrity, "damaged");
    assert.match(a.damage as string, /update\.ota fails its SHA1 checksum/);
    assert.equal(a.signatures, null);
    const cut = analyzeOtaFile(reference.subarray(0, 500), { source: "update.ota" });
    assert.match(cut.damage as string, /update\.ota is truncated/);
  });

  test("a signed MicroPython image: the firmware inside is analysed like the file itself", () => {
    const image = buildMicroPythonImage({ size: 0x12000, seed: 9 });
    const a = analyzeOtaFile(canned(image, 512), { key });
    assert.equal(a.blockSize, 512);
    assert.equal(a.imageSize, image.length);
    assert.equal(a.dataPackets, Math.ceil(image.length / 512));
    assert.equal(a.signatures?.valid, a.datagrams);
    assert.equal(a.image?.micropython?.identity, imageIdentity(image));
    assert.equal(a.image?.micropython?.build.kind, "ota");
    assert.equal(a.image?.espImage?.segmentCount, 2);
  });
});
