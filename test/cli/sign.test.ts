import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import {
  closeSync,
  constants,
  copyFileSync,
  mkdirSync,
  openSync,
  readFileSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { open } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { decodeDatagram, verifyDatagram, withSeq } from "../../src/protocol/datagram.ts";
import { signImage } from "../../src/protocol/image-packets.ts";
import { decodeOtaFile, encodeOtaFile, recordDatagrams } from "../../src/protocol/ota-file.ts";
import { parsePrivateKeyPem } from "../../src/protocol/rsa-key.ts";
import { listDir, makeTempDir, runCli, runCliProcess, startCliProcess } from "../support/cli.ts";
import { fixturePath, readFixture, readFixtureText } from "../support/fixtures.ts";
import { buildMicroPythonImage } from "../support/images.ts";

const pkcs8 = fixturePath("reference/priv-pkcs8.key");
const pkcs1 = fixturePath("reference/priv-pkcs1.key");
const key = parsePrivateKeyPem(readFixtureText("reference/priv-pkcs8.key"));
const reference = readFixture("reference/firmware.bin.ota");

describe("mpota sign", () => {
  let tmp: ReturnType<typeof makeTempDir>;
  let n = 0;
  /** A fresh folder holding a copy of the reference firmware.bin. */
  const workDir = () => {
    const dir = join(tmp.dir, `w${n++}`);
    mkdirSync(dir);
    copyFileSync(fixturePath("reference/firmware.bin"), join(dir, "firmware.bin"));
    return dir;
  };
  before(() => {
    tmp = makeTempDir();
  });
  after(() => tmp.remove());

  for (const [form, keyFile] of [
    ["PKCS#8", pkcs8],
    ["PKCS#1", pkcs1],
  ] as const) {
    test(`writes FIRMWARE.ota byte-identical to ota_client.py sign (${form} key), and summarises it`, async () => {
      const dir = workDir();
      const r = await runCli(["sign", "--no-preflight", join(dir, "firmware.bin"), "--key", keyFile]);
      assert.equal(r.code, 0, r.stderr);
      const out = join(dir, "firmware.bin.ota");
      assert.deepEqual(readFileSync(out), Buffer.from(reference));
      assert.deepEqual(listDir(dir), ["firmware.bin", "firmware.bin.ota"]);
      const sha1 = Buffer.from(reference.subarray(reference.length - 20)).toString("hex");
      assert.match(r.stdout, /image +1000 bytes/);
      assert.match(r.stdout, /block +256 bytes \(datagrams of up to 340 bytes\)/);
      assert.match(r.stdout, /datagrams +7 \(4 with firmware data, 3 end packets\)/);
      assert.ok(r.stdout.includes(`output     ${out} (1626 bytes)`), r.stdout);
      assert.ok(r.stdout.includes(`sha1       ${sha1}`), r.stdout);
      assert.match(r.stdout, /512-bit key/);
      assert.equal(r.stderr, "firmware checks skipped (--no-preflight)\n");
    });
  }

  test("resolves a relative FIRMWARE and the default ./priv.key against the current folder", async () => {
    const dir = workDir();
    copyFileSync(pkcs1, join(dir, "priv.key"));
    const r = await runCli(["sign", "--no-preflight", "firmware.bin"], { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(readFileSync(join(dir, "firmware.bin.ota")), Buffer.from(reference));
  });

  test("-o names the output; refuses to overwrite it without --force; replaces it with --force", async () => {
    const dir = workDir();
    const out = join(dir, "update.ota");
    writeFileSync(out, "older");
    const refused = await runCli([
      "sign",
      "--no-preflight",
      join(dir, "firmware.bin"),
      "--key",
      pkcs8,
      "-o",
      out,
    ]);
    assert.equal(refused.code, 3);
    assert.match(refused.stderr, /update\.ota already exists.*--force.*-o/s);
    assert.equal(readFileSync(out, "utf8"), "older");
    assert.deepEqual(listDir(dir), ["firmware.bin", "update.ota"]);

    const forced = await runCli([
      "sign",
      "--no-preflight",
      join(dir, "firmware.bin"),
      "--key",
      pkcs8,
      "-o",
      out,
      "--force",
    ]);
    assert.equal(forced.code, 0, forced.stderr);
    assert.deepEqual(readFileSync(out), Buffer.from(reference));
    assert.deepEqual(listDir(dir), ["firmware.bin", "update.ota"]);
  });

  for (const block of [256, 512, 1024]) {
    test(`--block ${block}: a 600 KiB MicroPython image gives a decodable file that carries the image exactly`, async () => {
      const dir = join(tmp.dir, `block-${block}`);
      mkdirSync(dir);
      const image = buildMicroPythonImage({ size: 600 * 1024, seed: block });
      writeFileSync(join(dir, "firmware-ota.bin"), image);
      const r = await runCli([
        "sign",
        "--no-preflight",
        join(dir, "firmware-ota.bin"),
        "--key",
        pkcs8,
        "--block",
        String(block),
      ]);
      assert.equal(r.code, 0, r.stderr);
      const bytes = readFileSync(join(dir, "firmware-ota.bin.ota"));
      // Streamed in 64 KiB reads, it still equals the in-memory encoding.
      const expected = encodeOtaFile(signImage(image, key, block).map((p, i) => withSeq(i + 1, p)));
      assert.ok(Buffer.from(expected).equals(bytes), "same bytes as the protocol layer's encoder");

      const { records, summary } = decodeOtaFile(bytes);
      const dataPackets = Math.ceil(image.length / block);
      assert.equal(summary.blockSize, block);
      assert.equal(summary.imageSize, image.length);
      assert.equal(summary.dataPackets, dataPackets);
      assert.equal(summary.endPackets, 3);
      assert.deepEqual(
        records.map((rec) => rec.seq),
        Array.from({ length: dataPackets + 3 }, (_, i) => i + 1),
      );
      const rebuilt = Buffer.concat(
        recordDatagrams(records).map((d) => {
          const decoded = decodeDatagram(d, 64);
          assert.ok(decoded && verifyDatagram(key, decoded), "every datagram verifies");
          return decoded.data;
        }),
      );
      assert.ok(rebuilt.equals(image));
      assert.match(r.stdout, new RegExp(`block +${block} bytes`));
      assert.match(r.stdout, new RegExp(`datagrams +${dataPackets + 3} `));
    });
  }

  test("an image of 800016 bytes (size word 800000 + MD5) is signed; one byte more is refused", async () => {
    const dir = join(tmp.dir, "limit");
    mkdirSync(dir);
    writeFileSync(join(dir, "max.bin"), new Uint8Array(800_016).fill(0x5a));
    const ok = await runCli(["sign", "--no-preflight", join(dir, "max.bin"), "--key", pkcs8]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(decodeOtaFile(readFileSync(join(dir, "max.bin.ota"))).summary.imageSize, 800_016);

    writeFileSync(join(dir, "big.bin"), new Uint8Array(800_017));
    const big = await runCli(["sign", "--no-preflight", join(dir, "big.bin"), "--key", pkcs8]);
    assert.equal(big.code, 3);
    assert.match(
      big.stderr,
      /big\.bin is 800017 bytes, but boot8266 refuses to boot an app whose size word exceeds 800000/,
    );
    assert.match(big.stderr, /smaller firmware/);
    assert.deepEqual(listDir(dir), ["big.bin", "max.bin", "max.bin.ota"]);
  });

  const bad: Array<{ what: string; args: (dir: string) => string[]; code: number; message: RegExp }> = [
    {
      what: "an empty image",
      args: (dir) => {
        writeFileSync(join(dir, "empty.bin"), "");
        return [join(dir, "empty.bin"), "--key", pkcs8];
      },
      code: 3,
      message: /empty\.bin is empty.*firmware-ota\.bin/,
    },
    {
      what: "a missing image",
      args: (dir) => [join(dir, "nope.bin"), "--key", pkcs8],
      code: 3,
      message: /Firmware file \S+nope\.bin does not exist/,
    },
    {
      what: "a folder as the image",
      args: (dir) => [dir, "--key", pkcs8, "-o", join(dir, "x.ota")],
      code: 3,
      message: /is a directory; give the firmware file/,
    },
    {
      what: "a block size that does not tile 4096",
      args: (dir) => [join(dir, "firmware.bin"), "--key", pkcs8, "--block", "300"],
      code: 2,
      message: /Block size 300 does not tile the receiver's 4096-byte sector.*256/,
    },
    {
      what: "block 0",
      args: (dir) => [join(dir, "firmware.bin"), "--key", pkcs8, "--block", "0"],
      code: 2,
      message: /Block size 0 does not tile/,
    },
    {
      what: "a block size that is not a number",
      args: (dir) => [join(dir, "firmware.bin"), "--key", pkcs8, "--block", "big"],
      code: 2,
      message: /--block must be a whole number/,
    },
    {
      what: "a missing key",
      args: (dir) => [join(dir, "firmware.bin")],
      code: 3,
      message: /Key file \S+priv\.key does not exist.*mpota keys new.*--key/,
    },
    {
      what: "a malformed key",
      args: (dir) => {
        writeFileSync(join(dir, "bad.key"), "not a key\n");
        return [join(dir, "firmware.bin"), "--key", join(dir, "bad.key")];
      },
      code: 4,
      message: /bad\.key is not a PEM key file/,
    },
    {
      what: "a truncated key",
      args: (dir) => {
        writeFileSync(join(dir, "cut.key"), readFixtureText("reference/priv-pkcs8.key").slice(0, 300));
        return [join(dir, "firmware.bin"), "--key", join(dir, "cut.key")];
      },
      code: 4,
      message: /cut\.key looks like PEM but could not be read/,
    },
    {
      what: "a key with exponent 65537",
      args: (dir) => [join(dir, "firmware.bin"), "--key", fixturePath("reference/exp65537.key")],
      code: 4,
      message: /exponent 65537.*only verifies exponent 3/s,
    },
    {
      what: "a public key",
      args: (dir) => [join(dir, "firmware.bin"), "--key", fixturePath("reference/pub.key")],
      code: 4,
      message: /holds only a public key; signing needs the private key/,
    },
    {
      what: "an output folder that does not exist",
      args: (dir) => [join(dir, "firmware.bin"), "--key", pkcs8, "-o", join(dir, "no", "such", "x.ota")],
      code: 3,
      message: /the folder \S+such does not exist/,
    },
    {
      what: "an output that is a folder",
      args: (dir) => {
        mkdirSync(join(dir, "out"));
        return [join(dir, "firmware.bin"), "--key", pkcs8, "-o", join(dir, "out"), "--force"];
      },
      code: 3,
      message: /out is a directory; give a file name/,
    },
    {
      what: "an output that is the firmware itself",
      args: (dir) => [join(dir, "firmware.bin"), "--key", pkcs8, "-o", join(dir, "firmware.bin"), "--force"],
      code: 2,
      message: /would replace the firmware .* itself/,
    },
    {
      what: "no firmware argument",
      args: () => ["--key", pkcs8],
      code: 2,
      message: /missing required argument 'firmware'/,
    },
  ];
  for (const c of bad) {
    test(`refuses ${c.what} (exit ${c.code}) and leaves no file behind`, async () => {
      const dir = workDir();
      const args = c.args(dir);
      const before = listDir(dir);
      const firmwareBefore = readFileSync(join(dir, "firmware.bin"));
      const r = await runCli(["sign", "--no-preflight", ...args], { cwd: dir });
      assert.equal(r.code, c.code, r.stderr);
      assert.match(r.stderr, c.message);
      assert.equal(r.stdout, "");
      assert.deepEqual(listDir(dir), before);
      assert.deepEqual(readFileSync(join(dir, "firmware.bin")), firmwareBefore);
    });
  }
});

describe("mpota sign, as a real process", () => {
  let tmp: ReturnType<typeof makeTempDir>;
  before(() => {
    tmp = makeTempDir();
  });
  after(() => tmp.remove());

  test("--help lists the commands, and every command has --help", async () => {
    const top = await runCliProcess(["--help"]);
    assert.equal(top.code, 0, top.stderr);
    for (const command of ["keys", "config-h", "sign"])
      assert.match(top.stdout, new RegExp(`\\n  ${command}\\b`));
    const help = await runCliProcess(["sign", "--help"]);
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, /Usage: mpota sign \[options\] <firmware>/);
    for (const option of ["--key", "--block", "--output", "--force"]) assert.ok(help.stdout.includes(option));
  });

  test("exit 0 with the reference bytes; exit 3 for a missing key; exit 3 for an empty image", async () => {
    const dir = join(tmp.dir, "codes");
    mkdirSync(dir);
    copyFileSync(fixturePath("reference/firmware.bin"), join(dir, "firmware.bin"));
    const ok = await runCliProcess(["sign", "--no-preflight", "firmware.bin", "--key", pkcs1], { cwd: dir });
    assert.equal(ok.code, 0, ok.stderr);
    assert.deepEqual(readFileSync(join(dir, "firmware.bin.ota")), Buffer.from(reference));
    const noKey = await runCliProcess(["sign", "--no-preflight", "firmware.bin", "-o", "other.ota"], {
      cwd: dir,
    });
    assert.equal(noKey.code, 3);
    assert.match(noKey.stderr, /^mpota: Key file .*priv\.key does not exist/);
    writeFileSync(join(dir, "empty.bin"), "");
    const empty = await runCliProcess(["sign", "--no-preflight", "empty.bin", "--key", pkcs1], { cwd: dir });
    assert.equal(empty.code, 3);
    assert.deepEqual(listDir(dir), ["empty.bin", "firmware.bin", "firmware.bin.ota"]);
  });

  /**
   * A named pipe the test writes firmware into, as a shell's `<(...)` would
   * hand it to mpota. Writing starts once the command has opened the pipe.
   * Call `close()` after the command has ended.
   */
  function firmwarePipe(name: string) {
    const path = join(tmp.dir, name);
    const made = spawnSync("mkfifo", [path]);
    assert.equal(made.status, 0, String(made.stderr));
    // Resolves when the command opens the pipe for reading.
    const opening = open(path, constants.O_WRONLY);
    let closed = false;
    let writing: Promise<unknown> = opening;
    return {
      path,
      write(data: Uint8Array, end: boolean) {
        writing = writing
          .then(async () => {
            const handle = await opening;
            if (closed) return;
            await handle.write(data);
            if (end) await handle.close();
          })
          .catch(() => undefined); // EPIPE once the command stops reading
      },
      async close() {
        closed = true;
        // If the command never opened the pipe, be its reader so the pending open returns.
        const reader = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
        try {
          await writing;
          await (await opening).close().catch(() => undefined);
        } finally {
          closeSync(reader);
        }
      },
    };
  }

  test("signs from a pipe byte-identically", async () => {
    const dir = join(tmp.dir, "pipe");
    mkdirSync(dir);
    const pipe = firmwarePipe("fifo-ok");
    const child = startCliProcess(["sign", pipe.path, "--key", pkcs8, "-o", "fw.ota"], { cwd: dir });
    pipe.write(readFixture("reference/firmware.bin"), true);
    const r = await child.done;
    await pipe.close();
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(readFileSync(join(dir, "fw.ota")), Buffer.from(reference));
  });

  for (const [what, size, message] of [
    ["an empty", 0, /is empty/],
    ["an oversized", 900_000, /is more than 800016 bytes, but boot8266 refuses/],
  ] as const) {
    test(`${what} pipe is refused part-way, and the partial output is removed`, async () => {
      const dir = join(tmp.dir, `pipe-${size}`);
      mkdirSync(dir);
      const pipe = firmwarePipe(`fifo-${size}`);
      const child = startCliProcess(["sign", pipe.path, "--key", pkcs8, "-o", "fw.ota"], { cwd: dir });
      pipe.write(new Uint8Array(size), true);
      const r = await child.done;
      await pipe.close();
      assert.equal(r.code, 3, r.stderr);
      assert.match(r.stderr, message);
      assert.deepEqual(listDir(dir), []);
    });
  }

  test("interrupted with Ctrl-C part-way, it leaves neither the output nor its temp file", {
    timeout: 30_000,
  }, async () => {
    const dir = join(tmp.dir, "interrupt");
    mkdirSync(dir);
    const pipe = firmwarePipe("fifo-interrupt");
    const child = startCliProcess(["sign", pipe.path, "--key", pkcs8, "-o", "fw.ota"], { cwd: dir });
    // 100 KB of firmware arrive, then the pipe stays open: sign waits for more.
    pipe.write(new Uint8Array(100_000), false);
    let ended = false;
    void child.done.then(() => {
      ended = true;
    });
    // Wait until signed datagrams have reached the temp file.
    let temp: string | undefined;
    while (temp === undefined) {
      assert.equal(ended, false, "sign ended before it was interrupted");
      temp = listDir(dir).find((name) => name.endsWith(".tmp") && statSync(join(dir, name)).size > 0);
      if (temp === undefined) await sleep(10);
    }
    assert.match(temp, /^\.fw\.ota\.[0-9a-f]+\.tmp$/);
    child.kill("SIGINT");
    const result = await child.done;
    await pipe.close();
    assert.equal(result.signal, "SIGINT");
    assert.deepEqual(listDir(dir), []);
  });
});
