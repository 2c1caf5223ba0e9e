import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { chmodSync, closeSync, copyFileSync, mkdirSync, openSync, writeFileSync } from "node:fs";
import { networkInterfaces } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { binPath, makeTempDir, runCliProcess } from "../support/cli.ts";
import { fixturePath } from "../support/fixtures.ts";
import { buildMicroPythonImage } from "../support/images.ts";
import { linkedImage } from "../support/linked-image.ts";

// Real processes (bin/mpota.js on the built dist/): what a user sees for
// inputs that used to end in an internal error or a wrong message.

const tmp = makeTempDir("mpota-guards-");
const file = (name: string) => join(tmp.dir, name);
before(() => {
  writeFileSync(file("firmware-ota.bin"), buildMicroPythonImage({ size: 300 * 1024, seed: 9 }));
  copyFileSync(fixturePath("reference/priv-pkcs1.key"), file("priv.key"));
  // A sparse 1.9 GB file: nothing on disk, but its size is what a reader would face.
  const fd = openSync(file("huge.bin"), "w");
  closeSync(fd);
  spawnSync("truncate", ["-s", String(1900 * 1024 * 1024), file("huge.bin")]);
});
after(() => tmp.remove());

function assertNoInternalError(stderr: string): void {
  assert.doesNotMatch(stderr, /unexpected error|please report it|ERR_SOCKET|at .*\.js:\d+/);
}

/** The broadcast address of the first IPv4 network this machine is on (not loopback), if any. */
function ownDirectedBroadcast(): string | undefined {
  for (const list of Object.values(networkInterfaces())) {
    for (const e of list ?? []) {
      if (e.family !== "IPv4" || e.internal) continue;
      const a = e.address.split(".").map(Number);
      const m = e.netmask.split(".").map(Number);
      if (m[3] === 255 || m[3] === 254) continue; // /31, /32: no broadcast
      return a.map((x, i) => (x & (m[i] as number)) | (~(m[i] as number) & 255)).join(".");
    }
  }
  return undefined;
}

describe("mpota push: only one device's unicast address", () => {
  const cases: Array<[string, RegExp]> = [
    ["255.255.255.255", /255\.255\.255\.255 is the broadcast address: every device on the local network/],
    ["127.255.255.255", /broadcast address of the loopback network 127\.0\.0\.0\/8/],
    ["224.0.0.1", /224\.0\.0\.1 is a multicast address/],
    ["0.0.0.0", /0\.0\.0\.0 is the unspecified address/],
    ["ff02::1", /ff02::1 is a multicast address/],
    ["nosuchhost.invalid", /Cannot push to nosuchhost\.invalid: the name does not resolve/],
  ];
  const own = ownDirectedBroadcast();
  if (own !== undefined) cases.push([own, /broadcast address of this machine's network .* \(interface /]);
  for (const [target, message] of cases) {
    test(`--to ${target}: exit 33 before anything is sent`, async () => {
      const r = await runCliProcess(["push", "firmware-ota.bin", "--to", target, "--wait", "1"], {
        cwd: tmp.dir,
      });
      assert.equal(r.code, 33, r.stderr);
      assert.match(r.stderr, message);
      assert.match(
        r.stderr,
        /give that device's own IP address|Check the spelling, or give the device's IP address/,
      );
      assert.doesNotMatch(r.stderr, /pushing|waiting for/);
      assertNoInternalError(r.stderr);
    });
  }
});

describe("mpota push --to with a port in it", () => {
  for (const [target, fix] of [
    ["127.0.0.57:8266", "--to 127.0.0.57 --port 8266"],
    ["127.0.0.57:99999", "--to 127.0.0.57 --port 99999"],
    ["esp-kitchen.local:8266", "--to esp-kitchen.local --port 8266"],
    ["[fe80::1]:8266", "--to fe80::1 --port 8266"],
  ] as const) {
    test(`--to ${target}: exit 2 naming --port, not "does not resolve"`, async () => {
      const r = await runCliProcess(["push", "firmware-ota.bin", "--to", target, "--wait", "1"], {
        cwd: tmp.dir,
      });
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /--to takes an address without a port/);
      assert.ok(r.stderr.includes(`use ${fix}`), r.stderr);
      assert.doesNotMatch(r.stderr, /does not resolve|pushing|waiting for/);
      assertNoInternalError(r.stderr);
    });
  }
});

describe("mpota emulate --bind that is not an address of this machine", () => {
  test("--bind 127.0.0.60:8266: exit 2 naming --port, not an internal error", async () => {
    const r = await runCliProcess(
      ["emulate", "--key", "priv.key", "--bind", "127.0.0.60:8266", "--no-console"],
      {
        cwd: tmp.dir,
      },
    );
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /--bind takes an address without a port: use --bind 127\.0\.0\.60 --port 8266/);
    assertNoInternalError(r.stderr);
  });

  test("--bind nosuchhost.invalid: exit 7 saying it does not resolve and what to give", async () => {
    const r = await runCliProcess(
      ["emulate", "--key", "priv.key", "--bind", "nosuchhost.invalid", "--no-console"],
      {
        cwd: tmp.dir,
      },
    );
    assert.equal(r.code, 7, r.stderr);
    assert.match(
      r.stderr,
      /--bind nosuchhost\.invalid does not resolve to an address: give one of this machine's addresses/,
    );
    assertNoInternalError(r.stderr);
  });
});

describe("mpota serve on an address that is not this machine's", () => {
  // 192.0.2.7 is TEST-NET-1 (RFC 5737): never configured on a machine.
  for (const [option, code, words] of [
    [
      "--mqtt-host",
      21,
      /cannot listen on 192\.0\.2\.7:0: 192\.0\.2\.7 is not an address of this machine\. Give one of its addresses with --mqtt-host, or 0\.0\.0\.0/,
    ],
    [
      "--http-host",
      29,
      /cannot listen on 192\.0\.2\.7:0: 192\.0\.2\.7 is not an address of this machine\. Give one of its addresses with --http-host/,
    ],
  ] as const) {
    test(`${option} 192.0.2.7: exit ${code} naming ${option}`, async () => {
      const args = ["serve", "--data", file(`data-${option.slice(2)}`), "--mqtt-host", "127.0.0.1"];
      args.push("--mqtt-port", "0", "--http-port", "0", option, "192.0.2.7");
      const r = await runCliProcess(args, { cwd: tmp.dir });
      assert.equal(r.code, code, r.stderr);
      assert.match(r.stderr, words);
      assert.doesNotMatch(r.stderr, /EADDRNOTAVAIL|Pick another with --http-port/);
      assertNoInternalError(r.stderr);
    });
  }
});

describe("files larger than any flash are refused from their size", () => {
  for (const args of [
    ["check", "huge.bin", "--flash-size", "1M"],
    ["inspect", "huge.bin"],
    ["sign", "huge.bin", "-o", "huge.ota"],
    ["push", "huge.bin", "--to", "127.0.0.1"],
    ["firmware", "add", "huge.bin", "--name", "x", "--version", "1"],
  ]) {
    test(`mpota ${args.join(" ")}: exit 13 at once, without reading it`, async () => {
      const started = Date.now();
      const r = await runCliProcess(args, { cwd: tmp.dir });
      const seconds = (Date.now() - started) / 1000;
      assert.equal(r.code, 13, r.stderr);
      assert.match(
        r.stderr,
        /huge\.bin is 1,992,294,400 bytes \(1900\.00 MiB\), larger than the largest flash of any ESP8266 board \(16 MiB\), so it cannot be a firmware image/,
      );
      assertNoInternalError(r.stderr);
      // Reading it took 38 s and 3.96 GB before; a refusal from fstat is a process start.
      assert.ok(seconds < 10, `took ${seconds} s`);
    });
  }

  test("a file just over 16 MiB is refused; inspect still reads a 4 MiB flash dump", async () => {
    writeFileSync(file("dump-4m.bin"), new Uint8Array(4 * 1024 * 1024).fill(0xff));
    const small = await runCliProcess(["inspect", "dump-4m.bin"], { cwd: tmp.dir });
    assert.notEqual(small.code, 13, small.stderr);
    assertNoInternalError(small.stderr);
    writeFileSync(file("over.bin"), new Uint8Array(16 * 1024 * 1024 + 1));
    const over = await runCliProcess(["check", "over.bin", "--flash-size", "1M"], { cwd: tmp.dir });
    assert.equal(over.code, 13, over.stderr);
    assert.match(
      over.stderr,
      /over\.bin is 16,777,217 bytes \(16\.00 MiB\), larger than the largest flash of any ESP8266 board \(16 MiB\)/,
    );
  });
});

/** Runs bin/mpota.js with its stdout (or stderr) closed by the reader before it writes. */
function withClosedPipe(
  args: string[],
  which: "stdout" | "stderr",
): Promise<{ code: number | null; other: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [binPath, ...args], {
      cwd: tmp.dir,
      stdio: ["ignore", "pipe", "pipe"],
    });
    child[which].destroy();
    let other = "";
    child[which === "stdout" ? "stderr" : "stdout"].on("data", (d: Buffer) => {
      other += d.toString();
    });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, other }));
  });
}

describe("a closed pipe ends the CLI quietly", () => {
  for (const args of [["serve", "--help"], ["--help"], ["inspect", "firmware-ota.bin"], ["keys", "--help"]]) {
    test(`mpota ${args.join(" ")} | head -1: status 141, nothing on stderr`, async () => {
      const r = await withClosedPipe(args, "stdout");
      assert.equal(r.code, 141);
      assert.equal(r.other, "");
    });
  }
  test("stderr closed: the error cannot be said, the process still ends quietly", async () => {
    const r = await withClosedPipe(["push", "firmware-ota.bin", "--to", "255.255.255.255"], "stderr");
    assert.equal(r.code, 141);
    assert.equal(r.other, "");
  });
});

describe("a data directory mpota cannot write", () => {
  // Root writes anywhere, so the commands run as nobody (setpriv) when the tests run as root.
  const asOtherUser = process.getuid?.() === 0;
  const run = (args: string[]) =>
    asOtherUser
      ? new Promise<{ code: number | null; stderr: string }>((resolve) => {
          const child = spawn(
            "setpriv",
            ["--reuid=65534", "--regid=65534", "--clear-groups", process.execPath, binPath, ...args],
            {
              cwd: "/",
              stdio: ["ignore", "ignore", "pipe"],
            },
          );
          let stderr = "";
          child.stderr.on("data", (d: Buffer) => {
            stderr += d.toString();
          });
          child.on("close", (code) => resolve({ code, stderr }));
        })
      : runCliProcess(args).then((r) => ({ code: r.code, stderr: r.stderr }));

  test("serve, db migrate and token rotate: exit 24 naming the directory and the cause", async () => {
    const data = file("locked-data");
    mkdirSync(data, { recursive: true });
    chmodSync(tmp.dir, 0o755);
    chmodSync(data, 0o555);
    for (const args of [
      ["serve", "--data", data, "--http-port", "0"],
      ["db", "migrate", "--data", data],
      ["token", "rotate", "--data", data],
    ]) {
      const r = await run(args);
      assert.equal(r.code, 24, `${args.join(" ")}: ${r.stderr}`);
      assert.match(
        r.stderr,
        new RegExp(`The data directory ${data} is not writable by this user \\(uid \\d+\\): EACCES`),
      );
      assert.match(r.stderr, /chown or chmod|pass --data DIR with a writable directory/);
      assert.doesNotMatch(r.stderr, /damaged|move it away/);
      assertNoInternalError(r.stderr);
    }
  });
});

describe("a database file or firmware directory mpota cannot write", () => {
  test("exit 24 names the file, then the firmware directory", async () => {
    const data = file("data-ro-db");
    mkdirSync(data, { recursive: true });
    const made = await runCliProcess(["db", "migrate", "--data", data]);
    assert.equal(made.code, 0, made.stderr);
    chmodSync(tmp.dir, 0o755);
    chmodSync(data, 0o777);
    chmodSync(join(data, "mpota.db"), 0o444);
    const asNobody =
      process.getuid?.() === 0 ? ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] : [];
    const run = (args: string[]) => {
      const [cmd, ...rest] = [...asNobody, process.execPath, binPath, ...args] as [string, ...string[]];
      const r = spawnSync(cmd, rest, { cwd: "/", encoding: "utf8" });
      return { code: r.status, stderr: r.stderr };
    };
    const db = run(["db", "migrate", "--data", data]);
    assert.equal(db.code, 24, db.stderr);
    assert.match(
      db.stderr,
      new RegExp(`The database file ${join(data, "mpota.db")} is not writable by this user`),
    );
    chmodSync(join(data, "mpota.db"), 0o666);
    mkdirSync(join(data, "firmware"), { mode: 0o555 });
    chmodSync(join(data, "firmware"), 0o555);
    const fw = run(["serve", "--data", data, "--http-port", "0"]);
    assert.equal(fw.code, 24, fw.stderr);
    assert.match(
      fw.stderr,
      new RegExp(`The firmware directory ${join(data, "firmware")} is not writable by this user`),
    );
    assert.match(fw.stderr, /or pass --firmware-dir DIR with a writable directory/);
    assertNoInternalError(`${db.stderr}${fw.stderr}`);
  });
});

describe("sign and push with a key size keys new does not make", () => {
  test("a 4096-bit exponent-3 key: signed, with the warning about 788-byte datagrams", async () => {
    const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 4096, publicExponent: 3 });
    writeFileSync(file("k4096.key"), privateKey.export({ type: "pkcs1", format: "pem" }));
    const r = await runCliProcess(["sign", "firmware-ota.bin", "--key", "k4096.key", "-o", "fw4096.ota"], {
      cwd: tmp.dir,
    });
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stderr,
      /warning: this is a 4096-bit key, a size `mpota keys new` does not make \(512, 1024 or 2048 bits\): each 256-byte block travels in a datagram of 788 bytes, above the ~548 bytes some networks were seen to drop/,
    );
    const p = await runCliProcess(
      ["push", "firmware-ota.bin", "--key", "k4096.key", "--to", "255.255.255.255"],
      { cwd: tmp.dir },
    );
    assert.equal(p.code, 33); // the target is checked first, before the key
    const q = await runCliProcess(
      ["push", "firmware-ota.bin", "--key", "k4096.key", "--to", "127.0.0.1", "--port", "9", "--wait", "1"],
      {
        cwd: tmp.dir,
      },
    );
    assert.match(q.stderr, /warning: this is a 4096-bit key/);
    const plain = await runCliProcess(["sign", "firmware-ota.bin", "-o", "fw512.ota"], { cwd: tmp.dir });
    assert.equal(plain.code, 0, plain.stderr);
    assert.doesNotMatch(plain.stderr, /warning: this is a/);
  });
});

describe("the MAIN_APP_OFFSET heuristic refuses only on strong evidence", () => {
  test("few references, all inside the right OTA range (the 307,323-byte report): signed, with a warning", async () => {
    writeFileSync(
      file("sparse.bin"),
      linkedImage({ size: 307323, irom0Base: 0x4024c000, references: 30, span: 0xf00 }),
    );
    const r = await runCliProcess(["sign", "sparse.bin", "-o", "sparse.ota"], { cwd: tmp.dir });
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stderr,
      /warning: The image may be linked for MAIN_APP_OFFSET 0x43000 rather than 0x3c000, but the evidence is weak \(0 of 30 irom0 references/,
    );
  });
  test("many references pointing past its code at 0x3c000: refused with exit 10", async () => {
    writeFileSync(file("moved.bin"), linkedImage({ size: 0x30000, irom0Base: 0x4024d000, references: 400 }));
    const r = await runCliProcess(["sign", "moved.bin", "-o", "moved.ota"], { cwd: tmp.dir });
    assert.equal(r.code, 10, r.stderr);
    assert.match(
      r.stderr,
      /seems linked for MAIN_APP_OFFSET 0x44000 \(irom0 at 0x4024d000\), but this device's yaota8266 puts the app at 0x3c000/,
    );
    const right = await runCliProcess(["sign", "moved.bin", "-o", "moved.ota", "--app-offset", "0x44000"], {
      cwd: tmp.dir,
    });
    assert.equal(right.code, 0, right.stderr);
  });
});
