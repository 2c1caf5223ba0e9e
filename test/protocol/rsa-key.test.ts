import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  generateKeyPair,
  KeyError,
  parseModulusHex,
  parsePrivateKeyPem,
  parsePublicKeyPem,
} from "../../src/protocol/rsa-key.ts";
import { readFixtureText } from "../support/fixtures.ts";

const isKeyError = (re: RegExp) => (e: unknown) => e instanceof KeyError && re.test(e.message);

describe("keys", () => {
  test("reads PKCS#1 and PKCS#8 private keys made by openssl genrsa -3", () => {
    const a = parsePrivateKeyPem(readFixtureText("reference/priv-pkcs1.key"));
    const b = parsePrivateKeyPem(readFixtureText("reference/priv-pkcs8.key"));
    assert.equal(a.bits, 512);
    assert.deepEqual(a.modulus, b.modulus);
    assert.deepEqual(parsePublicKeyPem(readFixtureText("reference/pub.key")).modulus, a.modulus);
  });

  test("refuses exponent 65537, saying the receiver only verifies exponent 3", () => {
    assert.throws(
      () => parsePrivateKeyPem(readFixtureText("reference/exp65537.key"), "priv.key"),
      isKeyError(/priv\.key has public exponent 65537.*only verifies exponent 3/),
    );
  });

  test("explains garbage, truncated, public-only and encrypted files", () => {
    assert.throws(() => parsePrivateKeyPem("hello", "k"), isKeyError(/k is not a PEM key file/));
    const truncated = readFixtureText("reference/priv-pkcs1.key").slice(0, 200);
    assert.throws(() => parsePrivateKeyPem(truncated, "k"), isKeyError(/could not be read as an RSA key/));
    assert.throws(
      () => parsePrivateKeyPem(readFixtureText("reference/pub.key"), "pub.key"),
      isKeyError(/holds only a public key/),
    );
    assert.throws(
      () =>
        parsePrivateKeyPem(
          "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
          "k",
        ),
      isKeyError(/protected by a passphrase/),
    );
  });

  for (const bits of [512, 1024] as const) {
    test(`generates ${bits}-bit keys with exponent 3`, () => {
      const pair = generateKeyPair(bits);
      assert.equal(pair.key.bits, bits);
      assert.match(pair.privatePem, /BEGIN RSA PRIVATE KEY/);
      assert.deepEqual(parsePublicKeyPem(pair.publicPem).modulus, pair.key.modulus);
    });
  }

  test("parses a modulus in hex", () => {
    const key = parsePrivateKeyPem(readFixtureText("reference/priv-pkcs1.key"));
    const hex = Buffer.from(key.modulus).toString("hex");
    assert.deepEqual(parseModulusHex(`00${hex}`).modulus, key.modulus);
    assert.deepEqual(parseModulusHex(hex.replace(/(..)/g, "$1:").slice(0, -1)).modulus, key.modulus);
    assert.throws(() => parseModulusHex("xyz"), isKeyError(/even number of hex digits/));
    assert.throws(() => parseModulusHex("abcd"), isKeyError(/16 bits/));
  });
});
