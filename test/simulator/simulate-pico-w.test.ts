import assert from "node:assert/strict";
import { test } from "node:test";
import { defaultAppKeyPath, loadAppKey } from "../../src/apps/app-key.ts";
import { MemoryIo } from "../../src/cli/io.ts";
import { BridgeClient } from "../../src/server/bridge/bridge-client.ts";
import { buildSyntheticFirmware } from "../../src/simulator/synthetic-firmware.ts";
import { jobEnd } from "../server/support/job-suite.ts";
import { FAST_TIMINGS, startTestServer, tempDir } from "../server/support/test-server.ts";
import { eventually } from "../server/support/wait.ts";
import { addAppRelease } from "../support/app-releases.ts";
import { endServerRun, type Run, simulate, untilOutput } from "./simulate-run.ts";
import { addressPool } from "./support.ts";

// `mpota simulate --pico-w`: a Raspberry Pi Pico W (the real agent, loader
// and updater under MicroPython with the rp2 port's modules) against a real
// server, as a user runs it: provisioned from --data, it trusts the server's
// app key, takes an app release, and a firmware update for it is refused.

const nextAddress = addressPool();
const literal = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

test("--pico-w 1 against an mpota server: it registers as rp2, takes an app update, and a firmware update is refused", async () => {
  const data = tempDir("mpota-simulate-pico-");
  const s = await startTestServer(data.dir, {
    http: { host: "127.0.0.1", port: 0 },
    timings: { ...FAST_TIMINGS, firstAnswerMs: 15_000, verifyTimeoutMs: 20_000 },
  });
  const bridge = await BridgeClient.connect({ connection: { url: s.url } });
  const stop = new AbortController();
  const io = new MemoryIo();
  const address = nextAddress();
  let running: Promise<Run> | undefined;
  try {
    // What `mpota app add` signs with: the data directory's app key, the one provisioning hands out.
    const key = loadAppKey(defaultAppKeyPath(data.dir), { create: true });
    const app = new Map([["main.py", Buffer.from('print("thermostat", "1.0.0")\n')]]);
    await addAppRelease(bridge, key, "thermostat", "1.0.0", app, ["rp2"]);
    await bridge.request("firmware/add", {
      image: Buffer.from(buildSyntheticFirmware({ size: 40_000, seed: 5 })).toString("base64"),
      name: "sensor",
      version: "2.0",
    });

    // No --key: a fleet without ESP8266s has no bootloader key to load.
    running = simulate(
      [
        ...["--devices", "1", "--pico-w", "1", "--mqtt", s.brokerUrl, "--data", data.dir],
        ...["--first-address", address, "--id-prefix", "pico"],
      ],
      { stop: stop.signal },
      io,
    );
    const ended = running.then((r) => assert.fail(`simulate ended early (${r.code}): ${r.io.stderrText}`));
    const device = await Promise.race([
      eventually(
        async () => (await bridge.request("devices", {})).find((d) => d.id === "pico-1" && d.chip === "rp2"),
        "pico-1 registered as an rp2 board",
        30_000,
      ),
      ended,
    ]);
    assert.match(device.fw ?? "", /^[0-9a-f]{32}$/, "fw: its MicroPython build");
    assert.match(
      io.stdout,
      new RegExp(
        `simulating 1 device \\(1 always on, 0 sleeping 0 s\\) on ${literal(address)}, broker ${literal(s.brokerUrl)}, link none; the last 1 is a Pico W \\(app updates only, trusting the server's app key\\)\\. Ctrl-C stops\\.`,
      ),
    );
    await untilOutput(
      io,
      new RegExp(
        `pico-1\\s+checked in: fw ${device.fw}, ip ${literal(address)}, wake power, always on; chip rp2, no app yet`,
      ),
    );

    const job = await bridge.request("update", { device: "pico-1", firmware: "thermostat@1.0.0" });
    const end = await Promise.race([jobEnd(bridge, job.id, 60_000), ended]);
    assert.equal(end.state, "succeeded", end.error ?? "");
    // It fetches the release itself, as an ESP32 does: no OTA mode, no push.
    assert.match(
      io.stdout,
      new RegExp(`pico-1\\s+update job ${job.id} accepted: the device fetches it itself`),
    );
    await untilOutput(io, /pico-1\s+agent: thermostat 1\.0\.0/, 30_000);
    await untilOutput(
      io,
      /pico-1\s+checked in: fw [0-9a-f]{32}, .*; chip rp2, app thermostat 1\.0\.0/,
      30_000,
    );
    // The job's command, still retained when the board comes back, is the one it just did: no note.
    await untilOutput(io, new RegExp(`pico-1\\s+agent: mpota: job ${job.id} done`), 30_000);
    assert.doesNotMatch(io.stdout, /replayed/);
    const view = await bridge.request("device", { id: "pico-1" });
    assert.deepEqual([view.app?.name, view.app?.version], ["thermostat", "1.0.0"]);

    await assert.rejects(
      bridge.request("update", { device: "pico-1", firmware: "sensor@2.0" }),
      /the device is a Raspberry Pi Pico W \(rp2\), which takes app updates only: mpota does not update its firmware\. Update its app with an app release/,
    );
  } finally {
    await endServerRun({ stop, running, io }, { bridge, s, data });
  }
  assert.match(
    io.stdout,
    new RegExp(
      `pico-1\\s+${literal(address)}\\s+off\\s+[0-9a-f]{32}\\s+always on\\s+none\\s+\\d+\\s+\\d+\\s+0`,
    ),
  );
});
