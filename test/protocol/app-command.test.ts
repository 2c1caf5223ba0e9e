import assert from "node:assert/strict";
import { createPrivateKey, createPublicKey } from "node:crypto";
import { describe, test } from "node:test";
import {
  type AppCommandFields,
  CommandFieldError,
  CommandSignatureError,
  encodeCommand,
  signCommand,
  signedBytes,
  verifyCommand,
} from "../../src/protocol/command-signature.ts";
import { readFixtureText } from "../support/fixtures.ts";

const privateKey = createPrivateKey(readFixtureText("command/command-key.pem"));
const publicKey = createPublicKey(readFixtureText("command/command-pub.pem"));

// sha256sum of the 8 bytes "manifest"
const SHA = "05b3abf2579a5eb66403cd78be557fd860633a1fe2103c7642030defe32c657f";
const app: AppCommandFields = {
  op: "app",
  dev: "esp-1",
  seq: 15,
  job: "j-8a1b",
  name: "thermostat",
  ver: "1.4.0",
  down: 0,
  sha: SHA,
  size: 2431,
  url: `http://192.168.1.10:8080/device/app/${SHA}`,
};
const APP_MESSAGE = `mpota-cmd/3\nesp-1\n15\napp\nj-8a1b\nthermostat\n1.4.0\n0\n${SHA}\n2431\nhttp://192.168.1.10:8080/device/app/${SHA}`;
// printf '<APP_MESSAGE>' > m.txt; openssl dgst -sha256 -sign command-key.pem m.txt | base64 -w0
const APP_SIG =
  "i6AZkUrpkb0eZQgE86qMpxVfvdF5gZ5r2LQSc6lkk/7keqB76in3SLBwQAHvRI9aozXUyOGfzY2nauobmyOODoRTX3TRW1Z1PawDiKjfigRc5dHCqvEkTzQuNcECOkTYXZ0xvB1l5cbyVCVcObFUaMuJF5JZyAOfxvHlq32qyatSjnv+gTFHkaQGsMFIS+yeypLm2bnBqY59G/J9ZX8TFkqee8NAcBB/msbuBghgmanfZb+xxOHTnh7qdwN2UhIzlz/M33Fa8WzzA5ZWEm7BihmAuxkPYdQXoyGVFPaRyiqkhX8A22w78k6mQeiJeIj6jdoOhzOJ+xmwo1x3u3C+dg==";
const KID = "816091f2";

const fieldError = (re: RegExp) => (e: unknown) => e instanceof CommandFieldError && re.test(e.message);

describe("the signed app command (contract v3)", () => {
  test("its signed bytes: header mpota-cmd/3, dev, seq, app, job, name, ver, down, sha, size, url", () => {
    assert.equal(signedBytes(app).toString("utf8"), APP_MESSAGE);
  });

  test("signs as openssl does, publishes v 3 with the fields in the contract's order, and verifies", () => {
    const cmd = signCommand(app, privateKey);
    assert.equal(cmd.sig, APP_SIG);
    assert.equal(
      encodeCommand(cmd),
      `{"v":3,"op":"app","dev":"esp-1","seq":15,"job":"j-8a1b","name":"thermostat","ver":"1.4.0","down":0,"sha":"${SHA}","size":2431,"url":"${app.url}","kid":"${KID}","sig":"${APP_SIG}"}`,
    );
    assert.deepEqual(verifyCommand(encodeCommand(cmd), publicKey), { ...app, kid: KID });
  });

  test("a changed field, v 2, or the signature of a pull does not verify as an app", () => {
    const cmd = signCommand(app, privateKey);
    assert.throws(
      () => verifyCommand({ ...cmd, ver: "1.4.1" }, publicKey),
      (e) =>
        e instanceof CommandSignatureError &&
        e.message === `The command's signature does not verify with key ${KID}.`,
    );
    assert.throws(() => verifyCommand({ ...cmd, v: 2 }, publicKey), {
      message: "The command's v is 2, not 3.",
    });
    assert.throws(() => verifyCommand({ ...cmd, size: 2432 }, publicKey), /does not verify/);
  });

  test("refuses fields the board would ignore", () => {
    assert.throws(
      () => signedBytes({ ...app, name: "Thermostat" }),
      fieldError(/^Command field name is "Thermostat"; it must be an app name/),
    );
    assert.throws(
      () => signedBytes({ ...app, ver: "1.4.0-rc1" }),
      fieldError(/^Command field ver is "1.4.0-rc1"; it must be an app version/),
    );
    assert.throws(
      () => signedBytes({ ...app, sha: SHA.slice(1) }),
      fieldError(/^Command field sha .* 64 lowercase hex digits \(the manifest's SHA-256\)/),
    );
    assert.throws(
      () => signedBytes({ ...app, size: 0 }),
      fieldError(/^Command field size is 0; it must be an integer from 1 to 66256/),
    );
    assert.throws(() => signedBytes({ ...app, size: 66257 }), fieldError(/size is 66257/));
    assert.throws(
      () => signedBytes({ ...app, url: "ftp://x/y" }),
      fieldError(/^Command field url is "ftp:\/\/x\/y"/),
    );
    assert.throws(() => signedBytes({ ...app, url: `http://a/${"b".repeat(240)}` }), fieldError(/url/));
    assert.throws(() => signedBytes({ ...app, down: 2 as 0 }), fieldError(/down is 2; it must be 0 or 1/));
    assert.throws(
      () => signedBytes({ ...app, op: "apps" as "app" }),
      fieldError(/op is "apps"; it must be "ota", "keys", "pull" or "app"/),
    );
  });
});
