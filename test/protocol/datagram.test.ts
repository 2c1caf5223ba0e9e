import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  checkBlockSize,
  decodeAck,
  decodeDatagram,
  encodeAck,
  encodeBody,
  signPacket,
  verifyDatagram,
  withSeq,
} from "../../src/protocol/datagram.ts";
import { parsePrivateKeyPem } from "../../src/protocol/rsa-key.ts";
import { readFixtureText } from "../support/fixtures.ts";

const key = parsePrivateKeyPem(readFixtureText("reference/priv-pkcs1.key"));
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

describe("datagram layout", () => {
  test("body: u16 op, u16 len, u32 offset (LE), data, zero padding to 16", () => {
    assert.equal(
      hex(encodeBody(0x12345678, new Uint8Array([0xaa, 0xbb, 0xcc]))),
      "0000" + "0300" + "78563412" + "aabbcc" + "0000000000",
    );
    assert.equal(encodeBody(0, new Uint8Array(8)).length, 16);
    assert.equal(encodeBody(0, new Uint8Array(9)).length, 32);
    assert.equal(hex(encodeBody(0, new Uint8Array(0))), "0000000000000000" + "0000000000000000");
  });

  test("a 256-byte block with a 512-bit key is the 340-byte datagram of the reference client", () => {
    const data = new Uint8Array(256).map((_, i) => i);
    const wire = withSeq(7, signPacket(key, 0x1100, data));
    assert.equal(wire.length, 340);
    assert.equal(hex(wire.subarray(0, 12)), "07000000" + "0000" + "0001" + "00110000");
    assert.deepEqual(wire.subarray(12, 268), data);
    const decoded = decodeDatagram(wire, 64);
    assert.ok(decoded);
    assert.equal(decoded.seq, 7);
    assert.equal(decoded.offset, 0x1100);
    assert.equal(decoded.length, 256);
    assert.equal(decoded.body.length, 272); // 8 + 256, padded to 16
    assert.equal(verifyDatagram(key, decoded), true);
  });

  test("the sequence number is not signed: the same packet verifies under any seq", () => {
    const packet = signPacket(key, 0, new Uint8Array(256));
    for (const seq of [1, 2, 0xffffffff]) {
      const decoded = decodeDatagram(withSeq(seq, packet), 64);
      assert.ok(decoded && verifyDatagram(key, decoded));
    }
  });

  test("too-short datagrams do not decode", () => {
    assert.equal(decodeDatagram(new Uint8Array(75), 64), undefined);
  });

  test("ack: 20 bytes, seq echoed then the 8-byte header", () => {
    const ack = encodeAck({ seq: 0x01020304, op: 0, length: 256, offset: 0x2000 });
    assert.equal(ack.length, 20);
    assert.equal(hex(ack.subarray(0, 12)), "04030201" + "0000" + "0001" + "00200000");
    assert.deepEqual(decodeAck(ack), { seq: 0x01020304, op: 0, length: 256, offset: 0x2000 });
    assert.equal(decodeAck(new Uint8Array(11)), undefined);
  });

  test("block sizes must tile 4096", () => {
    for (const ok of [256, 512, 1024, 2048, 4096, 128]) assert.equal(checkBlockSize(ok), ok);
    for (const bad of [0, 300, 1000, 8192, 1.5]) {
      assert.throws(() => checkBlockSize(bad), /does not tile the receiver's 4096-byte sector/);
    }
  });
});
