import assert from "node:assert/strict";
import { createHash, generateKeyPairSync } from "node:crypto";
import { describe, test } from "node:test";
import { AppKeyError, AppReleaseError } from "../../src/apps/app-errors.ts";
import { type AppManifestFields, parseAppManifest } from "../../src/apps/app-manifest.ts";
import { appPathProblem, compareAppPaths } from "../../src/apps/app-path.ts";
import { signAppManifest, verifyAppManifest } from "../../src/apps/app-signature.ts";
import { mpyNeed, readMpyHeader } from "../../src/apps/mpy-header.ts";

const sha = (s: string) => createHash("sha256").update(s).digest("hex");
const key = generateKeyPairSync("rsa", { modulusLength: 2048, publicExponent: 65537 }).privateKey;

function fields(paths: string[], over: Partial<AppManifestFields> = {}): AppManifestFields {
  return {
    name: "thermostat",
    version: "1.4.0",
    boards: ["rp2", "esp8266"],
    mpy: undefined,
    files: paths.map((p) => ({ path: p, size: p.length, sha256: sha(p) })),
    ...over,
  };
}

describe("app paths", () => {
  test("each rule, with the reason a user reads", () => {
    const table: Array<[string, string | undefined]> = [
      ["main.py", undefined],
      ["lib/umqtt/simple.mpy", undefined],
      ["data/config-v2.json", undefined],
      ["../main.py", "it climbs out of the app (..)"],
      ["lib/../../x.py", "it climbs out of the app (..)"],
      ["/main.py", "it is absolute; paths are relative to the app's folder"],
      ["C:/main.py", "it names a drive; paths are relative to the app's folder"],
      ["lib\\x.py", "it holds a backslash; separate folders with /"],
      ["lib//x.py", "it has an empty folder name (// or a / at the end)"],
      ["lib/", "it has an empty folder name (// or a / at the end)"],
      ["./main.py", "it has a . folder name"],
      ["", "it is empty"],
      [".env", 'its part ".env" starts with a dot (hidden files are not sent)'],
      [
        "main py.py",
        "it holds characters other than ASCII letters, digits, '.', '_', '-' and '/' (boards' filesystems differ on the rest)",
      ],
      [
        "café.py",
        "it holds characters other than ASCII letters, digits, '.', '_', '-' and '/' (boards' filesystems differ on the rest)",
      ],
      [`${"a/".repeat(8)}x.py`, "it is 9 levels deep; the most is 8"],
      [`${"x".repeat(94)}.py`, "it is 97 bytes long; the most is 96"],
      [
        "boot.py",
        "boot.py belongs to the device, not to an app (the loader and the per-device settings stay outside every release); rename it",
      ],
      [
        "Mpota_Config.py",
        "Mpota_Config.py belongs to the device, not to an app (the loader and the per-device settings stay outside every release); rename it",
      ],
      ["lib/boot.py", undefined],
    ];
    for (const [path, reason] of table) assert.equal(appPathProblem(path), reason, path);
  });

  test("the manifest order: lowercased segments, a folder's files right after a same-named file", () => {
    const paths = ["main.py", "lib/x.py", "lib-b.py", "Lib.py", "a.py"];
    assert.deepEqual([...paths].sort(compareAppPaths), ["a.py", "lib/x.py", "lib-b.py", "Lib.py", "main.py"]);
  });
});

describe(".mpy headers", () => {
  const mpy = (version: number, feature: number) => Buffer.from([0x4d, version, feature, 31, 0, 0]);

  test("version, sub-version and architecture from the header's bytes", () => {
    assert.deepEqual(readMpyHeader("a.mpy", mpy(6, 0x03)), { version: 6, subVersion: 3, arch: 0 });
    assert.deepEqual(readMpyHeader("a.mpy", mpy(6, (10 << 2) | 3)), { version: 6, subVersion: 3, arch: 10 });
    assert.deepEqual(readMpyHeader("a.mpy", mpy(6, 0x40 | (9 << 2) | 2)), {
      version: 6,
      subVersion: 2,
      arch: 9,
    });
    assert.throws(() => readMpyHeader("a.mpy", Buffer.from("print(1)\n")), {
      message:
        "a.mpy is not a compiled MicroPython file: a .mpy starts with the letter M and three header bytes. Compile it with mpy-cross, or give it another extension if it is data.",
    });
    assert.throws(
      () => readMpyHeader("a.mpy", mpy(6, 0x80)),
      /feature byte 0x80, which names no architecture/,
    );
  });

  test("files of different versions, native code for two architectures, old versions: refused", () => {
    const h = (path: string, version: number, arch = 0, subVersion = 3) => ({
      path,
      header: { version, arch, subVersion },
    });
    assert.equal(mpyNeed([]), undefined);
    assert.deepEqual(mpyNeed([h("a.mpy", 6), h("b.mpy", 6, 0, 1)]), { version: 6, arch: 0, subVersion: 0 });
    assert.deepEqual(mpyNeed([h("a.mpy", 6), h("n.mpy", 6, 9, 3)]), { version: 6, arch: 9, subVersion: 3 });
    assert.throws(() => mpyNeed([h("a.mpy", 6), h("old.mpy", 5)]), {
      message:
        "The app mixes .mpy versions: a.mpy is version 6, old.mpy is version 5. A board loads only its own version; compile every .mpy with the same mpy-cross.",
    });
    assert.throws(
      () => mpyNeed([h("old.mpy", 5)]),
      /old.mpy is .mpy version 5 \(MicroPython 1.16 to 1.18\); releases take .mpy version 6 only/,
    );
    assert.throws(
      () => mpyNeed([h("x.mpy", 6, 9), h("y.mpy", 6, 10)]),
      /native code for two architectures: x.mpy is xtensa, y.mpy is xtensawin/,
    );
    assert.throws(() => mpyNeed([h("x.mpy", 6, 9, 2), h("y.mpy", 6, 9, 3)]), /two sub-versions/);
  });
});

describe("the signed manifest", () => {
  test("canonical bytes: the same release signs to the same bytes whatever the input order", () => {
    const a = signAppManifest(fields(["main.py", "lib/x.py"]), key);
    const b = signAppManifest(
      fields(["lib/x.py", "main.py"], { boards: ["esp8266", "rp2", "esp8266"] }),
      key,
    );
    assert.ok(a.bytes.equals(b.bytes));
    const text = a.bytes.toString();
    assert.equal(
      text.slice(0, text.indexOf("sig ")),
      `mpota-app/1\nname thermostat\nversion 1.4.0\nboards esp8266 rp2\nmpy -\nfiles 2 15\n${sha("lib/x.py")} 8 lib/x.py\n${sha("main.py")} 7 main.py\n`,
    );
    assert.match(text, /\nsig [0-9a-f]{8} [A-Za-z0-9+/]{342}==\n$/);
    assert.equal(a.id, createHash("sha256").update(a.bytes).digest("hex"));
    const native = signAppManifest(
      fields(["n.mpy"], { boards: ["esp32"], mpy: { version: 6, arch: 10, subVersion: 3 } }),
      key,
    );
    assert.match(native.bytes.toString(), /\nmpy 6 10 3\n/);
  });

  test("verifies with its key; refused with another, after a change, or out of canonical form", () => {
    const m = signAppManifest(fields(["main.py"]), key);
    assert.equal(verifyAppManifest(m.bytes, [key]).id, m.id);
    const other = generateKeyPairSync("rsa", { modulusLength: 2048, publicExponent: 65537 }).privateKey;
    assert.throws(() => verifyAppManifest(m.bytes, [other]), {
      message: `The release thermostat 1.4.0 is signed by key ${m.kid}, which is not trusted here.`,
    });
    const changed = Buffer.from(m.bytes.toString().replace("version 1.4.0", "version 1.4.1"));
    assert.throws(
      () => verifyAppManifest(changed, [key]),
      /does not verify with key [0-9a-f]{8}: the manifest was changed after it was signed/,
    );
    const spaced = Buffer.from(m.bytes.toString().replace("files 1 7", "files 1 07"));
    assert.throws(() => parseAppManifest(spaced), {
      message:
        "The app manifest is damaged: its lines are not in the canonical form (order, spacing or totals differ).",
    });
    assert.throws(() => parseAppManifest(m.bytes.subarray(0, 40)), /does not end with a newline/);
  });

  test("fields a board could not take are refused before signing", () => {
    const refuse = (f: AppManifestFields, message: RegExp) =>
      assert.throws(
        () => signAppManifest(f, key),
        (e: Error) => e instanceof AppReleaseError && message.test(e.message),
      );
    refuse(fields(["main.py", "Main.py"]), /main.py and Main.py differ only in upper and lower case: FAT/);
    refuse(fields(["lib", "lib/x.py"]), /lib is a file, and lib\/x.py needs a folder of that name/);
    refuse(fields(["main.py"], { version: "1.4.0-rc1" }), /use 1 to 4 numbers joined by dots/);
    refuse(fields(["main.py"], { version: "01.4" }), /without leading zeros/);
    refuse(fields(["main.py"], { name: "Thermo stat" }), /The app name "Thermo stat" is not allowed/);
    refuse(
      fields(["main.py"], { boards: ["esp8266", "stm32"] }),
      /Unknown board kind "stm32": name one or more of esp32, esp8266, rp2/,
    );
    refuse(
      fields(["n.mpy"], { boards: ["esp8266", "esp32"], mpy: { version: 6, arch: 9, subVersion: 3 } }),
      /native code for xtensa, which no esp32 board runs/,
    );
    refuse(fields([]), /The app has no files/);
    refuse(
      fields(Array.from({ length: 257 }, (_, i) => `m${i}.py`)),
      /257 files; a release holds at most 256/,
    );
    const e3 = generateKeyPairSync("rsa", { modulusLength: 2048, publicExponent: 3 }).privateKey;
    assert.throws(
      () => signAppManifest(fields(["main.py"]), e3),
      (e: Error) =>
        e instanceof AppKeyError &&
        /exponent 3; boards check app signatures with exponent 65537 only/.test(e.message),
    );
  });
});
