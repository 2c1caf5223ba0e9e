import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createPrivateKey, createPublicKey } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import {
  CommandFieldError,
  CommandSignatureError,
  encodeCommand,
  type PullCommandFields,
  signCommand,
  signedBytes,
  verifyCommand,
} from "../../src/protocol/command-signature.ts";
import { readFixtureText } from "../support/fixtures.ts";

const privateKey = createPrivateKey(readFixtureText("command/command-key.pem"));
const publicKey = createPublicKey(readFixtureText("command/command-pub.pem"));

// sha256sum of the 5 bytes "image"
const SHA = "6105d6cc76af400325e94d588ce511be5bfdbb73b437dc51eca43917d7a43e3d";
const pull: PullCommandFields = {
  op: "pull",
  dev: "esp-1",
  seq: 14,
  job: "j-7f3a",
  fw: "0123456789abcdef0123456789abcdef",
  size: 1466432,
  ver: "1.27.0",
  down: 0,
  sha: SHA,
  url: "http://192.168.1.10:8080/device/firmware/0123456789abcdef0123456789abcdef",
};
const PULL_MESSAGE = `mpota-cmd/3\nesp-1\n14\npull\nj-7f3a\n0123456789abcdef0123456789abcdef\n1466432\n1.27.0\n0\n${SHA}\nhttp://192.168.1.10:8080/device/firmware/0123456789abcdef0123456789abcdef`;
// printf '<PULL_MESSAGE>' > m.txt; openssl dgst -sha256 -sign command-key.pem m.txt | base64 -w0
const PULL_SIG =
  "uf3uTUlnmxJpMqOvdZGrJeTOjzGFw0lze7N3FZKIBM6ZopuP269DUfh/dkNzY2FJRnYKtk0c87OBR0FHLLsenkEuFBMS+TdYhhGO4oR9xUb7XGUdUj/P3uL7mROdMrbaT1AC1DPIh80YnWsk/ZBaf3I0dsYkhLoVM6jXl4SnPtiCVLSto8kLySLt1f7UZM8H5LMDA8zzEIZRlrOveSd3YCxWTlDIPjVqGCSoiA2jRHRoCM/rhlNTiZk68IZsusAjVlqpCmGivE6LikUMyQKC4/K6qT1yVYJjHJmc+KAQSkI27BFCDsYcRdpZL4nl/kteSeRut8Xs+TS3cRw7W71YyA==";
const KID = "816091f2";

const dir = mkdtempSync(join(tmpdir(), "mpota-pullcmd-"));
after(() => rmSync(dir, { recursive: true, force: true }));

const fieldError = (re: RegExp) => (e: unknown) => e instanceof CommandFieldError && re.test(e.message);

describe("the signed pull command (contract v3)", () => {
  test("its signed bytes: header mpota-cmd/3, the ota fields, then sha and url", () => {
    assert.equal(signedBytes(pull).toString("utf8"), PULL_MESSAGE);
  });

  test("signs as openssl does, and publishes v 3 with the fields in the contract's order", () => {
    const cmd = signCommand(pull, privateKey);
    assert.equal(cmd.sig, PULL_SIG);
    assert.equal(
      encodeCommand(cmd),
      `{"v":3,"op":"pull","dev":"esp-1","seq":14,"job":"j-7f3a","fw":"0123456789abcdef0123456789abcdef","size":1466432,"ver":"1.27.0","down":0,"sha":"${SHA}","url":"${pull.url}","kid":"${KID}","sig":"${PULL_SIG}"}`,
    );
    assert.deepEqual(verifyCommand(encodeCommand(cmd), publicKey), { ...pull, kid: KID });
  });

  test("openssl verifies the pull command's bytes, and no other url or sha", () => {
    const cmd = signCommand(pull, privateKey);
    const pub = join(dir, "pub.pem");
    const sig = join(dir, "sig.bin");
    writeFileSync(pub, publicKey.export({ type: "spki", format: "pem" }));
    writeFileSync(sig, Buffer.from(cmd.sig, "base64"));
    const check = (bytes: Buffer) => {
      writeFileSync(join(dir, "m.txt"), bytes);
      return spawnSync(
        "openssl",
        ["dgst", "-sha256", "-verify", pub, "-signature", sig, join(dir, "m.txt")],
        {
          encoding: "utf8",
        },
      ).stdout.trim();
    };
    assert.equal(check(signedBytes(pull)), "Verified OK");
    assert.equal(
      check(signedBytes({ ...pull, url: "http://10.0.0.66/device/firmware/x" })),
      "Verification failure",
    );
    assert.equal(check(signedBytes({ ...pull, sha: "0".repeat(64) })), "Verification failure");
  });

  test("a pull whose v is 2, or an ota whose v is 3, does not verify", () => {
    const cmd = signCommand(pull, privateKey);
    assert.throws(
      () => verifyCommand({ ...cmd, v: 2 }, publicKey),
      (e: unknown) => e instanceof CommandSignatureError && /The command's v is 2, not 3\./.test(e.message),
    );
    const { sha: _s, url: _u, ...otaFields } = pull;
    const ota = signCommand({ ...otaFields, op: "ota" }, privateKey);
    assert.equal(ota.v, 2);
    assert.throws(() => verifyCommand({ ...ota, v: 3 }, publicKey), /not 2/);
    // The same fields signed as ota and as pull never share a signature (different headers and lines).
    assert.notEqual(ota.sig, cmd.sig);
  });

  test("every field rule of pull: sha 64 lowercase hex, url http(s) without spaces or commas, at most 240", () => {
    const bad: Array<[Partial<PullCommandFields> & Record<string, unknown>, RegExp]> = [
      [{ sha: SHA.toUpperCase() }, /field sha is "6105D6.*64 lowercase hex digits/],
      [{ sha: SHA.slice(1) }, /field sha/],
      [{ sha: undefined }, /field sha is missing/],
      [{ url: "ftp://host/x" }, /field url is "ftp:\/\/host\/x"; it must be an http:\/\/ or https:\/\//],
      [{ url: "http://host/a b" }, /field url/],
      [{ url: "http://host/a,b" }, /field url/],
      [{ url: "http://host/a\nb" }, /field url/],
      [{ url: `http://${"a".repeat(241)}` }, /field url/],
      [{ fw: "0123456789ABCDEF0123456789abcdef" }, /field fw/],
    ];
    for (const [change, re] of bad) {
      assert.throws(() => signedBytes({ ...pull, ...change } as PullCommandFields), fieldError(re));
    }
    assert.equal(
      signedBytes({ ...pull, url: `https://${"a".repeat(240)}` })
        .toString()
        .split("\n")[10],
      `https://${"a".repeat(240)}`,
    );
  });
});
