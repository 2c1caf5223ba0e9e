import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { MemoryIo } from "../../src/cli/io.ts";
import { checkMd5Trailer } from "../../src/firmware/micropython-image.ts";
import { DEFAULT_SETTINGS, renderConfigH } from "../../src/protocol/config-h.ts";
import { BridgeClient } from "../../src/server/bridge/bridge-client.ts";
import {
  buildEsp32AppImage,
  DEFAULT_ESP32_APP_SIZE,
  esp32Identity,
} from "../../src/simulator/synthetic-esp32-app.ts";
import { buildSyntheticFirmware, firmwareIdentity } from "../../src/simulator/synthetic-firmware.ts";
import { TestBroker } from "../agent/support.ts";
import { jobEnd } from "../server/support/job-suite.ts";
import { FAST_TIMINGS, startTestServer, tempDir } from "../server/support/test-server.ts";
import { eventually } from "../server/support/wait.ts";
import { makeTempDir } from "../support/cli.ts";
import { fixturePath } from "../support/fixtures.ts";
import { endServerRun, type Run, simulate, startSimulate, untilOutput } from "./simulate-run.ts";
import { addressPool, key, stateWhere } from "./support.ts";

const keyFile = fixturePath("reference/priv-pkcs1.key");
/** A fleet on the test broker without provisioning: ids <prefix>-<n> from address `first`, small images, no stagger. */
const unprovisioned = (first: string, prefix: string) => [
  ...["--mqtt", broker.url, "--no-provision", "--key", keyFile, "--first-address", first],
  ...["--id-prefix", prefix, "--firmware-size", "40000", "--stagger-ms", "0"],
];
const nextAddress = addressPool();
let broker: TestBroker;
const tmp = makeTempDir("mpota-simulate-");

before(async () => {
  broker = await TestBroker.start();
});
after(async () => {
  await broker.close();
  tmp.remove();
});

describe("mpota simulate", () => {
  test("--devices 2: both power on, check in on the broker, and stop cleanly when aborted", async () => {
    const first = nextAddress();
    const second = nextAddress();
    const stop = new AbortController();
    const io = new MemoryIo();
    const running = simulate(
      [
        "--devices",
        "2",
        "--mqtt",
        broker.url,
        "--no-provision",
        "--key",
        keyFile,
        "--first-address",
        first,
        "--id-prefix",
        "cli",
        "--firmware-size",
        "40000",
        "--seed",
        "3",
        "--stagger-ms",
        "0",
      ],
      { stop: stop.signal },
      io,
    );
    const fw = firmwareIdentity(buildSyntheticFirmware({ size: 40_000, seed: 3 }));
    const s1 = await stateWhere(broker, "cli-1", () => true);
    const s2 = await stateWhere(broker, "cli-2", () => true);
    assert.deepEqual([s1.fw, s1.ip, s1.wake], [fw, first, "power"]);
    assert.deepEqual([s2.fw, s2.ip, s2.wake], [fw, second, "power"]);
    await untilOutput(io, /cli-2\s+checked in/);

    stop.abort();
    const { code } = await running;
    assert.equal(code, 0, io.stderrText);
    const out = io.stdout;
    assert.match(
      out,
      new RegExp(
        `simulating 2 devices \\(2 always on, 0 sleeping 0 s\\) on ${first.replaceAll(".", "\\.")} to ${second.replaceAll(".", "\\.")}, broker ${broker.url}`,
      ),
    );
    assert.match(out, /cli-1\s+power on/);
    assert.match(out, /cli-1\s+boot8266 \(power on\): main app valid, 39984 bytes, MD5 [0-9a-f]{32} -> app/);
    assert.match(
      out,
      new RegExp(`cli-1\\s+checked in: fw ${fw}, ip ${first.replaceAll(".", "\\.")}, wake power, always on`),
    );
    assert.match(out, /stopped; the devices are powered off:/);
    assert.match(
      out,
      new RegExp(
        `cli-2\\s+${second.replaceAll(".", "\\.")}\\s+off\\s+${fw}\\s+always on\\s+none\\s+1\\s+1\\s+0`,
      ),
    );
    // The devices lost power: their last wills say offline.
    await broker.seen("mpota/cli-1/status", "offline");
    await broker.seen("mpota/cli-2/status", "offline");
  });

  test("SIGTERM ends it cleanly, with sleepy devices and --json", async () => {
    const first = nextAddress();
    nextAddress();
    const io = new MemoryIo();
    const running = simulate(
      [
        "--devices",
        "2",
        "--sleep",
        "5",
        "--mqtt",
        broker.url,
        "--no-provision",
        "--modulus",
        Buffer.from(key.modulus).toString("hex"),
        "--first-address",
        first,
        "--id-prefix",
        "sig",
        "--firmware-size",
        "40000",
        "--stagger-ms",
        "0",
        "--json",
      ],
      {},
      io,
    );
    await Promise.race([
      stateWhere(broker, "sig-2", (s) => s.sleep === 5),
      running.then((r) => assert.fail(`simulate ended early (${r.code}): ${r.io.stderrText}`)),
    ]);
    await untilOutput(io, /"device":"sig-2","type":"deepsleep","ms":5000/);
    process.emit("SIGTERM");
    const { code } = await running;
    assert.equal(code, 0, io.stderrText);
    const events = io.stdout
      .trim()
      .split("\n")
      .map(
        (l) => JSON.parse(l) as { type: string; device: string | null; devices?: Array<{ status: string }> },
      );
    assert.equal(events[0]?.type, "start");
    assert.ok(events.some((e) => e.type === "signal"));
    const last = events.at(-1);
    assert.equal(last?.type, "stopped");
    assert.deepEqual(
      last?.devices?.map((d) => d.status),
      ["off", "off"],
    );
    assert.equal(process.listenerCount("SIGTERM"), 0, "no signal handler left behind");
  });

  test("--config-h: the bootloaders take its modulus and settings (MAIN_APP_OFFSET here), and the agent reads its firmware there", async () => {
    const first = nextAddress();
    const configH = join(tmp.dir, "config.h");
    writeFileSync(configH, renderConfigH(key, { ...DEFAULT_SETTINGS, mainAppOffset: 0x40000 }));
    const stop = new AbortController();
    const io = new MemoryIo();
    const running = simulate(
      [
        "--mqtt",
        broker.url,
        "--no-provision",
        "--config-h",
        configH,
        "--first-address",
        first,
        "--id-prefix",
        "cfg",
      ],
      { stop: stop.signal },
      io,
    );
    const state = await Promise.race([
      stateWhere(broker, "cfg-1", () => true),
      running.then((r) => assert.fail(`simulate ended early (${r.code}): ${r.io.stderrText}`)),
    ]);
    stop.abort();
    assert.equal((await running).code, 0);
    const image = buildSyntheticFirmware({ seed: 1, appOffset: 0x40000 });
    assert.equal(state.fw, firmwareIdentity(image));
    assert.match(io.stdout, /bootloader key 512-bit/);
  });

  test("against an mpota server: each device gets a credential of its own with the server's command keys, checks in, and takes a signed update", async () => {
    const data = tempDir("mpota-simulate-server-");
    const s = await startTestServer(data.dir, {
      timings: { ...FAST_TIMINGS, firstAnswerMs: 8000, verifyTimeoutMs: 8000 },
    });
    const bridge = await BridgeClient.connect({ connection: { url: s.url } });
    const stop = new AbortController();
    const io = new MemoryIo();
    let running: Promise<Run> | undefined;
    try {
      const first = nextAddress();
      nextAddress();
      // The admin token in --data is what lets it provision: no credentials on the command line.
      running = simulate(
        [
          "--devices",
          "2",
          "--mqtt",
          s.brokerUrl,
          "--data",
          data.dir,
          "--key",
          keyFile,
          "--first-address",
          first,
          "--id-prefix",
          "prov",
          "--firmware-size",
          "40000",
          "--seed",
          "3",
          "--stagger-ms",
          "0",
        ],
        { stop: stop.signal },
        io,
      );
      const ended = running.then((r) => assert.fail(`simulate ended early (${r.code}): ${r.io.stderrText}`));
      const fw = firmwareIdentity(buildSyntheticFirmware({ size: 40_000, seed: 3 }));
      const kid = s.server.commandKey.kid;
      await Promise.race([
        eventually(
          async () => {
            const seen = (await bridge.request("command-keys", {})).devices;
            const views = (await bridge.request("devices", {})).filter((d) => d.fw === fw && d.v === 2);
            return (
              views.length === 2 &&
              ["prov-1", "prov-2"].every((id) =>
                seen.some((d) => d.device === id && d.v === 2 && d.keys?.join() === kid),
              )
            );
          },
          "prov-1 and prov-2 checked in on the v2 agent, trusting the server's command key",
          30_000,
        ),
        ended,
      ]);
      assert.deepEqual((await bridge.request("devices/credentials", {})).map((c) => c.device).sort(), [
        "prov-1",
        "prov-2",
      ]);

      const update = buildSyntheticFirmware({ size: 44_000, seed: 4 });
      await bridge.request("firmware/add", {
        image: Buffer.from(update).toString("base64"),
        name: "synthetic",
        version: "2.0",
      });
      const job = await bridge.request("update", { device: "prov-1", firmware: "synthetic@2.0" });
      const end = await Promise.race([jobEnd(bridge, job.id, 60_000), ended]);
      assert.equal(end.state, "succeeded", end.error ?? "");
      await untilOutput(io, new RegExp(`prov-1\\s+checked in: fw ${firmwareIdentity(update)}`), 30_000);
    } finally {
      await endServerRun({ stop, running, io }, { bridge, s, data });
    }
    assert.match(io.stdout, /prov-1\s+\S+\s+off\s+\S+\s+always on\s+none\s+\d+\s+\d+\s+1/);
  });

  test("no broker where --mqtt points: exit 42 with advice, nothing started", async () => {
    const { code, io } = await simulate(["--mqtt", "mqtt://127.0.0.1:1", "--key", keyFile]);
    assert.equal(code, 42);
    assert.match(io.stderrText, /No MQTT broker answers at mqtt:\/\/127\.0\.0\.1:1 \(ECONNREFUSED\)/);
    assert.match(io.stderrText, /`mpota serve` runs a broker on port 1883/);
    assert.equal(io.stdout, "");
  });

  test("bad options are refused before anything starts", async () => {
    const cases: Array<[string[], RegExp]> = [
      [["--devices", "0"], /--devices must be a whole number from 1 to 250/],
      [["--sleep", "5000"], /--sleep 5000 is outside 0-4294 s/],
      [["--sleepy-share", "1.5"], /--sleepy-share is a fraction from 0 to 1/],
      [["--mqtt", "mqtts://broker:8883"], /plain MQTT over TCP.*not mqtts:/],
      [["--id-prefix", "a/b"], /--id-prefix "a\/b" must be/],
      [["--first-address", "10.0.0.1"], /not a loopback address/],
      [["--devices", "2", "--esp32", "3"], /--esp32 is how many of the 2 devices are ESP32s/],
      [
        ["--devices", "2", "--esp32", "1", "--pico-w", "2"],
        /--pico-w is how many of the 2 devices are Pico Ws: a whole number from 0 to 1 \(1 of them is an ESP32\), not 2/,
      ],
      [["--key", join(tmp.dir, "missing.key")], /missing\.key does not exist/],
    ];
    for (const [args, message] of cases) {
      const { code, io } = await simulate(["--mqtt", broker.url, "--key", keyFile, ...args]);
      assert.notEqual(code, 0, args.join(" "));
      assert.match(io.stderrText, message, args.join(" "));
    }
  });

  test("--firmware must be an image boot8266 would start", async () => {
    const bad = buildSyntheticFirmware({ size: 40_000, seed: 4 });
    bad[0x9100] = (bad[0x9100] as number) ^ 1;
    const path = join(tmp.dir, "bad.bin");
    writeFileSync(path, bad);
    const { code, io } = await simulate(["--mqtt", broker.url, "--key", keyFile, "--firmware", path]);
    assert.equal(code, 2);
    assert.match(io.stderrText, /bad\.bin is not an image boot8266 would start: The MD5 trailer/);
  });

  test("--write-firmware writes the synthetic image for --seed and exits; it refuses to overwrite", async () => {
    const path = join(tmp.dir, "new.bin");
    const r = await simulate(["--write-firmware", path, "--seed", "2", "--firmware-size", "65536"]);
    assert.equal(r.code, 0, r.io.stderrText);
    const written = new Uint8Array(readFileSync(path));
    assert.deepEqual(written, buildSyntheticFirmware({ size: 65536, seed: 2 }));
    assert.equal(checkMd5Trailer(written).status, "ok");
    assert.match(r.io.stdout, new RegExp(`identity ${firmwareIdentity(written)}`));
    const again = await simulate(["--write-firmware", path]);
    assert.equal(again.code, 3);
    assert.match(again.io.stderrText, /already exists/);
  });

  test("--esp32 1: the last device is an ESP32 whose bootloader starts its app from ota_0", async () => {
    const first = nextAddress();
    const second = nextAddress();
    const { stop, io, running } = startSimulate([
      ...["--devices", "2", "--esp32", "1", ...unprovisioned(first, "mix")],
      "--json",
    ]);
    await untilOutput(io, /"device":"mix-2","type":"app-start"/);
    stop.abort();
    const { code } = await running;
    assert.equal(code, 0, io.stderrText);
    const lines = io.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const start = lines[0] as {
      esp32: unknown;
      devices: Array<{ id: string; address: string; port: number }>;
    };
    assert.deepEqual(start.esp32, { count: 1, source: "synthetic app, seed 1" });
    assert.deepEqual(
      start.devices.map((d) => [d.id, d.address, d.port]),
      [
        ["mix-1", first, 8266],
        ["mix-2", second, 0],
      ],
    );
    const boot = lines.find((l) => l.device === "mix-2" && l.type === "esp32-boot");
    assert.deepEqual(boot && [boot.partition, boot.resetCause, boot.fastBoot], ["ota_0", 1, false]);
    const app = lines.find((l) => l.device === "mix-2" && l.type === "app-start");
    assert.deepEqual(app && [app.fw, app.wake], [esp32Identity({ seed: 1 }).slice(0, 32), "power"]);
  });

  test("--pico-w 1 --no-provision: the Pico W comes up as an rp2 app board, and the start line says it trusts no app key", async () => {
    const first = nextAddress();
    const second = nextAddress();
    const { stop, io, running } = startSimulate([
      "--devices",
      "2",
      "--pico-w",
      "1",
      ...unprovisioned(first, "np"),
    ]);
    const state = await Promise.race([
      stateWhere(broker, "np-2", () => true),
      running.then((r) => assert.fail(`simulate ended early (${r.code}): ${r.io.stderrText}`)),
    ]);
    assert.deepEqual([state.chip, state.ip, (state.app as { board?: string }).board], ["rp2", second, "rp2"]);
    await untilOutput(io, /np-2\s+checked in: .*; chip rp2, no app yet/);
    stop.abort();
    assert.equal((await running).code, 0, io.stderrText);
    assert.match(
      io.stdout,
      /; firmware [0-9a-f]{32} \(synthetic image, seed 1\), bootloader key 512-bit; the last 1 is a Pico W \(app updates only, no app key without provisioning: every app release is refused\)\. Ctrl-C stops\./,
    );
    assert.match(io.stdout, /np-1\s+boot8266 \(power on\)/, "the first is an ESP8266");
  });

  test("--write-esp32-firmware writes the synthetic ESP32 app for --seed; --esp32-firmware must be one set_boot takes", async () => {
    const path = join(tmp.dir, "esp32.bin");
    const r = await simulate(["--write-esp32-firmware", path, "--seed", "2"]);
    assert.equal(r.code, 0, r.io.stderrText);
    const written = new Uint8Array(readFileSync(path));
    assert.deepEqual(written, buildEsp32AppImage({ seed: 2, size: DEFAULT_ESP32_APP_SIZE }));
    assert.match(r.io.stdout, new RegExp(`identity ${esp32Identity({ seed: 2 }).slice(0, 32)}`));
    written[100] = (written[100] as number) ^ 1;
    writeFileSync(path, written);
    const bad = await simulate([
      "--mqtt",
      broker.url,
      "--key",
      keyFile,
      "--esp32",
      "1",
      "--esp32-firmware",
      path,
    ]);
    assert.equal(bad.code, 2);
    assert.match(
      bad.io.stderrText,
      /esp32\.bin is not an app the simulated ESP32 could boot: the image's checksum/,
    );
  });
});
