// The app rows of `npm run bench` (issue 19): a 20-file app of about 60 KiB
// installed, then changed in one file, by the real agent (device/ under
// MicroPython) on the emulated ESP32 and ESP8266, from the real server over
// relays that stand for the WiFi link (bench/shaped-link.ts). Per row: wall
// time from the update request to the job's success (the new app started
// and its state reached the server), the bytes that crossed the HTTP and
// MQTT relays, and the bytes that changed (the manifest and the files the
// board lacked). Then the agent's heap during an update, from the tests that
// measure it, and the time of the agent's signature check on a command,
// measured here.
// Results: bench/results/app-update.json.
import { spawnSync } from "node:child_process";
import { generateKeyPairSync, sign } from "node:crypto";
import { loadavg } from "node:os";
import { defaultAppKeyPath, loadAppKey } from "../src/apps/app-key.ts";
import { rsaNumbers } from "../src/protocol/rsa-numbers.ts";
import { BridgeClient } from "../src/server/bridge/bridge-client.ts";
import { SimulatedDevice } from "../src/simulator/simulated-device.ts";
import { SimulatedEsp32Device } from "../src/simulator/simulated-esp32-device.ts";
import { buildSyntheticFirmware } from "../src/simulator/synthetic-firmware.ts";
import { jobEnd } from "../test/server/support/job-suite.ts";
import { FAST_TIMINGS, startTestServer, tempDir } from "../test/server/support/test-server.ts";
import { eventually } from "../test/server/support/wait.ts";
import { addressPool, FAST, key, provisioned, SHORT_GPIO } from "../test/simulator/support.ts";
import { addAppRelease, twentyFiles } from "../test/support/app-releases.ts";
import { freshInterpreter } from "../test/support/device-interpreter.ts";
import { buildEsp32AppImage } from "../test/support/esp32-image.ts";
import { writeResults } from "./results-file.ts";
import { type LinkModel, shapedLink } from "./shaped-link.ts";

const LAN: LinkModel = { delayMs: 2, bytesPerSecond: 1_000_000 };
const FILE_BYTES = 3072;

/** 20 files of 3 KiB (60 KiB); `changed` gives one module the version's text. */
const appFiles = (version: string, changed?: number) =>
  twentyFiles(version, { fileBytes: FILE_BYTES, ...(changed !== undefined ? { changed } : {}) });

export interface AppRow {
  board: "esp32" | "esp8266";
  what: (typeof APP_STEPS)[number];
  link: LinkModel;
  seconds: number;
  appBytes: number;
  /** The manifest and the files the board lacked: what had to travel. */
  changedBytes: number;
  httpBytes: number;
  mqttBytes: number;
}

/** One board: the first install, then a one-file change; two rows. */
export async function runAppBoard(board: "esp32" | "esp8266", link: LinkModel = LAN): Promise<AppRow[]> {
  const data = tempDir("mpota-bench-app-");
  let httpPort = 0;
  const http = await shapedLink(link, () => httpPort);
  let brokerPort = 0;
  const mqtt = await shapedLink(link, () => brokerPort);
  const s = await startTestServer(data.dir, {
    http: { host: "127.0.0.1", port: 0 },
    deviceUrl: `http://127.0.0.1:${http.port}`,
    timings: { ...FAST_TIMINGS, firstAnswerMs: 60_000, verifyTimeoutMs: 60_000 },
  });
  const bridge = await BridgeClient.connect({ connection: { url: s.url } });
  let stop: (() => Promise<void>) | undefined;
  try {
    const address = s.server.http?.address;
    if (!address) throw new Error("the server has no HTTP listener");
    httpPort = address.port;
    brokerPort = Number(new URL(s.brokerUrl).port);
    const appKey = loadAppKey(defaultAppKeyPath(data.dir), { create: true });
    const v1 = appFiles("1.0.0");
    const v2 = appFiles("1.0.1", 7);
    const m1 = await addAppRelease(bridge, appKey, "bench-app", "1.0.0", v1);
    const m2 = await addAppRelease(bridge, appKey, "bench-app", "1.0.1", v2);
    const id = `app-bench-${board}`;
    const access = await provisioned(s, id);
    const broker = { ...access.broker, host: "127.0.0.1", port: mqtt.port };
    const agent = { ...access.agent, appKeys: [appKey.modulusHex] };
    if (board === "esp32") {
      const d = new SimulatedEsp32Device({
        id,
        broker,
        firmware: buildEsp32AppImage({ size: 200_000, seed: 90 }),
        agent,
      });
      await d.start();
      stop = () => d.stop();
    } else {
      const d = new SimulatedDevice({
        id,
        address: addressPool()(),
        broker,
        key,
        firmware: buildSyntheticFirmware({ size: 40_000, seed: 91 }),
        timing: FAST,
        settings: SHORT_GPIO,
        agent: { ...agent, filesystem: "fat" },
      });
      await d.start();
      stop = () => d.stop();
    }
    await eventually(
      async () => (await bridge.request("devices", {})).find((x) => x.id === id && x.app?.board === board),
      `${id} reports its app`,
      60_000,
    );
    const rows: AppRow[] = [];
    const total = (files: Map<string, Buffer>) => [...files.values()].reduce((n, b) => n + b.length, 0);
    for (const [what, version, m, changedBytes] of [
      ["first install", "1.0.0", m1, m1.bytes.length + total(v1)],
      ["one-file change", "1.0.1", m2, m2.bytes.length + (v2.get("m07.py") as Buffer).length],
    ] as const) {
      const [up0, down0, mup0, mdown0] = [http.up, http.down, mqtt.up, mqtt.down];
      const started = performance.now();
      const job = await bridge.request("update", { device: id, firmware: `bench-app@${version}` });
      const end = await jobEnd(bridge, job.id, 300_000);
      const seconds = (performance.now() - started) / 1000;
      if (end.state !== "succeeded")
        throw new Error(`the ${board} app job ended ${end.state}: ${end.error ?? ""}`);
      const device = await bridge.request("device", { id });
      if (device.app?.id !== m.id) throw new Error(`${id} does not run ${version}`);
      rows.push({
        board,
        what,
        link,
        seconds,
        appBytes: total(version === "1.0.0" ? v1 : v2),
        changedBytes,
        httpBytes: http.up - up0 + (http.down - down0),
        mqttBytes: mqtt.up - mup0 + (mqtt.down - mdown0),
      });
    }
    return rows;
  } finally {
    await stop?.();
    await bridge.close();
    await s.stop();
    await http.close();
    await mqtt.close();
    data.remove();
  }
}

/** Checks in one timed run of {@link verifyMicros}, timed runs of which it takes the median, and runs before those. */
const VERIFY_CHECKS = 20;
const VERIFY_RUNS = 7;
const VERIFY_WARMUP = 3;

/**
 * The time of one command signature check by the agent (mpota_cmd.verify,
 * RSA 2048, e = 65537) under MicroPython 1.27 (wasm), in µs: the median of
 * VERIFY_RUNS runs of VERIFY_CHECKS checks after VERIFY_WARMUP runs not
 * counted (the first runs take up to twice as long, while V8 recompiles the
 * hot wasm code), on the interpreter device-sources.test.ts checks the same
 * function on. Timed from JS: the wasm build's ticks_us() counts in whole
 * milliseconds. Throws, saying why, when it cannot measure.
 */
export async function verifyMicros(): Promise<{ median: number; runs: number[] }> {
  const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const n = rsaNumbers(publicKey).n.toString("hex");
  const msg = "mpota-cmd/2\nsim-2\n12\nota\nj-7f3a\n0123456789abcdef0123456789abcdef\n612352\n1.4.0\n0";
  const sig = sign("sha256", Buffer.from(msg), privateKey).toString("hex");
  const board = await freshInterpreter();
  const fail = (why: string) =>
    new Error(
      `Cannot measure the agent's signature check: ${why}. Run node --import tsx --test test/agent/device-sources.test.ts to see whether mpota_cmd.verify still works.`,
    );
  const run = (code: string) => {
    try {
      return board.lines(code);
    } catch (error) {
      throw fail(`MicroPython raised ${error instanceof Error ? error.message : String(error)}`);
    }
  };
  const answer = run(`import mpota_cmd
from binascii import unhexlify
n = unhexlify(${JSON.stringify(n)})
sig = unhexlify(${JSON.stringify(sig)})
msg = ${JSON.stringify(msg)}.encode()
def checks():
    for _ in range(${VERIFY_CHECKS}):
        if not mpota_cmd.verify(n, msg, sig):
            print("refused")
            return
print(mpota_cmd.verify(n, msg, sig), mpota_cmd.verify(n, msg + b"x", sig))`);
  if (answer.join("\n") !== "True False")
    throw fail(
      `mpota_cmd.verify answered ${JSON.stringify(answer)}, not "True False" for a good and a bad signature`,
    );
  const runs: number[] = [];
  for (let i = 0; i < VERIFY_WARMUP + VERIFY_RUNS; i++) {
    const started = performance.now();
    const printed = run("checks()");
    const us = ((performance.now() - started) * 1000) / VERIFY_CHECKS;
    if (printed.length > 0) throw fail(`a timed run printed ${JSON.stringify(printed)}`);
    if (i >= VERIFY_WARMUP) runs.push(Math.round(us));
  }
  const median = [...runs].sort((x, y) => x - y)[(VERIFY_RUNS - 1) / 2];
  if (median === undefined || !(median > 0)) throw fail(`the runs took ${JSON.stringify(runs)} us`);
  return { median, runs };
}

/** The heap figures the tests measure under MicroPython (wasm), read from their diagnostics. */
export function appHeap(): Record<string, number> | null {
  const run = (file: string) =>
    spawnSync(process.execPath, ["--import", "tsx", "--test", "--test-reporter=tap", file], {
      encoding: "utf8",
      cwd: new URL("..", import.meta.url).pathname,
    }).stdout;
  const sources = run("test/agent/device-sources.test.ts");
  const resident = (name: string) =>
    Number(
      new RegExp(`${name.replace(/[./]/g, "\\$&")}: \\d+ bytes of source, (\\d+) bytes of heap`).exec(
        sources,
      )?.[1],
    );
  const heapTest = run("test/apps/agent-app-heap.test.ts");
  const modules = /the update's modules: (\d+) bytes while an update runs; (\d+) after/.exec(heapTest);
  const boot =
    /the update boot: (\d+) bytes of modules; umqtt.simple, which it does without, (\d+) as .py/.exec(
      heapTest,
    );
  const steps =
    /ESP8266[^:]*: modules (\d+); first install: live \d+, step peak <= (\d+); one change: live \d+, step peak <= (\d+)/.exec(
      run("test/apps/update-heap.test.ts"),
    );
  if (!modules || !steps || !boot) return null;
  const agent =
    resident("mpota_agent.py") +
    resident("mpota_cmd.py") +
    resident("lib/umqtt/simple.py") +
    resident("ota.py");
  const updater = Number(modules[1]);
  // update-heap's step peak sits on the loader, mpota_app and mpota_stage: what a file step adds is above those.
  const stepWork = Math.max(Number(steps[2]), Number(steps[3])) - Number(steps[1]);
  const bootModules = Number(boot[1]);
  const umqtt = Number(boot[2]);
  return {
    agent,
    updater,
    stepWork,
    afterDropped: Number(modules[2]),
    peak: agent + updater + stepWork,
    bootModules,
    umqtt,
    bootPeak: bootModules + stepWork,
  };
}

/** The boards of the app rows, and what each row measures on each. */
const BOARDS = ["esp32", "esp8266"] as const;
const APP_STEPS = ["first install", "one-file change"] as const;

export async function runAppBench(only: string[]): Promise<void> {
  const boards = BOARDS.filter((b) => only.length === 0 || only.some((o) => `app ${b}`.includes(o)));
  if (boards.length === 0) return;
  // First, so that a check that cannot be measured stops the bench before the long rows.
  process.stderr.write("running: the agent's signature check ... ");
  const verify = await verifyMicros();
  process.stderr.write(`${verify.median} us\n`);
  const rows: AppRow[] = [];
  for (const b of boards) {
    process.stderr.write(`running: app update on ${b} ... `);
    const measured = await runAppBoard(b);
    rows.push(...measured);
    process.stderr.write(`${measured.map((r) => `${r.seconds.toFixed(1)} s`).join(", ")}\n`);
  }
  for (const r of rows) {
    console.log(
      [
        `app ${r.board}, ${r.what}`.padEnd(32),
        `${r.seconds.toFixed(1)} s`,
        `HTTP ${r.httpBytes} B`,
        `changed ${r.changedBytes} B`,
        `x${(r.httpBytes / r.changedBytes).toFixed(2)} of the changed bytes`,
        `MQTT ${r.mqttBytes} B`,
        `(app ${r.appBytes} B)`,
      ].join("  "),
    );
  }
  const heap = appHeap();
  if (heap) {
    console.log(
      `heap during an app update (MicroPython wasm, .py sources): under the agent (the ESP32) ${heap.agent} B of agent + ${heap.updater} B of update modules + ${heap.stepWork} B of a file step = ${heap.peak} B besides the loader (${heap.afterDropped} B stay after); in the ESP8266's update boot ${heap.bootModules} B of loader and update modules (its own MQTT publisher; umqtt.simple would add ${heap.umqtt} B as .py) + ${heap.stepWork} B of a file step = ${heap.bootPeak} B at the peak. An ESP8266 has about 30-40 KiB free after boot with WiFi.`,
    );
  }
  console.log(
    `one command signature check (RSA 2048, e = 65537) by the agent: ${verify.median} us (median of ${VERIFY_RUNS} runs of ${VERIFY_CHECKS} after ${VERIFY_WARMUP} not counted, MicroPython wasm on this machine; runs ${verify.runs.join(", ")} us)`,
  );
  const rowKey = (r: { board: string; what: string }) => `${r.board}, ${r.what}`;
  writeResults(
    "app-update.json",
    {
      node: process.version,
      loadAverage: loadavg(),
      heap,
      verifyMicros: verify.median,
      verifyRunsMicros: verify.runs,
    },
    rows,
    rowKey,
    BOARDS.flatMap((board) => APP_STEPS.map((what) => rowKey({ board, what }))),
  );
  console.log("written: bench/results/app-update.json");
}
