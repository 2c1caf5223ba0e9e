import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { after, describe, it } from "node:test";
import { Command } from "commander";
import { registerEmulateCommand } from "../../src/cli/emulate.ts";
import { EmulatorBindError } from "../../src/cli/emulator-bind-error.ts";
import { MemoryIo } from "../../src/cli/io.ts";
import { FlashFileError } from "../../src/emulator/flash.ts";
import { systemClock } from "../../src/net/clock.ts";
import { NodeUdpNetwork } from "../../src/net/node-udp.ts";
import { signImage } from "../../src/protocol/image-packets.ts";
import { push } from "../../src/transfer/sender.ts";
import { memorySource } from "../simulator/support.ts";
import { fixturePath } from "../support/fixtures.ts";
import { buildMicroPythonImage, imageIdentity } from "../support/images.ts";
import { referenceKey, stopAndWait } from "./test-sender.ts";

const dir = mkdtempSync(join(tmpdir(), "mpota-emulate-"));
after(() => rmSync(dir, { recursive: true, force: true }));

function program(io: MemoryIo, deps: Parameters<typeof registerEmulateCommand>[2] = {}): Command {
  const p = new Command("mpota")
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.out(s), writeErr: (s) => io.err(s) });
  registerEmulateCommand(p, io, deps).exitOverride();
  return p;
}

async function until(io: MemoryIo, pattern: RegExp, timeoutMs = 10_000): Promise<RegExpMatchArray> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const m = io.stdout.match(pattern);
    if (m) return m;
    if (Date.now() > deadline) throw new Error(`no ${pattern} in output:\n${io.stdout}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe("mpota emulate", () => {
  it("listens on real UDP, takes an update into its flash file, boots it, obeys stdin, stops cleanly", async () => {
    const io = new MemoryIo();
    const stop = new AbortController();
    const stdin = new PassThrough();
    const flashFile = join(dir, "cli.flash");
    const run = program(io, { stop: stop.signal, stdin }).parseAsync([
      "node",
      "mpota",
      "emulate",
      "--key",
      fixturePath("reference/priv-pkcs8.key"),
      "--bind",
      "127.0.0.1",
      "--port",
      "0",
      "--flash",
      flashFile,
      "--gpio-wait-ms",
      "100",
      "--baud",
      "921600",
      "--progress-every",
      "4",
    ]);
    try {
      const [, port] = await until(io, /OTA mode, listening on 127\.0\.0\.1:(\d+)/);
      assert.match(io.stdout, /boot8266: Detected magic word in RTC memory/);
      const image = buildMicroPythonImage({ size: 40 * 1024, seed: 4 });
      const sender = await new NodeUdpNetwork().bind({ address: "127.0.0.1" });
      try {
        await stopAndWait({
          channel: sender,
          to: { address: "127.0.0.1", port: Number(port) },
          clock: systemClock,
          packets: signImage(image, referenceKey, 1024),
        });
      } finally {
        await sender.close();
      }
      await until(io, new RegExp(`Running app ${imageIdentity(image)}`));
      assert.match(io.stdout, /ota-server: OTA finished, rexmits: 0/);
      assert.match(io.stdout, /received 32 KiB \(8 sectors, last at 0x43000\)/);
      assert.match(io.stdout, /update received: 40960 bytes, 10 sectors written in /);
      assert.match(io.stdout, /^\d\d:\d\d:\d\d\.\d\d\d {2}/m);
      stdin.write("status\nota\n");
      await until(io, /state app, .*sectors written/);
      await until(io, /Running app [0-9a-f]{32}\n(?:.*\n)*.*RTC memory set to "yaotaota", soft reset/);
      await until(io, /Running app [0-9a-f]{32}\n(?:.*\n)*.*OTA mode, listening on/);
    } finally {
      stop.abort();
      await run;
    }
    assert.match(io.stdout, /stopped: \d+ datagrams received, 40 acks, 10 sectors written/);
    assert.match(io.stdout, /flash saved in/);
    const flash = readFileSync(flashFile);
    assert.equal(flash.length, 1024 * 1024);
    const image = buildMicroPythonImage({ size: 40 * 1024, seed: 4 });
    assert.deepEqual(new Uint8Array(flash.subarray(0x3c000, 0x3c000 + image.length)), image);
  });

  it("--receive-queue 4: a receiver that queues fewer datagrams loses those the default window sends into it", async () => {
    const io = new MemoryIo();
    const stop = new AbortController();
    const key = fixturePath("reference/priv-pkcs8.key");
    const args = ["node", "mpota", "emulate", "--key", key, "--bind", "127.0.0.1", "--port", "0"];
    const run = program(io, { stop: stop.signal, stdin: new PassThrough() }).parseAsync([
      ...args,
      "--receive-queue",
      "4",
      "--no-console",
    ]);
    try {
      const [, port] = await until(io, /OTA mode, listening on 127\.0\.0\.1:(\d+)/);
      assert.match(io.stdout, /emulating yaota8266: .*, receive queue 4\n/);
      const image = buildMicroPythonImage({ size: 40 * 1024, seed: 5 });
      const sender = await new NodeUdpNetwork().bind({ address: "127.0.0.1" });
      try {
        await push({
          channel: sender,
          device: { address: "127.0.0.1", port: Number(port) },
          clock: systemClock,
          source: memorySource(image),
        });
      } finally {
        await sender.close();
      }
      await until(io, new RegExp(`Running app ${imageIdentity(image)}`));
    } finally {
      stop.abort();
      await run;
    }
    // Six in flight and one being handled do not fit 4 while a sector is written.
    assert.match(io.stdout, /Receive queue full, datagram lost/);
    assert.match(io.stdout, /stopped: .*drops: .*queue-overflow [1-9]/);
    const bad = new MemoryIo();
    await assert.rejects(program(bad).parseAsync([...args, "--receive-queue", "0"]), {
      message:
        "--receive-queue must be from 1 to 16 (the spec's evidence gives 4 to 16; the model holds 7), not 0.",
    });
  });

  it("refuses a flash file of the wrong size before binding anything", async () => {
    const io = new MemoryIo();
    const flashFile = join(dir, "small.flash");
    writeFileSync(flashFile, new Uint8Array(4096));
    await assert.rejects(
      program(io, { stop: AbortSignal.abort() }).parseAsync([
        "node",
        "mpota",
        "emulate",
        "--key",
        fixturePath("reference/pub.key"),
        "--flash",
        flashFile,
      ]),
      (error: unknown) =>
        error instanceof FlashFileError && /is 4096 bytes, but the emulated flash is 1M/.test(error.message),
    );
  });

  it("says so when the port is taken, and exits", async () => {
    const taken = await new NodeUdpNetwork().bind({ address: "127.0.0.1" });
    try {
      const io = new MemoryIo();
      const run = program(io, { stdin: null }).parseAsync([
        "node",
        "mpota",
        "emulate",
        "--key",
        fixturePath("reference/pub.key"),
        "--bind",
        "127.0.0.1",
        "--port",
        String(taken.local.port),
      ]);
      await assert.rejects(run, (error: unknown) => {
        assert.ok(error instanceof EmulatorBindError);
        assert.equal(error.exitCode, 7);
        assert.match(
          error.message,
          new RegExp(`UDP port ${taken.local.port} on 127.0.0.1 is already in use`),
        );
        return true;
      });
    } finally {
      await taken.close();
    }
  });

  it("says what to do when the key file is missing", async () => {
    const io = new MemoryIo();
    await assert.rejects(
      program(io, { stop: AbortSignal.abort() }).parseAsync([
        "node",
        "mpota",
        "emulate",
        "--key",
        join(dir, "none.key"),
      ]),
      /none\.key does not exist\. Create a key with `mpota keys new`/,
    );
  });

  it("explains each option in --help", async () => {
    const io = new MemoryIo();
    await assert.rejects(program(io).parseAsync(["node", "mpota", "emulate", "--help"]), { exitCode: 0 });
    for (const option of [
      "--key",
      "--modulus",
      "--config-h",
      "--bind",
      "--port",
      "--flash",
      "--flash-size",
      "--link",
      "--gpio-mask",
      "--gpio-wait-ms",
      "--pkt-wait-ms",
      "--idle-reboot-ms",
      "--baud",
      "--app-offset",
      "--boot",
      "--seed",
      "--json",
    ]) {
      assert.ok(io.stdout.includes(option), `--help mentions ${option}`);
    }
    assert.match(io.stdout, /button {5}change a GPIO during that wait/);
  });

  it("prints JSON lines with --json, from a config.h's modulus and settings", async () => {
    const io = new MemoryIo();
    const configH = join(dir, "config.h");
    const modulus = readFileSync(fixturePath("reference/modulus.txt"), "utf8");
    writeFileSync(configH, `${modulus}\n#define GPIO_MASK 0\n#define PKT_WAIT_MS 5000\n`);
    const stop = new AbortController();
    const run = program(io, { stop: stop.signal, stdin: null }).parseAsync([
      "node",
      "mpota",
      "emulate",
      "--config-h",
      configH,
      "--bind",
      "127.0.0.1",
      "--port",
      "0",
      "--boot",
      "normal",
      "--json",
    ]);
    await until(io, /"type":"start"/);
    stop.abort();
    await run;
    const events = io.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const start = events.find((e) => e.type === "start") as {
      settings: { gpioMask: number; pktWaitMs: number };
    };
    assert.equal(start.settings.gpioMask, 0);
    assert.equal(start.settings.pktWaitMs, 5000);
    assert.ok(
      events.some(
        (e) => e.type === "log" && e.message === "gpio_mask is 0 (OTA mode on every boot) -> Running OTA",
      ),
    );
    assert.equal(events.at(-1)?.type, "stopped");
  });
});
