import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { analyzeOtaFile } from "../../src/firmware/ota-file-analysis.ts";
import { withSeq } from "../../src/protocol/datagram.ts";
import { signImage } from "../../src/protocol/image-packets.ts";
import {
  decodeOtaFile,
  encodeOtaFile,
  OTA_MAGIC,
  OtaFileDecoder,
  OtaFileError,
} from "../../src/protocol/ota-file.ts";
import { parsePrivateKeyPem } from "../../src/protocol/rsa-key.ts";
import { readFixture, readFixtureText } from "../support/fixtures.ts";
import { buildMicroPythonImage } from "../support/images.ts";
import {
  assertClearError,
  assertClearMessage,
  concat,
  fuzz,
  fuzzRuns,
  fuzzSeed,
  mutate,
  Rng,
} from "./fuzz.ts";

const key = parsePrivateKeyPem(readFixtureText("reference/priv-pkcs1.key"), "priv-pkcs1.key");

/** The datagrams of a signed image (what `mpota sign` writes), with sequence numbers. */
function datagramsOf(image: Uint8Array, block: number): Uint8Array[] {
  return signImage(image, key, block).map((p, i) => withSeq(i + 1, p));
}

/** Valid .ota files: upstream's reference file, and mpota's of a MicroPython image (1024-byte blocks). */
const reference = readFixture("reference/firmware.bin.ota");
const mpDatagrams = datagramsOf(buildMicroPythonImage({ size: 40000, seed: 5 }), 1024);
const smallDatagrams = datagramsOf(new Rng(7).bytes(3000), 256);
const VALID = [reference, encodeOtaFile(mpDatagrams), encodeOtaFile(smallDatagrams)];

/**
 * A file whose records are damaged but whose checksum is right: records
 * mutated, dropped, repeated, swapped or foreign (random bytes), then
 * written with a correct SHA1, so the decoder's record checks are reached.
 */
function rechecksummed(rng: Rng): Uint8Array {
  const records = [...rng.pick([mpDatagrams, smallDatagrams])];
  const rounds = 1 + rng.int(3);
  for (let i = 0; i < rounds; i++) {
    const at = rng.int(records.length);
    const r = rng.int(5);
    if (r === 0) records.splice(at, 1);
    else if (r === 1) records.splice(at, 0, records[at] as Uint8Array);
    else if (r === 2) records.splice(at, 0, rng.bytes(1 + rng.length(700)));
    else if (r === 3) [records[at], records[0]] = [records[0] as Uint8Array, records[at] as Uint8Array];
    else records[at] = mutate(rng, records[at] as Uint8Array);
  }
  return encodeOtaFile(records.filter((d) => d.length > 0 && d.length <= 0xffff));
}

function otaInput(rng: Rng): Uint8Array {
  const r = rng.int(10);
  if (r === 0) return rng.bytes(rng.length(2000));
  if (r === 1) return concat(OTA_MAGIC, rng.bytes(rng.length(2000)));
  if (r <= 4) return rechecksummed(rng);
  return mutate(rng, rng.pick(VALID));
}

type Outcome = { ok: true; records: number; imageSize: number } | { ok: false; message: string };

function decodeWhole(bytes: Uint8Array): Outcome {
  try {
    const { records, summary } = decodeOtaFile(bytes, "fuzz.ota");
    return { ok: true, records: records.length, imageSize: summary.imageSize };
  } catch (error) {
    assertClearError(error, OtaFileError);
    return { ok: false, message: (error as Error).message };
  }
}

/** The same bytes fed in random chunks, as `mpota push` streams a file. */
function decodeChunked(bytes: Uint8Array, rng: Rng): Outcome {
  const decoder = new OtaFileDecoder("fuzz.ota");
  let records = 0;
  try {
    for (let at = 0; at < bytes.length; ) {
      const n = 1 + rng.int(rng.pick([64, 700, 4000]));
      records += decoder.push(bytes.subarray(at, at + n)).length;
      at += n;
    }
    return { ok: true, records, imageSize: decoder.end().imageSize };
  } catch (error) {
    assertClearError(error, OtaFileError);
    return { ok: false, message: (error as Error).message };
  }
}

describe("fuzz: canned .ota files", () => {
  it("the valid inputs decode (the mutations start from real files)", () => {
    for (const file of VALID) assert.ok(decodeWhole(file).ok);
  });

  it("decoding any bytes gives the records or a clear OtaFileError, whole or in chunks alike", async () => {
    const chunking = new Rng(fuzzSeed(0xc4c));
    await fuzz({
      name: "decodeOtaFile",
      seed: fuzzSeed(0x07a),
      runs: fuzzRuns(2500),
      generate: otaInput,
      check: (bytes) => {
        const whole = decodeWhole(bytes);
        const chunked = decodeChunked(bytes, chunking);
        // A streamed file may fail at an earlier check (a later record is not read yet) but never succeed differently.
        if (whole.ok) assert.deepEqual(chunked, whole);
        else assert.equal(chunked.ok, false);
      },
    });
  });

  it("analyzeOtaFile reports any bytes as intact or damaged (with the reason), never throws", async () => {
    await fuzz({
      name: "analyzeOtaFile",
      seed: fuzzSeed(0xa7a),
      runs: fuzzRuns(1500),
      generate: otaInput,
      check: (bytes) => {
        const analysis = analyzeOtaFile(bytes, { key, source: "fuzz.ota" });
        if (analysis.integrity === "damaged") assertClearMessage(analysis.damage, "damage");
        else {
          assert.equal(analysis.damage, null);
          assert.ok(analysis.signatures && analysis.signatures.valid <= analysis.signatures.checked);
          assert.ok(analysis.imageSize >= 0 && analysis.blockSize <= 0xffff);
        }
      },
    });
  });
});
