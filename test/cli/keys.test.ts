import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import {
  chmodSync,
  copyFileSync,
  mkdirSync,
  readFileSync,
  realpathSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { modulusCString } from "../../src/protocol/config-h.ts";
import { parseModulusHex, parsePrivateKeyPem, parsePublicKeyPem } from "../../src/protocol/rsa-key.ts";
import { listDir, makeTempDir, runCli, runCliProcess } from "../support/cli.ts";
import { fixturePath, readFixtureText } from "../support/fixtures.ts";

const referenceModulusLine = readFixtureText("reference/modulus.txt").trim();
const mode = (path: string) => statSync(path).mode & 0o777;

describe("mpota keys new", () => {
  let tmp: ReturnType<typeof makeTempDir>;
  before(() => {
    tmp = makeTempDir();
  });
  after(() => tmp.remove());

  test("writes a 512-bit PKCS#1 priv.key (mode 0600) and an SPKI pub.key, and explains the next steps", async () => {
    const dir = join(tmp.dir, "default");
    const r = await runCli(["keys", "new", "--dir", dir]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(listDir(dir), ["priv.key", "pub.key"]);
    const privPath = join(dir, "priv.key");
    const pubPath = join(dir, "pub.key");
    assert.equal(mode(privPath), 0o600);

    const privPem = readFileSync(privPath, "utf8");
    assert.match(privPem, /^-----BEGIN RSA PRIVATE KEY-----\n/);
    const key = parsePrivateKeyPem(privPem, privPath);
    assert.equal(key.bits, 512);
    const pubPem = readFileSync(pubPath, "utf8");
    assert.match(pubPem, /^-----BEGIN PUBLIC KEY-----\n/);
    assert.deepEqual(parsePublicKeyPem(pubPem).modulus, key.modulus);

    // Where the files are, the modulus line to paste, the config-h hint.
    assert.ok(r.stdout.includes(privPath) && r.stdout.includes(pubPath), r.stdout);
    assert.match(r.stdout, /512-bit/);
    assert.ok(r.stdout.split("\n").includes(`#define MODULUS "${modulusCString(key)}"`), r.stdout);
    assert.match(r.stdout, /mpota config-h --key \S+priv\.key/);
    // The plain warning and how to do better.
    assert.match(r.stdout, /512-bit RSA key can be factored with modest means/);
    assert.match(r.stdout, /cloud/);
    assert.match(r.stdout, /--bits 2048/);
    assert.match(r.stdout, /--bits 1024/);
    assert.match(r.stdout, /rebuild yaota8266 with the new modulus/);
    assert.match(r.stdout, /untested on hardware/);
    assert.match(r.stdout, /404 bytes with 1024 bits, 532 bytes with 2048 bits/);
    assert.match(r.stdout, /548/);
    assert.equal(r.stderr, "");
  });

  test("openssl reads priv.key and shows public exponent 3", async () => {
    const dir = join(tmp.dir, "openssl");
    assert.equal((await runCli(["keys", "new", "--dir", dir])).code, 0);
    const out = spawnSync("openssl", ["rsa", "-in", join(dir, "priv.key"), "-noout", "-text"], {
      encoding: "utf8",
    });
    assert.equal(out.status, 0, out.stderr);
    assert.match(out.stdout, /Private-Key: \(512 bit/);
    assert.match(out.stdout, /publicExponent: 3 \(0x3\)/);
  });

  test("defaults to the current folder", async () => {
    const dir = join(tmp.dir, "cwd");
    mkdirSync(dir);
    const r = await runCli(["keys", "new"], { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(listDir(dir), ["priv.key", "pub.key"]);
  });

  test("refuses to overwrite either file without --force, and replaces both with it", async () => {
    const dir = join(tmp.dir, "overwrite");
    assert.equal((await runCli(["keys", "new", "--dir", dir])).code, 0);
    const oldPriv = readFileSync(join(dir, "priv.key"), "utf8");
    const oldPub = readFileSync(join(dir, "pub.key"), "utf8");

    const refused = await runCli(["keys", "new", "--dir", dir]);
    assert.equal(refused.code, 3);
    assert.match(refused.stderr, /priv\.key already exists/);
    assert.match(refused.stderr, /--force.*--dir/s);
    assert.equal(refused.stdout, "");
    assert.equal(readFileSync(join(dir, "priv.key"), "utf8"), oldPriv);
    assert.equal(readFileSync(join(dir, "pub.key"), "utf8"), oldPub);
    assert.deepEqual(listDir(dir), ["priv.key", "pub.key"]);

    // A loosened mode on the old file does not survive the replacement.
    chmodSync(join(dir, "priv.key"), 0o644);
    const forced = await runCli(["keys", "new", "--dir", dir, "--force"]);
    assert.equal(forced.code, 0, forced.stderr);
    const newPriv = readFileSync(join(dir, "priv.key"), "utf8");
    assert.notEqual(newPriv, oldPriv);
    assert.notEqual(readFileSync(join(dir, "pub.key"), "utf8"), oldPub);
    assert.deepEqual(
      parsePublicKeyPem(readFileSync(join(dir, "pub.key"))).modulus,
      parsePrivateKeyPem(newPriv).modulus,
    );
    assert.equal(mode(join(dir, "priv.key")), 0o600);
    assert.deepEqual(listDir(dir), ["priv.key", "pub.key"]);
  });

  test("an existing pub.key alone is enough to refuse, and no priv.key is created", async () => {
    const dir = join(tmp.dir, "pub-only");
    mkdirSync(dir);
    copyFileSync(fixturePath("reference/pub.key"), join(dir, "pub.key"));
    const r = await runCli(["keys", "new", "--dir", dir]);
    assert.equal(r.code, 3);
    assert.match(r.stderr, /pub\.key already exists.*--force/s);
    assert.deepEqual(listDir(dir), ["pub.key"]);
  });

  for (const bits of [1024, 2048] as const) {
    test(`--bits ${bits} makes a ${bits}-bit key and says the bootloader must be rebuilt`, async () => {
      const dir = join(tmp.dir, `bits-${bits}`);
      const r = await runCli(["keys", "new", "--dir", dir, "--bits", String(bits)]);
      assert.equal(r.code, 0, r.stderr);
      const key = parsePrivateKeyPem(readFileSync(join(dir, "priv.key")));
      assert.equal(key.bits, bits);
      assert.equal(mode(join(dir, "priv.key")), 0o600);
      assert.match(r.stdout, new RegExp(`${bits}-bit RSA key pair`));
      assert.match(r.stdout, /rebuild yaota8266 with this modulus/);
      assert.match(r.stdout, /untested on hardware/);
      assert.ok(r.stdout.includes(`#define MODULUS "${modulusCString(key)}"`));
      assert.doesNotMatch(r.stdout, /can be factored/);
    });
  }

  for (const bits of ["4096", "256", "abc", "512.0"]) {
    test(`--bits ${bits} is refused with the sizes to choose from, and nothing is written`, async () => {
      const dir = join(tmp.dir, `bad-bits-${bits}`);
      mkdirSync(dir);
      const r = await runCli(["keys", "new", "--dir", dir, "--bits", bits]);
      assert.equal(r.code, 2);
      assert.match(r.stderr, /--bits must be 512, 1024 or 2048/);
      assert.ok(r.stderr.includes(`"${bits}"`), r.stderr);
      assert.deepEqual(listDir(dir), []);
    });
  }

  test("--dir that is a file is refused with a clear message", async () => {
    const file = join(tmp.dir, "a-file");
    writeFileSync(file, "x");
    const r = await runCli(["keys", "new", "--dir", file]);
    assert.equal(r.code, 3);
    assert.match(r.stderr, /Cannot create the folder .*a-file/);
  });
});

describe("mpota keys modulus", () => {
  let tmp: ReturnType<typeof makeTempDir>;
  before(() => {
    tmp = makeTempDir();
  });
  after(() => tmp.remove());

  for (const name of ["priv-pkcs8.key", "priv-pkcs1.key", "pub.key"]) {
    test(`prints upstream's #define MODULUS line for the reference ${name}`, async () => {
      const r = await runCli(["keys", "modulus", "--key", fixturePath(`reference/${name}`)]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, `${referenceModulusLine}\n`);
    });
  }

  test("--hex prints plain hex that --modulus accepts", async () => {
    const r = await runCli(["keys", "modulus", "--hex", "--key", fixturePath("reference/pub.key")]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^[0-9a-f]{128}\n$/);
    assert.equal(r.stdout.slice(0, 8), "b82e8da7");
    const key = parseModulusHex(r.stdout);
    assert.equal(`#define MODULUS "${modulusCString(key)}"`, referenceModulusLine);
  });

  test("defaults to ./priv.key, and agrees with what keys new printed", async () => {
    const dir = join(tmp.dir, "default");
    const made = await runCli(["keys", "new", "--dir", dir]);
    assert.equal(made.code, 0, made.stderr);
    const r = await runCli(["keys", "modulus"], { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(made.stdout.split("\n").includes(r.stdout.trimEnd()));
  });

  test("a missing default key says how to make one", async () => {
    const dir = join(tmp.dir, "empty");
    mkdirSync(dir);
    const r = await runCli(["keys", "modulus"], { cwd: dir });
    assert.equal(r.code, 3);
    assert.ok(r.stderr.includes(`Key file ${join(realpathSync(dir), "priv.key")} does not exist`), r.stderr);
    assert.match(r.stderr, /mpota keys new/);
    assert.equal(r.stdout, "");
  });

  const bad: Array<[string, () => string, number, RegExp]> = [
    [
      "a key with exponent 65537",
      () => fixturePath("reference/exp65537.key"),
      4,
      /exponent 65537.*exponent 3/s,
    ],
    [
      "a file that is not PEM",
      () => {
        const p = join(tmp.dir, "garbage.key");
        writeFileSync(p, "hello\n");
        return p;
      },
      4,
      /not a PEM key file/,
    ],
    [
      "a truncated PEM key",
      () => {
        const p = join(tmp.dir, "truncated.key");
        writeFileSync(p, readFixtureText("reference/priv-pkcs1.key").slice(0, 200));
        return p;
      },
      4,
      /could not be read as an RSA key/,
    ],
    ["a folder", () => tmp.dir, 3, /is a directory/],
  ];
  for (const [what, path, code, message] of bad) {
    test(`refuses ${what}`, async () => {
      const r = await runCli(["keys", "modulus", "--key", path()]);
      assert.equal(r.code, code, r.stderr);
      assert.match(r.stderr, message);
      assert.equal(r.stdout, "");
    });
  }
});

describe("mpota keys, as a real process", () => {
  test("--help works for keys, keys new and keys modulus", async () => {
    for (const args of [["keys"], ["keys", "new"], ["keys", "modulus"]]) {
      const r = await runCliProcess([...args, "--help"]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`Usage: mpota ${args.join(" ")}`));
    }
    const help = await runCliProcess(["keys", "new", "--help"]);
    for (const option of ["--dir", "--bits", "--force"]) assert.ok(help.stdout.includes(option), help.stdout);
  });

  test("exit codes: success, and a refusal to overwrite", async () => {
    const tmp = makeTempDir();
    try {
      const ok = await runCliProcess(["keys", "new", "--dir", tmp.dir]);
      assert.equal(ok.code, 0, ok.stderr);
      assert.equal(mode(join(tmp.dir, "priv.key")), 0o600);
      const refused = await runCliProcess(["keys", "new", "--dir", tmp.dir]);
      assert.equal(refused.code, 3);
      assert.match(refused.stderr, /^mpota: .*already exists.*--force/s);
      const modulus = await runCliProcess(["keys", "modulus"], { cwd: tmp.dir });
      assert.equal(modulus.code, 0, modulus.stderr);
      assert.match(modulus.stdout, /^#define MODULUS "(\\x[0-9a-f]{2}){64}"\n$/);
    } finally {
      tmp.remove();
    }
  });
});
