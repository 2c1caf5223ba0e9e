import assert from "node:assert/strict";
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { DEFAULT_SETTINGS, parseConfigH, renderConfigH } from "../../src/protocol/config-h.ts";
import { parsePublicKeyPem } from "../../src/protocol/rsa-key.ts";
import { listDir, makeTempDir, runCli, runCliProcess } from "../support/cli.ts";
import { fixturePath, readFixtureText } from "../support/fixtures.ts";

const keyFile = fixturePath("reference/priv-pkcs8.key");
const referenceKey = parsePublicKeyPem(readFixtureText("reference/pub.key"));
const referenceModulusLine = readFixtureText("reference/modulus.txt").trim();

describe("mpota config-h", () => {
  let tmp: ReturnType<typeof makeTempDir>;
  before(() => {
    tmp = makeTempDir();
  });
  after(() => tmp.remove());

  test("prints the complete commented config.h with upstream's defaults and the key's modulus", async () => {
    const r = await runCli(["config-h", "--key", keyFile]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, renderConfigH(referenceKey, DEFAULT_SETTINGS));
    const lines = r.stdout.split("\n");
    for (const line of [
      "#define MAIN_APP_OFFSET 0x3c000",
      "#define BAUD_RATE 115200",
      referenceModulusLine,
      "#define PKT_WAIT_MS 10000",
      "#define IDLE_REBOOT_MS 60000",
      "#define GPIO_MASK 0xf035",
      "#define GPIO_WAIT_MS 3000",
    ]) {
      assert.ok(lines.includes(line), `missing: ${line}`);
    }
    assert.ok(lines.filter((l) => l.startsWith("//")).length >= 10, "the settings are explained");
    assert.match(r.stderr, /^BAUD_RATE 115200: /);
  });

  test("takes a public key, and ./priv.key by default", async () => {
    const pub = await runCli(["config-h", "--key", fixturePath("reference/pub.key")]);
    assert.equal(pub.code, 0, pub.stderr);
    assert.ok(pub.stdout.includes(referenceModulusLine));
    const dir = join(tmp.dir, "default-key");
    mkdirSync(dir);
    copyFileSync(fixturePath("reference/priv-pkcs1.key"), join(dir, "priv.key"));
    const def = await runCli(["config-h"], { cwd: dir });
    assert.equal(def.code, 0, def.stderr);
    assert.equal(def.stdout, pub.stdout);
  });

  test("every setting can be changed, in decimal or hex", async () => {
    const r = await runCli([
      "config-h",
      "--key",
      keyFile,
      "--app-offset",
      "0x40000",
      "--baud",
      "0",
      "--gpio-mask",
      "0",
      "--gpio-wait-ms",
      "0",
      "--pkt-wait-ms",
      "5000",
      "--idle-reboot-ms",
      "0x7530",
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(parseConfigH(r.stdout).settings, {
      mainAppOffset: 0x40000,
      baudRate: 0,
      gpioMask: 0,
      gpioWaitMs: 0,
      pktWaitMs: 5000,
      idleRebootMs: 30000,
    });
    assert.ok(r.stdout.split("\n").includes("#define BAUD_RATE 0"));
    assert.ok(r.stdout.split("\n").includes("#define MAIN_APP_OFFSET 0x40000"));
  });

  test("-o writes the file, refuses to overwrite it without --force, replaces it with --force", async () => {
    const dir = join(tmp.dir, "output");
    mkdirSync(dir);
    const out = join(dir, "config.h");
    const r = await runCli(["config-h", "--key", keyFile, "-o", out]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(readFileSync(out, "utf8"), renderConfigH(referenceKey));
    assert.ok(r.stdout.includes(out), r.stdout);
    assert.match(r.stdout, /yaota8266/);

    writeFileSync(out, "// my own edits\n");
    const refused = await runCli(["config-h", "--key", keyFile, "-o", out, "--baud", "921600"]);
    assert.equal(refused.code, 3);
    assert.match(refused.stderr, /config\.h already exists.*--force/s);
    assert.equal(readFileSync(out, "utf8"), "// my own edits\n");

    const forced = await runCli(["config-h", "--key", keyFile, "-o", out, "--baud", "921600", "--force"]);
    assert.equal(forced.code, 0, forced.stderr);
    assert.equal(parseConfigH(readFileSync(out, "utf8")).settings.baudRate, 921600);
    assert.deepEqual(listDir(dir), ["config.h"]);
  });

  test("relative -o resolves against the current folder", async () => {
    const dir = join(tmp.dir, "relative");
    mkdirSync(dir);
    const r = await runCli(["config-h", "--key", keyFile, "-o", "config.h"], { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(listDir(dir), ["config.h"]);
  });

  const bad: Array<[string[], number, RegExp]> = [
    [["--app-offset", "0x3c001"], 2, /--app-offset 0x3c001 is not a multiple of 4 KiB.*0x3c000/s],
    [["--app-offset", "0"], 2, /--app-offset 0x0 would overwrite boot8266/],
    [["--app-offset", "0x800"], 2, /would overwrite boot8266/],
    [["--app-offset", "0x1000000"], 2, /beyond 16 MiB/],
    [["--app-offset", "3c000"], 2, /--app-offset must be a whole number \(decimal or 0x hex\), not "3c000"/],
    [["--baud", "-1"], 2, /--baud must be a whole number.*"-1"/],
    [["--baud", "fast"], 2, /--baud must be a whole number.*"fast"/],
    [["--baud", "115200.5"], 2, /--baud must be a whole number/],
    [["--gpio-mask", "0x10000"], 2, /--gpio-mask 0x10000 has bits above GPIO15.*0xffff/],
    [["--gpio-wait-ms", "0x100000000"], 2, /--gpio-wait-ms 4294967296 is too large/],
    [["--pkt-wait-ms", "0"], 2, /--pkt-wait-ms must be more than 0.*10000/],
    [["--idle-reboot-ms", "0"], 2, /--idle-reboot-ms must be more than 0.*60000/],
    [
      ["--key", "/nonexistent/priv.key"],
      3,
      /Key file \/nonexistent\/priv\.key does not exist.*mpota keys new/,
    ],
    [["--key", fixturePath("reference/exp65537.key")], 4, /exponent 65537/],
    [["--bogus"], 2, /unknown option '--bogus'/],
  ];
  for (const [args, code, message] of bad) {
    test(`refuses ${args.join(" ")} with exit ${code}, and writes nothing`, async () => {
      const dir = makeTempDir();
      try {
        const keyArgs = args.includes("--key") ? [] : ["--key", keyFile];
        const r = await runCli(["config-h", ...keyArgs, ...args, "-o", join(dir.dir, "config.h")]);
        assert.equal(r.code, code, r.stderr);
        assert.match(r.stderr, message);
        assert.equal(r.stdout, "");
        assert.deepEqual(listDir(dir.dir), []);
      } finally {
        dir.remove();
      }
    });
  }

  test("-o into a folder that does not exist says so, and leaves nothing", async () => {
    const r = await runCli(["config-h", "--key", keyFile, "-o", join(tmp.dir, "missing", "config.h")]);
    assert.equal(r.code, 3);
    assert.match(r.stderr, /the folder \S+missing does not exist/);
  });

  test("as a real process: --help lists every setting, and a bad value exits non-zero", async () => {
    const help = await runCliProcess(["config-h", "--help"]);
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, /Usage: mpota config-h/);
    for (const option of [
      "--key",
      "--app-offset",
      "--baud",
      "--gpio-mask",
      "--gpio-wait-ms",
      "--pkt-wait-ms",
      "--idle-reboot-ms",
      "--output",
      "--force",
    ]) {
      assert.ok(help.stdout.includes(option), `--help lacks ${option}`);
    }
    const bad = await runCliProcess(["config-h", "--key", keyFile, "--app-offset", "0x3c001"]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /^mpota: --app-offset 0x3c001 is not a multiple of 4 KiB/);
    const ok = await runCliProcess(["config-h", "--key", keyFile]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout, renderConfigH(referenceKey));
  });
});

describe("mpota config-h: what BAUD_RATE costs", () => {
  test("states the floor of a 600 KiB update for the chosen BAUD_RATE and for 921600", async () => {
    const key = fixturePath("reference/priv-pkcs1.key");
    const at115200 = await runCli(["config-h", "--key", key]);
    assert.equal(at115200.code, 0, at115200.stderr);
    assert.match(
      at115200.stderr,
      /BAUD_RATE 115200: the receiver needs at least 33\.3 s for a 600 KiB update/,
    );
    assert.match(at115200.stderr, /With --baud 921600 it would be 12\.7 s/);
    const rom = await runCli(["config-h", "--key", key, "--baud", "0"]);
    assert.match(rom.stderr, /BAUD_RATE 0 \(the ROM's 74880\): the receiver needs at least 46\.0 s/);
    assert.doesNotMatch(at115200.stdout, /the receiver needs/);
  });
});
