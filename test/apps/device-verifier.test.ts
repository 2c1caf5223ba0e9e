import assert from "node:assert/strict";
import { constants, createHash, generateKeyPairSync, type KeyObject, sign } from "node:crypto";
import { before, describe, test } from "node:test";
import { appKeyModulus } from "../../src/apps/app-key.ts";
import type { AppManifestFields } from "../../src/apps/app-manifest.ts";
import { signAppManifest } from "../../src/apps/app-signature.ts";
import { commandKeyId } from "../../src/protocol/command-key-facts.ts";
import { BOARD_MPY, Board, py } from "./micropython.ts";

// device/mpota_app.py under real MicroPython (wasm, v1.27): a release made
// by the host's code is taken, and every attack is refused with its reason,
// the files it concerns left off the board's filesystem.

const rsa = () => generateKeyPairSync("rsa", { modulusLength: 2048, publicExponent: 65537 }).privateKey;
const trusted = rsa();
const other = rsa();
const hex = (key: KeyObject) => appKeyModulus(key, "test key").toString("hex");
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

const FILES: Record<string, Buffer> = {
  "main.py": Buffer.from("import sensor\nsensor.run()\n"),
  "sensor.py": Buffer.from(`def run():\n    print("21.5 C")\n${"# padding\n".repeat(300)}`),
  "lib/util.py": Buffer.from("X = 1\n"),
};

function fields(over: Partial<AppManifestFields> = {}): AppManifestFields {
  return {
    name: "thermostat",
    version: "1.4.0",
    boards: ["esp8266", "esp32", "rp2"],
    mpy: undefined,
    files: Object.entries(FILES).map(([path, bytes]) => ({ path, size: bytes.length, sha256: sha(bytes) })),
    ...over,
  };
}

/** A manifest signed over arbitrary lines: what the host would never sign, but a stolen signer might. */
function rawManifest(lines: string[], key: KeyObject = trusted): Buffer {
  const body = Buffer.from(`${lines.join("\n")}\n`);
  const sig = sign("sha256", body, { key, padding: constants.RSA_PKCS1_PADDING }).toString("base64");
  return Buffer.concat([body, Buffer.from(`sig ${commandKeyId(appKeyModulus(key, "k"))} ${sig}\n`)]);
}

function lines(paths: string[]): string[] {
  const files = paths.map((p) => `${sha(Buffer.from(p))} ${p.length} ${p}`);
  const total = paths.reduce((s, p) => s + p.length, 0);
  return [
    "mpota-app/1",
    "name thermostat",
    "version 1.4.0",
    "boards esp8266",
    "mpy -",
    `files ${paths.length} ${total}`,
    ...files,
  ];
}

let board: Board;
const KEYS = () => `[${py(hex(other))}, ${py(hex(trusted))}]`;

/** Runs mpota_app.check on the manifest at /stage/manifest; "ok (...)" or "refused: reason". */
function check(manifest: Buffer, args = "", platform = "esp8266", boardMpy?: string): string {
  board.write("/stage/manifest", manifest);
  const mpy = boardMpy ?? BOARD_MPY[platform as keyof typeof BOARD_MPY];
  const out = board.run(`try:
    print("ok", mpota_app.check("/stage/manifest", ${KEYS()}, platform=${py(platform)}, mpy=${mpy}${args}))
except mpota_app.AppError as e:
    print("refused:", e)`);
  return out.join("\n");
}

before(async () => {
  board = await Board.start();
});

describe("device/mpota_app.py takes a release made by mpota", () => {
  test("the manifest verifies, and each file is received through a small buffer, byte for byte", () => {
    const manifest = signAppManifest(fields(), trusted).bytes;
    assert.equal(
      check(manifest, ', installed="1.3.9"'),
      `ok ('thermostat', '1.4.0', 3, ${manifest.length > 0 ? fields().files.reduce((s, f) => s + f.size, 0) : 0})`,
    );
    for (const [path, bytes] of Object.entries(FILES)) board.write(`/incoming/${path}`, bytes);
    const out = board.run(`import os
buf = bytearray(64)
for digest, size, path in mpota_app.files("/stage/manifest"):
    d = "/stage/new"
    try:
        os.mkdir(d)
    except OSError:
        pass
    for part in path.split("/")[:-1]:
        d += "/" + part
        try:
            os.mkdir(d)
        except OSError:
            pass
    with open("/incoming/" + path, "rb") as src:
        mpota_app.pull(src, mpota_app.Receiver("/stage/new/" + path, size, digest, path), buf)
    print("took", path, size)`);
    assert.deepEqual(out, [
      "took lib/util.py 6",
      `took main.py ${FILES["main.py"]?.length}`,
      `took sensor.py ${FILES["sensor.py"]?.length}`,
    ]);
    for (const [path, bytes] of Object.entries(FILES))
      assert.deepEqual(board.read(`/stage/new/${path}`), bytes, path);
  });

  test("the board's own .mpy version and architecture decide", () => {
    const bytecode = signAppManifest(fields({ mpy: { version: 6, arch: 0, subVersion: 0 } }), trusted).bytes;
    assert.match(check(bytecode, "", "rp2"), /^ok /);
    const esp32 = signAppManifest(
      fields({ boards: ["esp32"], mpy: { version: 6, arch: 10, subVersion: 3 } }),
      trusted,
    ).bytes;
    assert.match(check(esp32, "", "esp32"), /^ok /);
    assert.equal(
      check(esp32, "", "esp32", "0x2706"),
      "refused: thermostat 1.4.0: native code for architecture 10.3; this board is 9.3",
    );
    assert.equal(
      check(bytecode, "", "esp8266", "0x2705"),
      "refused: thermostat 1.4.0: .mpy version 6; this board loads version 5",
    );
    assert.equal(
      check(bytecode, "", "esp8266", "None"),
      "refused: thermostat 1.4.0: this firmware does not report its .mpy version",
    );
  });
});

describe("device/mpota_app.py refuses attacks, each with its reason", () => {
  const good = () => signAppManifest(fields(), trusted).bytes;

  test("a manifest changed after signing (a size, a digest, a path, a version)", () => {
    const text = good().toString("latin1");
    const size = FILES["main.py"]?.length as number;
    for (const [from, to] of [
      [` ${size} main.py`, ` ${size + 1} main.py`],
      [sha(FILES["main.py"] as Buffer).slice(0, 8), "00000000"],
      ["lib/util.py", "lib/evil.py"],
      ["version 1.4.0", "version 9.4.0"],
    ] as const) {
      assert.ok(text.includes(from), from);
      const tampered = Buffer.from(text.replace(from, to), "latin1");
      assert.match(
        check(tampered),
        /^refused: manifest: the signature does not verify with key [0-9a-f]{8} \(changed after signing\?\)$/,
        to,
      );
    }
  });

  test("a manifest signed by another key, by no key, or cut short", () => {
    const foreign = signAppManifest(fields(), rsa()).bytes;
    const kid = commandKeyId(appKeyModulus(rsa(), "k"));
    assert.match(
      check(foreign),
      /^refused: manifest: signed by key [0-9a-f]{8}, which this board does not trust$/,
    );
    assert.notEqual(kid, "");
    const text = good().toString("latin1");
    const unsigned = Buffer.from(text.slice(0, text.indexOf("sig ")), "latin1");
    assert.equal(check(unsigned), "refused: manifest: no signature (cut short?)");
    assert.equal(
      check(good().subarray(0, good().length - 10)),
      "refused: manifest: a line is too long or cut short",
    );
    const extra = Buffer.concat([good(), Buffer.from(`${"0".repeat(64)} 1 x.py\n`)]);
    assert.equal(check(extra), "refused: manifest: lines after the signature");
    assert.equal(check(Buffer.from('{"urls": []}\n')), "refused: manifest: not an mpota app manifest");
  });

  test("a signature over a 2048-bit key checked by another trusted key's modulus fails", () => {
    // Same kid cannot be forged cheaply; a signature with bits flipped must not pass.
    const text = good().toString("latin1");
    const at = text.indexOf("sig ") + 20;
    const flipped = text.slice(0, at) + (text[at] === "A" ? "B" : "A") + text.slice(at + 1);
    assert.match(check(Buffer.from(flipped, "latin1")), /^refused: manifest: the signature does not verify/);
  });

  test("paths that escape the app or clash, even when properly signed", () => {
    const cases: Array<[string[], string]> = [
      [["../boot.py"], "the path ../boot.py is refused: it climbs out of the app"],
      [["lib/../../x.py"], "the path lib/../../x.py is refused: it climbs out of the app"],
      [["/main.py"], "the path /main.py is refused: it is absolute or holds a backslash"],
      [["lib\\x.py"], "the path lib\\x.py is refused: it is absolute or holds a backslash"],
      [["lib//x.py"], "the path lib//x.py is refused: it has an empty or hidden part"],
      [[".hidden"], "the path .hidden is refused: it has an empty or hidden part"],
      [["boot.py"], "the path boot.py is refused: it belongs to the device, not to an app"],
      [["MPOTA_CONFIG.py"], "the path MPOTA_CONFIG.py is refused: it belongs to the device, not to an app"],
      [["a b.py"], "a malformed file line"],
      [["main.py", "main.py"], "the path main.py is refused: out of order or listed twice"],
      [["Main.py", "main.py"], "the path main.py is refused: out of order or listed twice"],
      [["lib", "lib/x.py"], "the path lib/x.py is refused: a file of that name is listed"],
      [[`${"d/".repeat(8)}x.py`], "the path d/d/d/d/d/d/d/d/x.py is refused: it is more than 8 levels deep"],
    ];
    for (const [paths, reason] of cases) {
      assert.equal(check(rawManifest(lines(paths))), `refused: manifest: ${reason}`, paths.join(" "));
    }
    assert.match(check(rawManifest(lines(["lib/x.py", "main.py"]))), /^ok /);
  });

  test("a bad name or version, a files line that does not add up, a manifest over its size limit", () => {
    const l = lines(["main.py"]);
    const named = lines(["main.py"]);
    named[1] = "name ../etc";
    assert.equal(check(rawManifest(named)), "refused: manifest: no valid name or version");
    named[1] = "name thermostat";
    named[2] = "version 1.4.0-rc1";
    assert.equal(check(rawManifest(named)), "refused: manifest: no valid name or version");
    l[5] = "files 1 999";
    assert.equal(check(rawManifest(l)), "refused: manifest: the files line does not match the files listed");
    const big = lines(
      Array.from({ length: 700 }, (_, i) => `${"m".repeat(80)}${String(i).padStart(3, "0")}.py`),
    );
    assert.equal(check(rawManifest(big)), "refused: manifest: larger than 65536 bytes");
  });

  test("a file whose bytes differ from the manifest, or run long or short, is discarded", () => {
    const digest = sha(FILES["main.py"] as Buffer);
    const size = FILES["main.py"]?.length as number;
    const receive = (data: Buffer) => {
      board.write("/incoming/main.py", data);
      return board.run(`try:
    with open("/incoming/main.py", "rb") as src:
        mpota_app.pull(src, mpota_app.Receiver("/stage/main.py", ${size}, ${py(digest)}, "main.py"), bytearray(16))
    print("kept")
except mpota_app.AppError as e:
    print("refused:", e)`);
    };
    const evil = Buffer.from(FILES["main.py"] as Buffer);
    evil[3] = 0x21;
    assert.deepEqual(receive(evil), ["refused: main.py: its SHA-256 differs from the manifest's; discarded"]);
    assert.equal(board.read("/stage/main.py"), undefined, "the file is removed");
    assert.deepEqual(receive(evil.subarray(0, 10)), [
      `refused: main.py: 10 of its ${size} bytes arrived; discarded`,
    ]);
    assert.equal(board.read("/stage/main.py"), undefined);
    const out = board.run(`r = mpota_app.Receiver("/stage/main.py", 4, ${py(digest)}, "main.py")
try:
    r.write(b"abc")
    r.write(b"de")
except mpota_app.AppError as e:
    print("refused:", e)`);
    assert.deepEqual(out, ["refused: main.py: more than the 4 bytes expected; discarded"]);
    assert.equal(board.read("/stage/main.py"), undefined);
    const manifest = board.run(`r = mpota_app.Receiver("/stage/manifest.new", 100, None, "the manifest")
r.write(b"m" * 60)
try:
    r.write(b"m" * 60)
except mpota_app.AppError as e:
    print("refused:", e)`);
    assert.deepEqual(manifest, ["refused: the manifest: more than the 100 bytes expected; discarded"]);
    assert.equal(board.read("/stage/manifest.new"), undefined);
    assert.deepEqual(receive(FILES["main.py"] as Buffer), ["kept"]);
    assert.deepEqual(board.read("/stage/main.py"), FILES["main.py"]);
  });

  test("a downgrade is refused unless the owner allowed it; another board kind is refused", () => {
    const m = good();
    assert.equal(
      check(m, ', installed="1.10.0"'),
      "refused: thermostat 1.4.0 is older than the installed 1.10.0: a downgrade needs the owner's consent",
    );
    assert.match(check(m, ', installed="1.10.0", down=True'), /^ok /);
    assert.match(check(m, ', installed="1.4"'), /^ok /, "the same version again is no downgrade");
    const esp32only = signAppManifest(fields({ boards: ["esp32"] }), trusted).bytes;
    assert.equal(check(esp32only), "refused: thermostat 1.4.0 is for boards esp32; this board is esp8266");
  });

  test("heap: what the module keeps after import and what one check allocates", (t) => {
    const manifest = good();
    board.write("/stage/manifest", manifest);
    const sig = manifest.toString("latin1").trim().split("\n").at(-1)?.split(" ")[2] as string;
    const [resident] = board.run(`import gc, sys
del sys.modules["mpota_app"]
gc.collect()
a = gc.mem_alloc()
import mpota_app
gc.collect()
print(gc.mem_alloc() - a)`);
    const allocated = (code: string) =>
      Number(
        board.run(
          `gc.collect()\ngc.disable()\na = gc.mem_alloc()\n${code}\nprint(gc.mem_alloc() - a)\ngc.enable()`,
        )[0],
      );
    const check = allocated(
      `mpota_app.check("/stage/manifest", [${py(hex(trusted))}], platform="esp8266", mpy=${BOARD_MPY.esp8266})`,
    );
    // This wasm build's binascii is micropython-lib's pure-Python module; the
    // boards' is C. Its base64 decoding and re-encoding of the signature (the canonical-form check) are counted apart.
    const base64 = allocated(
      `from binascii import a2b_base64, b2a_base64\nb2a_base64(a2b_base64(${py(sig)}.encode()))`,
    );
    t.diagnostic(
      `mpota_app: ${resident} bytes of heap after import; one check of a 3-file manifest allocates ${check - base64} bytes in all (plus ${base64} for the wasm build's pure-Python base64)`,
    );
    assert.ok(Number(resident) < 9216, `keeps under 9 KiB after import (${resident})`);
    assert.ok(
      check - base64 < 40_960,
      `one check allocates under 40 KiB in all, reclaimed by the collector (${check - base64})`,
    );
  });
});
