import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { describe, test } from "node:test";
import { encodeBody } from "../../src/protocol/datagram.ts";
import { generateKeyPair, parsePrivateKeyPem, parsePublicKeyPem } from "../../src/protocol/rsa-key.ts";
import { rsaPublic, signBody, unpadLikeReceiver, verifyBody } from "../../src/protocol/signature.ts";
import { readFixtureText } from "../support/fixtures.ts";

const key = parsePrivateKeyPem(readFixtureText("reference/priv-pkcs1.key"));
const other = parsePrivateKeyPem(readFixtureText("reference/priv-pkcs8.key"));

function bigOf(bytes: Uint8Array): bigint {
  return BigInt(`0x${Buffer.from(bytes).toString("hex")}`);
}

function rawPrivate(block: Uint8Array): Uint8Array {
  const jwk = key.privateKey.export({ format: "jwk" });
  const d = bigOf(Buffer.from(jwk.d as string, "base64url"));
  const n = bigOf(key.modulus);
  let result = 1n;
  let b = bigOf(block) % n;
  let e = d;
  while (e > 0n) {
    if (e & 1n) result = (result * b) % n;
    b = (b * b) % n;
    e >>= 1n;
  }
  return Buffer.from(result.toString(16).padStart(128, "0"), "hex");
}

describe("signature", () => {
  const body = encodeBody(0x1000, new Uint8Array([1, 2, 3, 4, 5]));

  test("equals the raw RSA private operation over the type-1 block 00 01 FF.. 00 || 16x01 || SHA1(body)", () => {
    const block = Buffer.concat([
      Buffer.from([0x00, 0x01]),
      Buffer.alloc(64 - 3 - 36, 0xff),
      Buffer.from([0x00]),
      Buffer.alloc(16, 0x01),
      createHash("sha1").update(body).digest(),
    ]);
    assert.equal(block.length, 64);
    assert.deepEqual(Buffer.from(signBody(key, body)), Buffer.from(rawPrivate(block)));
  });

  test("is deterministic", () => {
    assert.deepEqual(signBody(key, body), signBody(key, body));
  });

  test("verifies with the public key only, and fails with another key or another body", () => {
    const pub = parsePublicKeyPem(readFixtureText("reference/pub.key"));
    const sig = signBody(key, body);
    assert.equal(verifyBody(pub, body, sig), true);
    const tampered = new Uint8Array(body);
    tampered[9] = (tampered[9] as number) ^ 1;
    assert.equal(verifyBody(pub, tampered, sig), false);
    const stranger = generateKeyPair(512).key;
    assert.equal(verifyBody(stranger, body, sig), false);
  });

  test("the PKCS#1 and PKCS#8 forms of the same key give the same signature", () => {
    assert.deepEqual(signBody(other, body), signBody(key, body));
  });

  test("unpads like axTLS: separator byte unchecked, at least 8 FF bytes, 00 01 prefix", () => {
    const payload = Buffer.alloc(36, 7);
    const make = (ffs: number, sep: number, prefix = [0, 1]) =>
      new Uint8Array(
        Buffer.concat([Buffer.from(prefix), Buffer.alloc(ffs, 0xff), Buffer.from([sep]), payload]),
      );
    assert.deepEqual(Buffer.from(unpadLikeReceiver(make(25, 0)) as Uint8Array), payload);
    assert.deepEqual(Buffer.from(unpadLikeReceiver(make(25, 0x42)) as Uint8Array), payload);
    assert.equal(unpadLikeReceiver(make(7, 0)), undefined);
    assert.equal(unpadLikeReceiver(make(25, 0, [0, 2])), undefined);
    assert.equal(unpadLikeReceiver(make(25, 0, [1, 1])), undefined);
  });

  test("rsaPublic undoes the private operation", () => {
    const sig = signBody(key, body);
    const block = rsaPublic(key, sig);
    assert.equal(block[0], 0);
    assert.equal(block[1], 1);
    assert.equal(block[2 + 25], 0);
  });
});
