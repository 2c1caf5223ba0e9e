import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Command } from "commander";
import { registerEmulateCommand } from "../../src/cli/emulate.ts";
import { MemoryIo } from "../../src/cli/io.ts";
import { TestBroker } from "../agent/support.ts";
import { esp32Identity } from "../support/esp32-image.ts";

// `mpota emulate --chip esp32`: one ESP32 (OTA variant) whose bootloader starts the agent.

let broker: TestBroker;
before(async () => {
  broker = await TestBroker.start();
});
after(async () => {
  await broker.close();
});

describe("mpota emulate --chip esp32", () => {
  it("powers on an ESP32: the bootloader takes ota_0 of an erased otadata, the app starts; no yaota8266 key needed", async () => {
    const io = new MemoryIo();
    const stop = new AbortController();
    const program = new Command("mpota")
      .exitOverride()
      .configureOutput({ writeOut: (s) => io.out(s), writeErr: (s) => io.err(s) });
    registerEmulateCommand(program, io, { stop: stop.signal }).exitOverride();
    const running = program.parseAsync(
      [
        "emulate",
        "--chip",
        "esp32",
        "--mqtt",
        broker.url,
        "--no-provision",
        "--key",
        "/nonexistent.key",
        "--json",
      ],
      { from: "user" },
    );
    const deadline = Date.now() + 15_000;
    while (!io.stdout.includes('"type":"app-start"')) {
      if (Date.now() > deadline) throw new Error(`no app-start in:\n${io.stdout}${io.stderrText}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    stop.abort();
    await running;
    const lines = io.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.deepEqual(
      lines.find((l) => l.type === "esp32-boot"),
      {
        ...lines.find((l) => l.type === "esp32-boot"),
        device: "esp32-1",
        partition: "ota_0",
        log: [
          "No factory image, trying OTA 0",
          "Set actual ota_seq=1 in otadata[0]",
          "Loaded app from partition at offset 0x10000 (ota_0)",
        ],
        resetCause: 1,
      },
    );
    const app = lines.find((l) => l.type === "app-start");
    assert.deepEqual(app && [app.device, app.fw, app.wake], [
      "esp32-1",
      esp32Identity({ seed: 1 }).slice(0, 32),
      "power",
    ]);
    assert.deepEqual(lines.at(-1)?.type, "stopped");
  });
});
