import assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
import { createHash, generateKeyPairSync } from "node:crypto";
import {
  chmodSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { promisify } from "node:util";
import { CommandKeyError } from "../../src/protocol/command-key-facts.ts";
import { signCommand, signedBytes } from "../../src/protocol/command-signature.ts";
import { COMMAND_KEY_FILE, loadCommandKey } from "../../src/server/trust/command-key.ts";
import { readFixtureText } from "../support/fixtures.ts";

const root = mkdtempSync(join(tmpdir(), "mpota-cmdkey-"));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const freshDir = () => join(root, `data-${++n}`);

/** A data dir whose command-key.pem holds `text`. */
function withKeyFile(text: string): string {
  const dir = freshDir();
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, COMMAND_KEY_FILE), text, { mode: 0o600 });
  return dir;
}

const keyError = (re: RegExp) => (e: unknown) => e instanceof CommandKeyError && re.test(e.message);

describe("the command key", () => {
  test("is created on first use: RSA 2048, e=65537, PKCS#8 PEM, mode 0600, no temporary file left", () => {
    const dir = join(freshDir(), "nested");
    const key = loadCommandKey(dir);
    const path = join(dir, COMMAND_KEY_FILE);
    assert.equal(key.path, path);
    assert.equal(key.created, true);
    assert.equal(key.warning, undefined);
    assert.equal(statSync(path).mode & 0o777, 0o600);
    assert.deepEqual(readdirSync(dir), [COMMAND_KEY_FILE]);
    const pem = readFileSync(path, "utf8");
    assert.match(pem, /^-----BEGIN PRIVATE KEY-----\n/);
    const text = execFileSync("openssl", ["pkey", "-in", path, "-text", "-noout"]).toString();
    assert.match(text, /Private-Key: \(2048 bit, 2 primes\)/);
    assert.match(text, /publicExponent: 65537 \(0x10001\)/);
    const modulus = execFileSync("openssl", ["rsa", "-in", path, "-modulus", "-noout"]).toString().trim();
    assert.equal(key.modulusHex, modulus.replace(/^Modulus=/, "").toLowerCase());
    assert.equal(
      key.kid,
      createHash("sha256").update(Buffer.from(key.modulusHex, "hex")).digest("hex").slice(0, 8),
    );
    assert.equal(key.publicPem, execFileSync("openssl", ["pkey", "-in", path, "-pubout"]).toString());
  });

  test("is read back unchanged on the next start", () => {
    const dir = freshDir();
    const first = loadCommandKey(dir);
    const before = readFileSync(first.path);
    const second = loadCommandKey(dir);
    assert.equal(second.created, false);
    assert.equal(second.modulusHex, first.modulusHex);
    assert.equal(second.kid, first.kid);
    assert.deepEqual(readFileSync(first.path), before);
    const cmd = signCommand(
      { op: "ota", dev: "d1", seq: 1, job: "j1", fw: "a".repeat(32), size: 1, ver: "1", down: 0 },
      second.privateKey,
    );
    assert.equal(cmd.kid, first.kid);
    const dirOut = join(dir, "check");
    mkdirSync(dirOut);
    writeFileSync(join(dirOut, "pub.pem"), first.publicPem);
    writeFileSync(join(dirOut, "msg"), signedBytes(cmd));
    writeFileSync(join(dirOut, "sig"), Buffer.from(cmd.sig, "base64"));
    const out = execFileSync("openssl", [
      "dgst",
      "-sha256",
      "-verify",
      join(dirOut, "pub.pem"),
      "-signature",
      join(dirOut, "sig"),
      join(dirOut, "msg"),
    ]).toString();
    assert.equal(out.trim(), "Verified OK");
  });

  test("servers starting at once on one data directory all end up with the same key", async () => {
    const dir = freshDir();
    const script = `import { loadCommandKey } from ${JSON.stringify(new URL("../../src/server/trust/command-key.ts", import.meta.url).href)};
process.stdout.write(loadCommandKey(${JSON.stringify(dir)}).kid);`;
    const run = () =>
      promisify(execFile)(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script]);
    const kids = (await Promise.all([run(), run(), run(), run()])).map((r) => r.stdout);
    assert.equal(new Set(kids).size, 1, kids.join(" "));
    assert.equal(loadCommandKey(dir).kid, kids[0]);
    assert.deepEqual(readdirSync(dir), [COMMAND_KEY_FILE]);
  });

  test("a key file others can read loads, with a warning to chmod it", () => {
    const dir = freshDir();
    const { path } = loadCommandKey(dir);
    chmodSync(path, 0o644);
    const key = loadCommandKey(dir);
    assert.match(key.warning ?? "", /can be read by other users \(mode 644\).*chmod 600/);
  });
});

describe("a command key file that cannot be used is refused, untouched, with what to do", () => {
  const rsa = (bits: number, publicExponent = 65537) =>
    generateKeyPairSync("rsa", { modulusLength: bits, publicExponent });
  const cases: Array<[string, () => string, RegExp]> = [
    ["garbage", () => "hello\n", /is not a PEM private key .*damaged.*restore the file from a backup/],
    [
      "a truncated PEM",
      () => rsa(2048).privateKey.export({ type: "pkcs8", format: "pem" }).toString().slice(0, 300),
      /looks like PEM but cannot be read as a private key .* truncated or damaged/,
    ],
    [
      "a public key",
      () => rsa(2048).publicKey.export({ type: "spki", format: "pem" }).toString(),
      /holds only a public key; the server needs the private key/,
    ],
    [
      "an EC key",
      () =>
        generateKeyPairSync("ec", { namedCurve: "P-256" })
          .privateKey.export({ type: "pkcs8", format: "pem" })
          .toString(),
      /cannot sign device commands: it is a ec key/,
    ],
    [
      "a yaota8266 key (exponent 3)",
      () => readFixtureText("reference/priv-pkcs1.key"),
      /cannot sign device commands: it has public exponent 3; devices verify commands with exponent 65537/,
    ],
    [
      "a 1024-bit key",
      () => rsa(1024).privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
      /cannot sign device commands: it is a 1024-bit RSA key; command keys have 2048 to 4096 bits/,
    ],
    [
      "a passphrase-protected key",
      () =>
        rsa(2048)
          .privateKey.export({ type: "pkcs8", format: "pem", cipher: "aes-256-cbc", passphrase: "x" })
          .toString(),
      /protected by a passphrase/,
    ],
  ];
  for (const [name, make, message] of cases) {
    test(name, () => {
      const text = make();
      const dir = withKeyFile(text);
      assert.throws(() => loadCommandKey(dir), keyError(message));
      assert.equal(readFileSync(join(dir, COMMAND_KEY_FILE), "latin1"), text);
      assert.deepEqual(readdirSync(dir), [COMMAND_KEY_FILE]);
    });
  }

  test("a directory in its place", () => {
    const dir = freshDir();
    mkdirSync(join(dir, COMMAND_KEY_FILE), { recursive: true });
    assert.throws(
      () => loadCommandKey(dir),
      keyError(/cannot be read \(it is a directory, not a key file\)/),
    );
  });
});
