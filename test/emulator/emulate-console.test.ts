import assert from "node:assert/strict";
import { PassThrough } from "node:stream";
import { describe, it } from "node:test";
import { Command } from "commander";
import { registerEmulateCommand } from "../../src/cli/emulate.ts";
import type { EmulateDeps } from "../../src/cli/emulate-options.ts";
import { MemoryIo } from "../../src/cli/io.ts";
import { systemClock } from "../../src/net/clock.ts";
import { NodeUdpNetwork } from "../../src/net/node-udp.ts";
import { withSeq } from "../../src/protocol/datagram.ts";
import { signImage } from "../../src/protocol/image-packets.ts";
import { fixturePath } from "../support/fixtures.ts";
import { buildMicroPythonImage } from "../support/images.ts";
import { referenceKey, stopAndWait } from "./test-sender.ts";

function program(io: MemoryIo, deps: EmulateDeps): Command {
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

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function emulate(io: MemoryIo, deps: EmulateDeps, extra: string[] = []): Promise<unknown> {
  return program(io, deps).parseAsync([
    "node",
    "mpota",
    "emulate",
    "--key",
    fixturePath("reference/priv-pkcs8.key"),
    "--bind",
    "127.0.0.1",
    "--port",
    "0",
    "--gpio-wait-ms",
    "100",
    "--baud",
    "921600",
    ...extra,
  ]);
}

describe("mpota emulate: its console", () => {
  it("does not open the terminal while in the background (a read would stop it), opens it in the foreground", async () => {
    const io = new MemoryIo();
    const stop = new AbortController();
    let foreground = false;
    const opened: PassThrough[] = [];
    const run = emulate(io, {
      stop: stop.signal,
      foreground: () => foreground,
      foregroundPollMs: 20,
      openTerminal: () => {
        const terminal = new PassThrough();
        opened.push(terminal);
        return terminal;
      },
    });
    try {
      await until(io, /running in the background: commands are not read from the terminal \(fg brings/);
      assert.match(io.stdout, new RegExp(`stop it with kill ${process.pid}`));
      await sleep(100);
      assert.equal(opened.length, 0, "the terminal stays closed in the background");
      foreground = true;
      await until(io, /in the foreground: reading commands from the terminal/);
      assert.equal(opened.length, 1);
      opened[0]?.write("status\n");
      await until(io, /state \w+(, expecting offset \d+, \d+ bytes buffered)?, 0 sectors written/);
      foreground = false;
      await sleep(100);
      assert.equal(opened[0]?.destroyed, true, "going to the background closes the terminal");
      assert.equal(io.stdout.match(/running in the background/g)?.length, 2);
    } finally {
      stop.abort();
      await run;
    }
  });

  it("--no-console reads nothing and says how to stop it", async () => {
    const io = new MemoryIo();
    const stop = new AbortController();
    let opened = 0;
    const run = emulate(
      io,
      {
        stop: stop.signal,
        foreground: () => true,
        openTerminal: () => {
          opened++;
          return new PassThrough();
        },
      },
      ["--no-console"],
    );
    try {
      await until(io, /console off \(--no-console\): stop the emulator with Ctrl-C or kill \d+/);
      await sleep(50);
      assert.equal(opened, 0);
      assert.doesNotMatch(io.stdout, /commands: "ota"/);
    } finally {
      stop.abort();
      await run;
    }
  });

  it('"button" outside the GPIO wait says to type "reset" first; after "reset" it enters OTA mode', async () => {
    const io = new MemoryIo();
    const stop = new AbortController();
    const stdin = new PassThrough();
    const run = emulate(io, { stop: stop.signal, stdin }, ["--boot", "normal", "--gpio-wait-ms", "2000"]);
    try {
      // No app in flash: after the GPIO wait boot8266 falls back to OTA mode; wait for that first.
      await until(io, /OTA mode, listening on/);
      stdin.write("button\n");
      await until(
        io,
        /button: nothing happens: boot8266 watches the GPIOs only for GPIO_WAIT_MS \(2000 ms\) after a reset\. Type "reset" first, then "button" within that time\./,
      );
      const before = io.stdout.length;
      stdin.write("reset\nbutton\n");
      await until(io, /OTA mode, listening on/);
      await sleep(50);
      assert.doesNotMatch(io.stdout.slice(before), /button: nothing happens/);
    } finally {
      stop.abort();
      await run;
    }
  });

  it("--help says button needs a reset first, and how the console behaves in the background", async () => {
    const io = new MemoryIo();
    await assert.rejects(program(io, {}).parseAsync(["node", "mpota", "emulate", "--help"]), {
      exitCode: 0,
    });
    assert.match(io.stdout, /only right\s+after "reset", within GPIO_WAIT_MS/);
    assert.match(io.stdout, /--no-console/);
    assert.match(io.stdout, /started with "&" it does not touch the terminal/);
  });

  it('shows "Unexpected offset" once, explained as normal for a pipelined sender, and counts the rest', async () => {
    const io = new MemoryIo();
    const stop = new AbortController();
    const run = emulate(io, { stop: stop.signal, stdin: null });
    try {
      const [, port] = await until(io, /OTA mode, listening on 127\.0\.0\.1:(\d+)/);
      const to = { address: "127.0.0.1", port: Number(port) };
      const image = buildMicroPythonImage({ size: 16 * 1024, seed: 9 });
      const packets = signImage(image, referenceKey, 1024);
      const sender = await new NodeUdpNetwork().bind({ address: "127.0.0.1" });
      try {
        // Three datagrams ahead of the first, as a pipelined sender's would be.
        for (let i = 1; i <= 3; i++) sender.send(to, withSeq(100 + i, packets[i] as never));
        await sleep(200);
        await stopAndWait({ channel: sender, to, clock: systemClock, packets, firstSeq: 200 });
      } finally {
        await sender.close();
      }
      await until(io, /update received: .*; rebooting/);
    } finally {
      stop.abort();
      await run;
    }
    const shown = io.stdout.match(/Unexpected offset/g) ?? [];
    assert.match(
      io.stdout,
      /ota-server: Unexpected offset: a datagram ahead of the one the receiver expects, dropped as the real receiver does\. Normal while a pipelined sender \(mpota push\) keeps several in flight/,
    );
    assert.match(
      io.stdout,
      /update received: \d+ bytes, .*, 3 datagrams ahead of the expected offset dropped \("Unexpected offset", normal for a pipelined sender\); rebooting/,
    );
    assert.equal(shown.length, 2, io.stdout);
  });
});
