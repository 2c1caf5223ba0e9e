import assert from "node:assert/strict";
import { copyFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { EmulatedDevice } from "../../src/emulator/device.ts";
import { NodeUdpNetwork } from "../../src/net/node-udp.ts";
import { seededRandom } from "../../src/net/random.ts";
import { generateKeyPair, parsePrivateKeyPem } from "../../src/protocol/rsa-key.ts";
import { FAST } from "../simulator/support.ts";
import { makeTempDir, runCli, runCliProcess } from "../support/cli.ts";
import { fixturePath, readFixtureText } from "../support/fixtures.ts";
import { buildMicroPythonImage, imageIdentity } from "../support/images.ts";

// The real CLI process pushes over real loopback UDP to an emulated device in
// this process. The device runs a fast timing model (interop, not speed, is
// what these tests check; `npm run bench` measures speed with the spec's model).
const APP = 0x3c000;
const key = parsePrivateKeyPem(readFixtureText("reference/priv-pkcs1.key"));

let counter = 20;
async function device(link?: string) {
  const d = new EmulatedDevice({
    network: new NodeUdpNetwork(),
    address: `127.0.${counter++}.2`,
    port: 0,
    key,
    timing: FAST,
    random: seededRandom(counter),
    ...(link ? { link } : {}),
  });
  await d.powerOn();
  d.rtcMemory = new TextEncoder().encode("yaotaota");
  d.reset("soft");
  await d.waitForState("ota");
  return d;
}

describe("mpota push (real process, real loopback UDP, emulated device)", () => {
  const tmp = makeTempDir("mpota-push-");
  const image = buildMicroPythonImage({ size: 600 * 1024, seed: 77 });
  const imagePath = join(tmp.dir, "firmware-ota.bin");
  before(() => {
    writeFileSync(imagePath, image);
    copyFileSync(fixturePath("reference/priv-pkcs1.key"), join(tmp.dir, "priv.key"));
  });
  after(() => tmp.remove());

  async function pushAndCheck(file: string, link?: string, extra: string[] = []) {
    const d = await device(link);
    try {
      const booted = d.waitForState("app");
      const r = await runCliProcess(
        ["push", file, "--to", d.endpoint.address, "--port", String(d.endpoint.port), ...extra],
        { cwd: tmp.dir },
      );
      assert.equal(r.code, 0, r.stderr);
      const summary = `Update sent to ${d.endpoint.address}:${d.endpoint.port}: ${image.length} bytes`;
      if (!extra.includes("--json")) assert.ok(r.stdout.includes(summary), r.stdout);
      await booted;
      assert.deepEqual(Buffer.from(d.flash.read(APP, image.length)), Buffer.from(image));
      assert.equal(d.app?.md5, imageIdentity(image));
      // Receive-queue overflows are not asserted here: with the fast timing the
      // receiver's pace is under a millisecond, so a scheduling hiccup of this
      // test process looks like loss. The virtual-time suites and the
      // benchmark assert zero overflows under the spec's timing model.
      return r;
    } finally {
      await d.close();
    }
  }

  test("a ~600 KiB image, signed on the fly, lands byte-exact and boots", async () => {
    const r = await pushAndCheck("firmware-ota.bin");
    assert.match(r.stderr, /signed on the fly with a 512-bit key, 256-byte blocks/);
    assert.match(r.stderr, /100% 614400\/614400 bytes/);
  });

  test("the same as a canned .ota made by mpota sign, without the private key", async () => {
    const signed = await runCli(["sign", "firmware-ota.bin", "--key", "priv.key", "-o", "fw.ota"], {
      cwd: tmp.dir,
    });
    assert.equal(signed.code, 0, signed.stderr);
    const r = await pushAndCheck("fw.ota", undefined, ["--key", "/nonexistent/key"]);
    assert.match(r.stderr, /canned: 2400 datagrams of up to 256 bytes, checksum OK/);
  });

  test("the same under the poor link profile", async () => {
    const r = await pushAndCheck("firmware-ota.bin", "poor");
    assert.match(r.stdout, /\d+ retransmitted/);
  });

  test("--window 3, for a receiver that queues fewer datagrams: the push says so and lands byte-exact", async () => {
    const r = await pushAndCheck("firmware-ota.bin", "busy", ["--window", "3"]);
    assert.match(r.stderr, /256-byte blocks\) to 127\.0\.\d+\.2:\d+, at most 3 datagrams in flight\n/);
  });

  test("--json prints one event per line ending with done", async () => {
    const r = await pushAndCheck("firmware-ota.bin", undefined, ["--json", "--block", "1024"]);
    const events = r.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { type: string; ackedBytes?: number });
    assert.equal(events[0]?.type, "started");
    assert.equal(events.at(-1)?.type, "done");
    assert.equal(events.at(-1)?.ackedBytes, image.length);
  });

  test("a silent host: bounded wait, exit 31, the usual causes", async () => {
    const r = await runCliProcess(
      ["push", "firmware-ota.bin", "--to", "127.0.0.77", "--port", "8266", "--wait", "2"],
      {
        cwd: tmp.dir,
      },
    );
    assert.equal(r.code, 31);
    assert.match(r.stderr, /No answer from 127\.0\.0\.77:8266 after 2 s/);
    assert.match(r.stderr, /nothing listens on UDP port 8266/);
    assert.match(r.stderr, /not in OTA mode/);
    assert.match(
      r.stderr,
      /the device is not running: .*an emulator .*`jobs` shows whether it is Running or Stopped/,
    );
    assert.match(r.stderr, /key whose modulus the bootloader was not built with/);
  });

  test("a device built for another key drops everything, writes nothing; the client explains", async () => {
    const d = new EmulatedDevice({
      network: new NodeUdpNetwork(),
      address: "127.0.0.88",
      port: 0,
      key: generateKeyPair(512).key,
      timing: FAST,
      settings: { gpioMask: 0 },
    });
    await d.powerOn();
    await d.waitForState("ota");
    try {
      const r = await runCliProcess(
        ["push", "firmware-ota.bin", "--to", "127.0.0.88", "--port", String(d.endpoint.port), "--wait", "2"],
        { cwd: tmp.dir },
      );
      assert.equal(r.code, 31);
      assert.match(r.stderr, /key whose modulus the bootloader was not built with/);
      assert.ok(d.stats.dropped["bad-sha1"] + d.stats.dropped["bad-signature"] > 0);
      assert.ok(d.flash.read(APP, 4096).every((b) => b === 0xff));
    } finally {
      await d.close();
    }
  });

  test("bad input: a damaged .ota, an empty image, a bad block size, a missing key", async () => {
    writeFileSync(
      join(tmp.dir, "bad.ota"),
      Buffer.concat([Buffer.from("yaota8266\x01"), Buffer.from([0x54, 0x01, 1, 2, 3])]),
    );
    writeFileSync(join(tmp.dir, "empty.bin"), new Uint8Array(0));
    const cases: Array<[string[], number, RegExp]> = [
      [["push", "bad.ota", "--to", "127.0.0.1"], 5, /bad\.ota is truncated/],
      [["push", "empty.bin", "--to", "127.0.0.1"], 3, /empty/],
      [
        ["push", "firmware-ota.bin", "--to", "127.0.0.1", "--block", "300"],
        2,
        /does not tile the receiver's 4096-byte sector/,
      ],
      [
        ["push", "firmware-ota.bin", "--to", "127.0.0.1", "--key", "nokey.pem"],
        3,
        /Key file nokey\.pem does not exist/,
      ],
      [["push", "nothere.bin", "--to", "127.0.0.1"], 3, /nothere\.bin does not exist/],
      [
        ["push", "firmware-ota.bin", "--to", "127.0.0.1", "--window", "0"],
        2,
        /--window must be a whole number from 1 to 15: the datagrams in flight, which the device's receive queue must hold while it writes a sector \(default 6, for a queue of 7\)\./,
      ],
      [
        ["push", "firmware-ota.bin", "--to", "127.0.0.1", "--window", "16"],
        2,
        /--window must be a whole number/,
      ],
      [
        ["push", "firmware-ota.bin", "--to", "127.0.0.1", "--window", "2", "--compat"],
        2,
        /--window and --compat together: --compat keeps one datagram in flight/,
      ],
    ];
    for (const [args, code, message] of cases) {
      const r = await runCli(args, { cwd: tmp.dir });
      assert.equal(r.code, code, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, message);
    }
  });
});
