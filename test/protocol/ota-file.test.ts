import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { withSeq } from "../../src/protocol/datagram.ts";
import { signImage } from "../../src/protocol/image-packets.ts";
import { decodeOtaFile, encodeOtaFile, OtaFileDecoder, OtaFileError } from "../../src/protocol/ota-file.ts";
import { parsePrivateKeyPem } from "../../src/protocol/rsa-key.ts";
import { readFixture, readFixtureText } from "../support/fixtures.ts";

const firmware = readFixture("reference/firmware.bin");
const reference = readFixture("reference/firmware.bin.ota");

function canned(keyFile: string, block = 256): Uint8Array {
  const key = parsePrivateKeyPem(readFixtureText(keyFile));
  return encodeOtaFile(signImage(firmware, key, block).map((p, i) => withSeq(i + 1, p)));
}

describe(".ota file", () => {
  test("is byte-identical to what the reference ota_client.py sign wrote (PKCS#8 and PKCS#1 key)", () => {
    assert.deepEqual(Buffer.from(canned("reference/priv-pkcs8.key")), Buffer.from(reference));
    assert.deepEqual(Buffer.from(canned("reference/priv-pkcs1.key")), Buffer.from(reference));
  });

  test("layout: magic, u16-prefixed datagrams with seq 1..N, end packets, u16 0, SHA1", () => {
    assert.equal(Buffer.from(reference.subarray(0, 10)).toString("latin1"), "yaota8266\x01");
    const { records, summary } = decodeOtaFile(reference);
    assert.deepEqual(
      records.map((r) => [r.seq, r.packet.offset, r.packet.length]),
      [
        [1, 0, 256],
        [2, 256, 256],
        [3, 512, 256],
        [4, 768, 232],
        [5, 0, 0],
        [6, 0, 0],
        [7, 0, 0],
      ],
    );
    assert.deepEqual(
      { ...summary, sha1: undefined },
      {
        dataPackets: 4,
        endPackets: 3,
        imageSize: 1000,
        blockSize: 256,
        signatureLength: 64,
        sha1: undefined,
      },
    );
    assert.deepEqual(
      Buffer.from(reference.subarray(reference.length - 22, reference.length - 20)),
      Buffer.from([0, 0]),
    );
  });

  test("decodes the same when fed one byte at a time", () => {
    const dec = new OtaFileDecoder();
    let count = 0;
    for (let i = 0; i < reference.length; i++) count += dec.push(reference.subarray(i, i + 1)).length;
    assert.equal(count, 7);
    assert.equal(dec.end().imageSize, 1000);
  });

  const damaged: Array<[string, (b: Uint8Array) => Uint8Array, RegExp]> = [
    ["bad magic", (b) => Object.assign(new Uint8Array(b), { 0: 0x58 }), /does not start with "yaota8266/],
    [
      "a bad record length",
      (b) => Object.assign(new Uint8Array(b), { 10: 0x30 }),
      /damaged at record 1 .*length/,
    ],
    [
      "a flipped data byte",
      (b) => Object.assign(new Uint8Array(b), { 100: (b[100] as number) ^ 1 }),
      /fails its SHA1/,
    ],
    [
      "a flipped checksum byte",
      (b) => Object.assign(new Uint8Array(b), { [b.length - 1]: (b.at(-1) as number) ^ 1 }),
      /fails its SHA1/,
    ],
    ["truncation inside the packets", (b) => b.subarray(0, 500), /truncated .* in the middle of the packets/],
    ["truncation in the checksum", (b) => b.subarray(0, b.length - 5), /truncated .* before its checksum/],
    [
      "trailing bytes",
      (b) => new Uint8Array(Buffer.concat([b, Buffer.from([1])])),
      /unexpected bytes after its checksum/,
    ],
    ["an empty file", () => new Uint8Array(0), /truncated/],
  ];
  for (const [what, mutate, message] of damaged) {
    test(`rejects ${what} with a clear OtaFileError`, () => {
      assert.throws(
        () => decodeOtaFile(mutate(reference), "update.ota"),
        (e: unknown) => e instanceof OtaFileError && message.test(e.message) && /update\.ota/.test(e.message),
      );
    });
  }

  test("rejects records whose offsets do not follow each other", () => {
    const key = parsePrivateKeyPem(readFixtureText("reference/priv-pkcs1.key"));
    const packets = signImage(firmware, key, 256);
    const swapped = [packets[1], packets[0], ...packets.slice(2)].map((p, i) => withSeq(i + 1, p as never));
    assert.throws(() => decodeOtaFile(encodeOtaFile(swapped)), /carries offset 256 where 0 was expected/);
  });
});
