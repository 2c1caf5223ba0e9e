import assert from "node:assert/strict";
import { execFileSync, type SpawnSyncReturns, spawnSync } from "node:child_process";
import { createPrivateKey, createPublicKey, generateKeyPairSync } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import {
  CommandKeyError,
  commandKeyId,
  commandPublicKey,
  publicModulusHex,
} from "../../src/protocol/command-key-facts.ts";
import {
  CommandFieldError,
  CommandSignatureError,
  encodeCommand,
  type KeysCommandFields,
  type OtaCommandFields,
  signCommand,
  signedBytes,
  validateCommandFields,
  verifyCommand,
} from "../../src/protocol/command-signature.ts";
import { fixturePath, readFixtureText } from "../support/fixtures.ts";

// test/fixtures/command/command-key.pem was made by
//   openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048
// and the vectors below by openssl and sha256sum, not by the code under test.
const privateKey = createPrivateKey(readFixtureText("command/command-key.pem"));
const publicPem = readFixtureText("command/command-pub.pem");
const publicKey = createPublicKey(publicPem);
const modulusHex = execFileSync("openssl", [
  "rsa",
  "-pubin",
  "-in",
  fixturePath("command/command-pub.pem"),
  "-modulus",
  "-noout",
])
  .toString()
  .trim()
  .replace(/^Modulus=/, "")
  .toLowerCase();
const other = generateKeyPairSync("rsa", { modulusLength: 2048 });

const ota: OtaCommandFields = {
  op: "ota",
  dev: "sim-2",
  seq: 12,
  job: "j-7f3a",
  fw: "0123456789abcdef0123456789abcdef",
  size: 612352,
  ver: "1.4.0",
  down: 0,
};
const OTA_MESSAGE = "mpota-cmd/2\nsim-2\n12\nota\nj-7f3a\n0123456789abcdef0123456789abcdef\n612352\n1.4.0\n0";
// openssl dgst -sha256 -sign command-key.pem message.txt | base64 -w0
const OTA_SIG =
  "x6sZmoq6WzZmiF3Rz9qrvLnckKdkj+r+RhKjSQbKVLlxy5FN1AInxDhlYXWxSuOb1BFbu939wQb2xddY5N9+u5SjHYpQr2rgov8NSQRM6FlyYs+AWZ9qFt57nT6X20KqTBwIZQjSut1bD4o4HErQCfhX5zQ/XIENXYWW3tedD329y9P2+QevaU/ZW+oJHBissQN3KdYPvXyn0bAQYzhm6Z7162dYX43BfB+kCFlrz7dq+3ktrGNgxRIzSOBedv37kJljKIRR2lFiEBfjTQZjOdXoCpASJI7CLg4T6FfxUT4UI+IxLW3BHr6D1KqIXMbsQBWHkvQYWegDFvl+5Cx4IA==";
// openssl rsa -pubin -modulus -noout | cut -d= -f2 | xxd -r -p | sha256sum | cut -c1-8
const KID = "816091f2";

const dir = mkdtempSync(join(tmpdir(), "mpota-cmdsig-"));
after(() => rmSync(dir, { recursive: true, force: true }));

function openssl(args: string[]): { status: number | null; out: string } {
  const r = spawnSync("openssl", args, { encoding: "utf8" });
  return { status: r.status, out: `${r.stdout}${r.stderr}`.trim() };
}

const fieldError = (re: RegExp) => (e: unknown) => e instanceof CommandFieldError && re.test(e.message);
const sigError = (re: RegExp) => (e: unknown) => e instanceof CommandSignatureError && re.test(e.message);

describe("signed bytes", () => {
  test("an ota command: the fields in order, \\n between them, no trailing newline", () => {
    assert.equal(signedBytes(ota).toString("utf8"), OTA_MESSAGE);
    assert.equal(
      signedBytes({ ...ota, down: 1, size: 0 })
        .toString()
        .split("\n")
        .slice(6)
        .join("|"),
      "0|1.4.0|1",
    );
  });

  test("a keys command: the moduli joined by commas", () => {
    const keys: KeysCommandFields = {
      op: "keys",
      dev: "sim-2",
      seq: 13,
      keys: [modulusHex, "c1".repeat(256)],
    };
    assert.equal(
      signedBytes(keys).toString(),
      `mpota-cmd/2\nsim-2\n13\nkeys\n${modulusHex},${"c1".repeat(256)}`,
    );
  });

  test("the largest seq is written in full, without an exponent", () => {
    assert.match(signedBytes({ ...ota, seq: 2 ** 53 - 1 }).toString(), /\n9007199254740991\n/);
  });
});

describe("key id and modulus", () => {
  test("kid is the first 4 bytes of SHA-256 of the modulus, as openssl and sha256sum give it", () => {
    assert.equal(publicModulusHex(publicKey), modulusHex);
    assert.equal(publicModulusHex(privateKey), modulusHex);
    assert.equal(commandKeyId(modulusHex), KID);
    assert.equal(commandKeyId(Buffer.concat([Buffer.of(0), Buffer.from(modulusHex, "hex")])), KID);
  });

  test("a public key rebuilt from the modulus hex is the same key", () => {
    const rebuilt = commandPublicKey(modulusHex);
    assert.equal(rebuilt.export({ type: "spki", format: "pem" }).toString(), publicPem);
  });

  test("refuses keys devices cannot use", () => {
    const isKeyError = (re: RegExp) => (e: unknown) => e instanceof CommandKeyError && re.test(e.message);
    const ec = generateKeyPairSync("ec", { namedCurve: "P-256" });
    assert.throws(
      () => signCommand(ota, ec.privateKey),
      isKeyError(/is a ec key; commands are signed with RSA/),
    );
    const e3 = generateKeyPairSync("rsa", { modulusLength: 2048, publicExponent: 3 });
    assert.throws(
      () => signCommand(ota, e3.privateKey),
      isKeyError(/public exponent 3; devices verify .* 65537/),
    );
    const small = generateKeyPairSync("rsa", { modulusLength: 1024 });
    assert.throws(
      () => signCommand(ota, small.privateKey),
      isKeyError(/1024-bit RSA key; command keys have 2048/),
    );
    assert.throws(() => signCommand(ota, publicKey), isKeyError(/needs the private command key/));
    assert.throws(() => commandKeyId("00ab"), isKeyError(/without a leading zero byte/));
    assert.throws(() => commandPublicKey("ABCD".repeat(128)), isKeyError(/lowercase hex/));
  });
});

describe("signing", () => {
  test("gives openssl's signature byte for byte, and the command object of the contract", () => {
    const cmd = signCommand(ota, privateKey);
    assert.equal(cmd.sig, OTA_SIG);
    assert.equal(
      encodeCommand(cmd),
      `{"v":2,"op":"ota","dev":"sim-2","seq":12,"job":"j-7f3a","fw":"0123456789abcdef0123456789abcdef","size":612352,"ver":"1.4.0","down":0,"kid":"${KID}","sig":"${OTA_SIG}"}`,
    );
    assert.equal(Buffer.from(cmd.sig, "base64").length, 256);
  });

  test("a keys command carries keys instead of job/fw/size/ver/down", () => {
    const cmd = signCommand({ op: "keys", dev: "sim-2", seq: 13, keys: [modulusHex] }, privateKey);
    assert.deepEqual(Object.keys(cmd), ["v", "op", "dev", "seq", "keys", "kid", "sig"]);
    assert.deepEqual(verifyCommand(encodeCommand(cmd), publicKey), {
      op: "keys",
      dev: "sim-2",
      seq: 13,
      keys: [modulusHex],
      kid: KID,
    });
  });

  test("extra fields given to signCommand are not carried into the command", () => {
    const cmd = signCommand({ ...ota, evil: "x" } as OtaCommandFields, privateKey);
    assert.equal("evil" in cmd, false);
  });
});

describe("field rules: the server refuses to sign", () => {
  const bad: Array<[string, Record<string, unknown>, RegExp]> = [
    ["op missing", { op: undefined }, /field op is missing; it must be "ota", "keys", "pull" or "app"/],
    ["op unknown", { op: "reboot" }, /field op is "reboot"/],
    ["dev empty", { dev: "" }, /field dev is ""; it must be a device id/],
    ["dev too long", { dev: "a".repeat(65) }, /field dev/],
    ["dev with a slash", { dev: "a/b" }, /field dev is "a\/b"/],
    ["dev with a newline", { dev: "a\nb" }, /field dev/],
    ["dev reserved bridge", { dev: "bridge" }, /reserved/],
    ["dev reserved mpota-", { dev: "mpota-server" }, /reserved/],
    ["seq 0", { seq: 0 }, /field seq is 0; it must be an integer from 1 to 2\^53-1/],
    ["seq negative", { seq: -1 }, /field seq is -1/],
    ["seq 2^53", { seq: 2 ** 53 }, /field seq is 9007199254740992/],
    ["seq fraction", { seq: 1.5 }, /field seq is 1.5/],
    ["seq as text", { seq: "12" }, /field seq is "12"/],
    ["job missing", { job: undefined }, /field job is missing/],
    ["job with a space", { job: "j 1" }, /field job is "j 1"/],
    ["job too long", { job: "j".repeat(65) }, /field job/],
    ["fw uppercase", { fw: "0123456789ABCDEF0123456789ABCDEF" }, /field fw .* 32 lowercase hex digits/],
    ["fw short", { fw: "abc" }, /field fw is "abc"/],
    ["size negative", { size: -1 }, /field size is -1; it must be an integer >= 0/],
    ["size fraction", { size: 1.5 }, /field size is 1.5/],
    ["size as text", { size: "612352" }, /field size/],
    ["ver empty", { ver: "" }, /field ver is ""/],
    ["ver too long", { ver: "1".repeat(33) }, /field ver/],
    ["ver with a space", { ver: "1.4 beta" }, /field ver is "1.4 beta"/],
    ["ver with a comma", { ver: "1,4" }, /field ver/],
    ["down 2", { down: 2 }, /field down is 2; it must be 0 or 1/],
    ["down true", { down: true }, /field down is true/],
    ["down missing", { down: undefined }, /field down is missing/],
  ];
  for (const [name, change, message] of bad) {
    test(name, () => {
      const fields = { ...ota, ...change };
      for (const [k, v] of Object.entries(change))
        if (v === undefined) delete (fields as Record<string, unknown>)[k];
      assert.throws(() => signCommand(fields as OtaCommandFields, privateKey), fieldError(message));
      assert.throws(() => signedBytes(fields as OtaCommandFields), fieldError(message));
    });
  }

  test("the accepted edges of every rule", () => {
    for (const change of [
      { dev: "A".repeat(64) },
      { dev: "a_b-C9" },
      { seq: 1 },
      { seq: 2 ** 53 - 1 },
      { job: "J".repeat(64) },
      { size: 0 },
      { ver: "v1.4.0-rc.1+build_7" },
      { ver: "x".repeat(32) },
      { down: 1 },
    ]) {
      assert.doesNotThrow(() => validateCommandFields({ ...ota, ...change }), JSON.stringify(change));
    }
  });

  test("keys: 1 to 3 moduli, lowercase hex, whole bytes, no leading zero byte, 2048 to 4096 bits", () => {
    const keys = (list: unknown) => ({ op: "keys", dev: "d", seq: 1, keys: list });
    const m = modulusHex;
    assert.throws(
      () => validateCommandFields(keys([])),
      fieldError(/field keys has 0 moduli; it must have 1 to 3/),
    );
    assert.throws(() => validateCommandFields(keys([m, m, m, m])), fieldError(/keys has 4 moduli/));
    assert.throws(() => validateCommandFields(keys(m)), fieldError(/field keys is "[0-9a-f]+"/));
    assert.throws(
      () => validateCommandFields(keys([m.toUpperCase()])),
      fieldError(/keys\[0\] .* lowercase hex/),
    );
    assert.throws(() => validateCommandFields(keys([m, `${m}0`])), fieldError(/keys\[1\] .* whole bytes/));
    assert.throws(() => validateCommandFields(keys([`00${m}`])), fieldError(/leading zero byte/));
    assert.throws(() => validateCommandFields(keys(["ab".repeat(128)])), fieldError(/not 1024 bits/));
    assert.throws(() => validateCommandFields(keys(["ab".repeat(513)])), fieldError(/not 4104 bits/));
    assert.deepEqual(validateCommandFields(keys([m, "ab".repeat(512)])), keys([m, "ab".repeat(512)]));
  });

  test("not an object", () => {
    for (const input of [null, [], "cmd", 12]) {
      assert.throws(() => validateCommandFields(input), fieldError(/must be an object/));
    }
  });
});

describe("verification", () => {
  const good = () => ({ ...signCommand(ota, privateKey) }) as Record<string, unknown>;

  test("accepts the command as signed, by public key, private key or modulus hex, and as JSON text", () => {
    const expected = { ...ota, kid: KID };
    assert.deepEqual(verifyCommand(good(), publicKey), expected);
    assert.deepEqual(verifyCommand(good(), privateKey), expected);
    assert.deepEqual(verifyCommand(good(), [modulusHex]), expected);
    assert.deepEqual(
      verifyCommand(encodeCommand(signCommand(ota, privateKey)), [other.publicKey, publicKey]),
      expected,
    );
  });

  test("refuses a tampered field, with every field", () => {
    for (const change of [
      { dev: "sim-3" },
      { seq: 13 },
      { job: "j-7f3b" },
      { fw: "f".repeat(32) },
      { size: 612353 },
      { ver: "1.4.1" },
      { down: 1 },
    ]) {
      assert.throws(
        () => verifyCommand({ ...good(), ...change }, publicKey),
        sigError(/does not verify with key 816091f2/),
      );
    }
  });

  test("refuses a forgery by another key, whichever kid it names", () => {
    const forged = signCommand(ota, other.privateKey) as unknown as Record<string, unknown>;
    assert.throws(
      () => verifyCommand(forged, publicKey),
      sigError(/signed by key [0-9a-f]{8}, which is not trusted/),
    );
    assert.throws(() => verifyCommand({ ...forged, kid: KID }, publicKey), sigError(/does not verify/));
  });

  test("refuses truncated, padded, malformed and non-base64 signatures", () => {
    const sig = OTA_SIG;
    const raw = Buffer.from(sig, "base64");
    const cases: Array<[unknown, RegExp]> = [
      [sig.slice(0, -4), /sig has 255 bytes; a signature by key 816091f2 has 256/],
      [raw.subarray(0, 200).toString("base64"), /sig has 200 bytes/],
      [Buffer.concat([raw, Buffer.of(0)]).toString("base64"), /sig has 257 bytes/],
      [sig.slice(0, -1), /not base64/],
      [`${sig.slice(0, 10)} ${sig.slice(10)}`, /not base64/],
      [sig.replace(/\+/g, "-"), /not base64/],
      ["!".repeat(344), /not base64/],
      // The same bytes, but stray bits in the last character before the padding: not canonical.
      [`${sig.slice(0, -3)}${sig.at(-3) === "I" ? "J" : "I"}==`, /not base64/],
      ["", /sig has 0 bytes/],
      [12, /not base64/],
      [Buffer.alloc(256).toString("base64"), /does not verify/],
      [Buffer.alloc(256, 0xff).toString("base64"), /does not verify/],
    ];
    for (const [bad, message] of cases) {
      assert.throws(() => verifyCommand({ ...good(), sig: bad }, publicKey), sigError(message), String(bad));
    }
  });

  test("refuses what is not a v2 command", () => {
    const { sig: _sig, ...unsigned } = good();
    assert.throws(() => verifyCommand("{", publicKey), sigError(/not JSON/));
    assert.throws(() => verifyCommand("[]", publicKey), sigError(/not a JSON object/));
    assert.throws(() => verifyCommand({ ...good(), v: 1 }, publicKey), sigError(/v is 1, not 2/));
    assert.throws(() => verifyCommand(unsigned, publicKey), sigError(/not signed/));
    assert.throws(
      () => verifyCommand({ ...good(), kid: "816091F2" }, publicKey),
      sigError(/kid is not 8 lowercase hex/),
    );
    assert.throws(() => verifyCommand({ ...good(), job: "a b" }, publicKey), sigError(/field job is "a b"/));
  });
});

describe("interop with the openssl binary", () => {
  const pubPath = join(dir, "pub.pem");
  const keyPath = fixturePath("command/command-key.pem");
  writeFileSync(pubPath, publicKey.export({ type: "spki", format: "pem" }));

  test("openssl verifies what TypeScript signs (ota and keys), and rejects a tampered message", () => {
    const commands = [
      signCommand({ ...ota, seq: 99, job: "j-interop", down: 1 }, privateKey),
      signCommand(
        { op: "keys", dev: "sim-2", seq: 100, keys: [modulusHex, publicModulusHex(other.publicKey)] },
        privateKey,
      ),
    ];
    for (const cmd of commands) {
      const message = join(dir, `message-${cmd.seq}.txt`);
      const sig = join(dir, `sig-${cmd.seq}.bin`);
      writeFileSync(message, signedBytes(cmd));
      writeFileSync(sig, Buffer.from(cmd.sig, "base64"));
      assert.deepEqual(openssl(["dgst", "-sha256", "-verify", pubPath, "-signature", sig, message]), {
        status: 0,
        out: "Verified OK",
      });
      writeFileSync(message, Buffer.concat([signedBytes(cmd), Buffer.from("\n")]));
      const r = openssl(["dgst", "-sha256", "-verify", pubPath, "-signature", sig, message]);
      assert.equal(r.status, 1);
      assert.match(r.out, /Verification failure/);
    }
  });

  test("TypeScript verifies what `openssl dgst -sha256 -sign` made", () => {
    const fields: OtaCommandFields = { ...ota, dev: "kitchen", seq: 4711, job: "j-openssl", ver: "2.0.0+b1" };
    const message = join(dir, "openssl-message.txt");
    const sig = join(dir, "openssl-sig.bin");
    writeFileSync(message, signedBytes(fields));
    assert.equal(openssl(["dgst", "-sha256", "-sign", keyPath, "-out", sig, message]).status, 0);
    const command = { v: 2, ...fields, kid: KID, sig: readFileSync(sig).toString("base64") };
    assert.deepEqual(verifyCommand(JSON.stringify(command), modulusHex), { ...fields, kid: KID });
    assert.equal(command.sig, signCommand(fields, privateKey).sig);
    assert.throws(() => verifyCommand({ ...command, seq: 4712 }, modulusHex), sigError(/does not verify/));
  });

  test("the recipe in docs/mqtt.md (jq, base64, openssl) checks an ota, a keys and a pull command", () => {
    const doc = readFileSync(new URL("../../docs/mqtt.md", import.meta.url), "utf8");
    const block = /\*\*Checking a command with OpenSSL\.\*\*[\s\S]*?```sh\n([\s\S]*?)```/.exec(doc)?.[1];
    if (!block) throw new Error("docs/mqtt.md has no recipe under **Checking a command with OpenSSL.**");
    const commands = [
      signCommand({ ...ota, seq: 2 ** 53 - 1, ver: "2.0-rc.1+b7" }, privateKey),
      signCommand({ op: "keys", dev: "sim-2", seq: 77, keys: [modulusHex] }, privateKey),
      signCommand(
        {
          ...ota,
          op: "pull",
          seq: 78,
          sha: "6105d6cc76af400325e94d588ce511be5bfdbb73b437dc51eca43917d7a43e3d",
          url: "https://ota.example:8443/device/firmware/0123456789abcdef0123456789abcdef",
        },
        privateKey,
      ),
    ];
    for (const cmd of commands) {
      const work = join(dir, `recipe-${cmd.op}`);
      mkdirSync(work);
      writeFileSync(join(work, "cmd.json"), encodeCommand(cmd));
      writeFileSync(join(work, "pub.pem"), publicPem);
      const r: SpawnSyncReturns<string> = spawnSync("bash", ["-eo", "pipefail", "-c", block], {
        cwd: work,
        encoding: "utf8",
      });
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout, `Verified OK\n${KID}\n`);
      assert.deepEqual(readFileSync(join(work, "message.txt")), signedBytes(cmd));
    }
  });
});
