import assert from "node:assert/strict";
import { createHash, generateKeyPairSync } from "node:crypto";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { makeTempDir, runCli } from "../support/cli.ts";

// `mpota app add|list|show|key` as a user runs them: exit codes, what is
// printed, and the bytes in the data directory's apps/ store.

const sha = (b: Buffer | string) => createHash("sha256").update(b).digest("hex");
const temp = makeTempDir("mpota-app-");
after(() => temp.remove());

let n = 0;
/** A fresh app folder with these files (path -> content). */
function folder(files: Record<string, string | Buffer>): string {
  const dir = join(temp.dir, `app-${++n}`);
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(join(dir, path, ".."), { recursive: true });
    writeFileSync(join(dir, path), content);
  }
  mkdirSync(dir, { recursive: true });
  return dir;
}

const data = join(temp.dir, "data");
const MAIN = "import sensor\nsensor.run()\n";
const SENSOR = "def run():\n    print('21.5 C')\n";
const MPY = Buffer.from([0x4d, 6, 0x03, 31, 1, 2, 3]);

function add(dir: string, ...more: string[]) {
  return runCli(["app", "add", dir, "--name", "thermostat", "--version", "1.4.0", "--data", data, ...more]);
}

describe("mpota app add", () => {
  let first: string;
  before(() => {
    first = folder({
      "main.py": MAIN,
      "sensor.py": SENSOR,
      "lib/fast.mpy": MPY,
      ".git/HEAD": "ref",
      "__pycache__/x.pyc": "x",
    });
  });

  test("checks the folder, makes the app key, and stores the signed manifest and each file by digest", async () => {
    const r = await add(first);
    assert.equal(r.code, 0, r.stderr);
    const key = join(data, "app-key.pem");
    const manifest = readFileSync(join(data, "apps/releases/thermostat/1.4.0.manifest"));
    const kid = /\nsig ([0-9a-f]{8}) /.exec(manifest.toString())?.[1];
    assert.equal(
      r.stdout,
      `Made a new app key ${kid} at ${key} (mode 0600; keep it secret: it signs the code every board runs).
Boards take only releases signed by a key in their APP_KEYS: \`mpota app key\` prints its modulus.
Added thermostat 1.4.0: 3 files, 65 bytes, for esp32, esp8266, rp2; .mpy version 6.
Release ${sha(manifest).slice(0, 12)}, signed with app key ${kid} (${key}).
Stored 3 new files (65 bytes) in ${join(data, "apps")}.
Left out: .git/, __pycache__/
`,
    );
    assert.equal(statSync(key).mode & 0o777, 0o600);
    assert.equal(
      manifest.toString().slice(0, manifest.toString().indexOf("sig ")),
      `mpota-app/1\nname thermostat\nversion 1.4.0\nboards esp32 esp8266 rp2\nmpy 6\nfiles 3 65\n${sha(MPY)} 7 lib/fast.mpy\n${sha(MAIN)} 27 main.py\n${sha(SENSOR)} 31 sensor.py\n`,
    );
    assert.deepEqual(readdirSync(join(data, "apps/files")).sort(), [sha(MAIN), sha(SENSOR), sha(MPY)].sort());
    assert.deepEqual(readFileSync(join(data, "apps/files", sha(MPY))), MPY);
    assert.equal(
      readdirSync(join(data, "apps/releases/thermostat")).join(),
      "1.4.0.manifest",
      "no temp files left",
    );
  });

  test("the same files again change nothing; other files under the same version are refused", async () => {
    const again = await add(first);
    assert.equal(again.code, 0);
    assert.match(
      again.stdout,
      /^thermostat 1.4.0 is stored already with these very files \(release [0-9a-f]{12}\): nothing changed.\n/,
    );
    const other = await add(folder({ "main.py": "print('other')\n" }));
    assert.equal(other.code, 52);
    assert.match(
      other.stderr,
      /thermostat 1.4.0 is already stored \(release [0-9a-f]{12}\) with other files or another key's signature. A stored version never changes, so devices that run it can trust it: give these files a new version./,
    );
  });

  test("a new version stores only the files that changed", async () => {
    const changed = folder({
      "main.py": MAIN,
      "sensor.py": "def run():\n    print('22.0 C')\n",
      "lib/fast.mpy": MPY,
    });
    const r = await runCli([
      "app",
      "add",
      changed,
      "--name",
      "thermostat",
      "--version",
      "1.5.0",
      "--data",
      data,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /\nStored 1 new file \(31 bytes\) in .*; the others were there already.\n/);
    assert.equal(readdirSync(join(data, "apps/files")).length, 4);
  });

  test("a size of a KiB or more is given in KiB and bytes, without a parenthesis inside another", async () => {
    const big = folder({ "main.py": MAIN, "table.dat": Buffer.alloc(19_050, 7) });
    // A data directory of its own (the listing below counts this one's releases), signed with the key made above.
    const r = await runCli([
      "app",
      "add",
      big,
      "--name",
      "logger",
      "--version",
      "1.0.0",
      "--data",
      join(temp.dir, "data-big"),
      "--key",
      join(data, "app-key.pem"),
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^Added logger 1\.0\.0: 2 files, 19,077 bytes \(18\.6 KiB\), for /);
    assert.match(r.stdout, /\nStored 2 new files \(18\.6 KiB, 19,077 bytes\) in .*apps\.\n$/);
  });

  test("folders a board could not take are refused with the file and the rule, and nothing is stored", async () => {
    const cases: Array<[Record<string, string | Buffer>, string[], RegExp]> = [
      [
        { "boot.py": "x" },
        [],
        /The app file boot.py is refused: boot.py belongs to the device, not to an app/,
      ],
      [
        { "main py.py": "x" },
        [],
        /The app file main py.py is refused: it holds characters other than ASCII letters/,
      ],
      [
        { "main.py": "x", "Main.py": "y" },
        [],
        /main.py and Main.py differ only in upper and lower case|Main.py and main.py differ only in upper and lower case/,
      ],
      [{ "a.mpy": "print(1)" }, [], /a.mpy is not a compiled MicroPython file/],
      [
        { "a.mpy": MPY, "b.mpy": Buffer.from([0x4d, 5, 0, 31]) },
        [],
        /The app mixes .mpy versions: a.mpy is version 6, b.mpy is version 5/,
      ],
      [
        { "b.mpy": Buffer.from([0x4d, 5, 0, 31]) },
        [],
        /b.mpy is .mpy version 5 \(MicroPython 1.16 to 1.18\); releases take .mpy version 6 only/,
      ],
      [
        { "n.mpy": Buffer.from([0x4d, 6, (9 << 2) | 3, 31]) },
        [],
        /native code for xtensa, which no esp32 or rp2 board runs. Name the boards it suits with --board \(esp8266\)/,
      ],
      [
        { "big.bin": Buffer.alloc(1024 * 1024 + 1) },
        [],
        /big.bin is 1048577 bytes; an app file holds at most 1048576 bytes/,
      ],
      [{ ".env": "x" }, [], /holds no app files \(only .env, which are left out\)/],
      [{ "main.py": "x" }, ["--board", "esp8266,pyboard"], /Unknown board kind "pyboard"/],
    ];
    for (const [files, extra, message] of cases) {
      const r = await runCli([
        "app",
        "add",
        folder(files),
        "--name",
        "bad",
        "--version",
        "1.0",
        "--data",
        data,
        ...extra,
      ]);
      assert.equal(r.code, 52, `${Object.keys(files)}: ${r.stderr}`);
      assert.match(r.stderr, message);
    }
    const many = folder(Object.fromEntries(Array.from({ length: 257 }, (_, i) => [`m${i}.py`, "x"])));
    const r = await runCli(["app", "add", many, "--name", "bad", "--version", "1.0", "--data", data]);
    assert.equal(r.code, 52);
    assert.match(r.stderr, /holds more than 256 files, the most a release holds. Is it the app's folder\?/);
    const linked = folder({ "main.py": "x" });
    symlinkSync("/etc/passwd", join(linked, "passwd.txt"));
    const l = await runCli(["app", "add", linked, "--name", "bad", "--version", "1.0", "--data", data]);
    assert.equal(l.code, 52);
    assert.match(l.stderr, /passwd.txt is a symbolic link; copy the file itself into the app folder./);
    const gone = await runCli([
      "app",
      "add",
      join(temp.dir, "no-such-app"),
      "--name",
      "bad",
      "--version",
      "1.0",
      "--data",
      data,
    ]);
    assert.equal(gone.code, 3);
    assert.match(gone.stderr, /The app folder .*no-such-app cannot be read \(it does not exist\)\./);
    const v = await runCli([
      "app",
      "add",
      folder({ "main.py": "x" }),
      "--name",
      "bad",
      "--version",
      "1.4.0-rc1",
      "--data",
      data,
    ]);
    assert.equal(v.code, 52);
    assert.match(v.stderr, /The app version "1.4.0-rc1" is not allowed: use 1 to 4 numbers joined by dots/);
    assert.deepEqual(readdirSync(join(data, "apps/releases")), ["thermostat"], "nothing of 'bad' was stored");
  });

  test(".py files MicroPython cannot compile are refused with the file and line, unless --no-compile-check", async () => {
    const broken = folder({
      "main.py": MAIN,
      "sensor.py": "def run(:\n    pass\n",
      "lib/units.py": "C = 1\nF = (\n",
      "notes.txt": "def (",
    });
    const own = join(temp.dir, "data-syntax");
    const r = await runCli(["app", "add", broken, "--name", "syntax", "--version", "1.0", "--data", own]);
    assert.equal(r.code, 52, r.stderr);
    assert.match(
      r.stderr,
      /2 .py files do not compile under MicroPython 1.27: lib\/units.py: line 3: SyntaxError: invalid syntax; sensor.py: line 1: SyntaxError: invalid syntax\. A board would fail to import them: fix the files and add the release again \(or pass --no-compile-check for .py files that are not MicroPython source\)\./,
    );
    assert.equal(existsSync(own), false, "nothing stored, not even the data directory or a key");
    const skipped = await runCli([
      "app",
      "add",
      broken,
      "--name",
      "syntax",
      "--version",
      "1.0",
      "--data",
      own,
      "--no-compile-check",
    ]);
    assert.equal(skipped.code, 0, skipped.stderr);
    assert.match(skipped.stdout, /Added syntax 1.0: 4 files/);
  });

  test("a signing key boards cannot check is refused (exit 53)", async () => {
    const e3 = generateKeyPairSync("rsa", { modulusLength: 2048, publicExponent: 3 }).privateKey;
    const file = join(temp.dir, "e3.pem");
    writeFileSync(file, e3.export({ type: "pkcs8", format: "pem" }), { mode: 0o600 });
    const r = await runCli([
      "app",
      "add",
      folder({ "main.py": "x" }),
      "--name",
      "k",
      "--version",
      "1",
      "--data",
      data,
      "--key",
      file,
    ]);
    assert.equal(r.code, 53);
    assert.match(r.stderr, /has public exponent 3; boards check app signatures with exponent 65537 only/);
    const missing = await runCli([
      "app",
      "add",
      folder({ "main.py": "x" }),
      "--name",
      "k",
      "--version",
      "1",
      "--data",
      data,
      "--key",
      join(temp.dir, "none.pem"),
    ]);
    assert.equal(missing.code, 53);
    assert.match(
      missing.stderr,
      /The app key .*none.pem cannot be read \(no such file; name the key that signed the releases with --key, or add a release first to make one\)/,
    );
  });
});

describe("mpota app list, show, key", () => {
  test("list: every release, oldest version first", async () => {
    const r = await runCli(["app", "list", "--data", data]);
    assert.equal(r.code, 0);
    const rows = r.stdout.trim().split("\n");
    assert.match(rows[0] as string, /^NAME\s+VERSION\s+RELEASE\s+FILES\s+SIZE\s+MPY\s+BOARDS\s+KEY$/);
    assert.match(
      rows[2] as string,
      /^thermostat\s+1.4.0\s+[0-9a-f]{12}\s+3\s+65\s+6\s+esp32,esp8266,rp2\s+[0-9a-f]{8}$/,
    );
    assert.match(rows[3] as string, /^thermostat\s+1.5.0\s/);
    const empty = await runCli(["app", "list", "--data", join(temp.dir, "nothing")]);
    assert.equal(
      empty.stdout,
      "No app releases are stored. Add one with `mpota app add DIR --name NAME --version VERSION`.\n",
    );
  });

  test("show: the files and digests, the signature checked; a changed manifest or file is reported (exit 52)", async () => {
    const r = await runCli(["app", "show", "thermostat@1.4.0", "--data", data]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout,
      /^thermostat 1.4.0, release [0-9a-f]{64}\n {2}signed by app key [0-9a-f]{8}: the signature verifies\n/,
    );
    assert.match(r.stdout, new RegExp(`main.py\\s+27\\s+${sha(MAIN)}`));
    const newest = await runCli(["app", "show", "thermostat", "--data", data, "--json"]);
    assert.equal(JSON.parse(newest.stdout).version, "1.5.0");
    const none = await runCli(["app", "show", "thermostat@2.0", "--data", data]);
    assert.equal(none.code, 52);
    assert.match(none.stderr, /There is no app release thermostat 2.0 in .* \(stored: 1.4.0, 1.5.0\)/);

    rmSync(join(data, "apps/files", sha(SENSOR)));
    const gone = await runCli(["app", "show", "thermostat@1.4.0", "--data", data]);
    assert.equal(gone.code, 52);
    assert.match(
      gone.stderr,
      /The store's copy of thermostat 1.4.0 is damaged: sensor.py is missing from the store. Add the release again/,
    );
    const repaired = await add(folder({ "main.py": MAIN, "sensor.py": SENSOR, "lib/fast.mpy": MPY }));
    assert.equal(repaired.code, 0);
    assert.equal(
      (await runCli(["app", "show", "thermostat@1.4.0", "--data", data])).code,
      0,
      "add rewrote the missing file",
    );

    const path = join(data, "apps/releases/thermostat/1.4.0.manifest");
    const original = readFileSync(path);
    writeFileSync(
      path,
      original.toString().replace(` 27 main.py`, ` 28 main.py`).replace("files 3 65", "files 3 66"),
    );
    const tampered = await runCli(["app", "show", "thermostat@1.4.0", "--data", data]);
    assert.equal(tampered.code, 52);
    assert.match(
      tampered.stderr,
      /The signature of thermostat 1.4.0 does not verify with key [0-9a-f]{8}: the manifest was changed after it was signed./,
    );
    writeFileSync(path, original);
  });

  test("key: the modulus for a board's APP_KEYS", async () => {
    const r = await runCli(["app", "key", "--data", data]);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /^[0-9a-f]{512}\n$/);
    assert.match(r.stderr, /^app key [0-9a-f]{8} \(.*app-key.pem\); put the modulus above into APP_KEYS/);
    chmodSync(join(data, "app-key.pem"), 0o644);
    const loose = await add(folder({ "main.py": MAIN, "sensor.py": SENSOR, "lib/fast.mpy": MPY }));
    assert.match(loose.stderr, /warning: the app key .* can be read by other users \(mode 644\)/);
  });
});
