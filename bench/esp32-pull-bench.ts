// The ESP32 rows of `npm run bench` (issue 20): a 1.5 MiB slot's image
// pulled by the real agent (device/ under MicroPython) on the emulated ESP32
// from the real server, over a relay that stands for the WiFi link, with the
// board's flash and boot timed by ESP32_TYPICAL (src/emulator/esp32-timing.ts).
// Wall time from the update request to the job's success (the new firmware
// booted and reported), against the model's floor. Results:
// bench/results/esp32-pull.json.
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { DEVICE_DIR } from "../src/agent-host/agent-files.ts";
import { Esp32Board } from "../src/emulator/esp32-board.ts";
import {
  ESP32_TYPICAL,
  type Esp32Timing,
  esp32FlashFloorMs,
  NO_ESP32_DELAY,
  readMs,
} from "../src/emulator/esp32-timing.ts";
import { BridgeClient } from "../src/server/bridge/bridge-client.ts";
import { SimulatedEsp32Device } from "../src/simulator/simulated-esp32-device.ts";
import { jobEnd } from "../test/server/support/job-suite.ts";
import { FAST_TIMINGS, startTestServer, tempDir } from "../test/server/support/test-server.ts";
import { eventually } from "../test/server/support/wait.ts";
import { provisioned } from "../test/simulator/support.ts";
import { buildEsp32AppImage, esp32Identity } from "../test/support/esp32-image.ts";
import { writeResults } from "./results-file.ts";
import { type LinkModel, shapedLink } from "./shaped-link.ts";

/** The OTA variant's slot is 0x180000 bytes; real builds come close to it. */
const IMAGE_SIZE = 0x180000 - 4096;
/** HTTP request and response headers, the TCP connect and the request's round trip, in the floor. */
const HTTP_OVERHEAD_BYTES = 400;

export interface Esp32Row {
  name: string;
  link: LinkModel;
  /** The board's timing (default ESP32_TYPICAL). */
  timing?: Esp32Timing;
}

/** One-way delays of the ESP8266 rows' lan and poor profiles; rates a MicroPython ESP32 reaches over TCP. */
export const ESP32_ROWS: Esp32Row[] = [
  { name: "esp32 pull, lan (2 ms, 1 MB/s)", link: { delayMs: 2, bytesPerSecond: 1_000_000 } },
  { name: "esp32 pull, poor (15 ms, 64 KiB/s)", link: { delayMs: 15, bytesPerSecond: 65_536 } },
  // No flash, boot or link cost: what the emulation itself (MicroPython in
  // wasm, the host calls, the server in this process) adds to every row.
  {
    name: "esp32 pull, no model (emulation alone)",
    link: { delayMs: 0, bytesPerSecond: 1e12 },
    timing: NO_ESP32_DELAY,
  },
];

export interface Esp32Measured {
  name: string;
  link: LinkModel;
  imageBytes: number;
  seconds: number;
  floorSeconds: number;
  flashSeconds: number;
  linkSeconds: number;
  timePerFloor: number;
  /** What the board charged for its flash calls during the job (modelled ms, as seconds). */
  chargedSeconds: number;
  httpBytes: number;
  mqttBytes: number;
}

/**
 * The model's best case: the transfer bound by the flash (every sector
 * erased and programmed) or by the link, whichever is slower (the two
 * overlap: lwIP keeps receiving while the flash is busy), then set_boot()'s
 * read of the image, the reset and boot, and the round trips of the command
 * and of the first report.
 */
export function esp32FloorMs(imageSize: number, link: LinkModel, t: Esp32Timing = ESP32_TYPICAL) {
  const flashMs = esp32FlashFloorMs(imageSize, t);
  const linkMs = ((imageSize + HTTP_OVERHEAD_BYTES) * 1000) / link.bytesPerSecond + 4 * link.delayMs;
  const floorMs = Math.max(flashMs, linkMs) + readMs(t, imageSize) + t.bootMs + 4 * link.delayMs;
  return { floorMs, flashMs, linkMs };
}

export async function runEsp32Row(row: Esp32Row, index: number): Promise<Esp32Measured> {
  const data = tempDir("mpota-bench-esp32-");
  let httpPort = 0;
  const http = await shapedLink(row.link, () => httpPort);
  let brokerPort = 0;
  const mqtt = await shapedLink(row.link, () => brokerPort);
  const s = await startTestServer(data.dir, {
    http: { host: "127.0.0.1", port: 0 },
    deviceUrl: `http://127.0.0.1:${http.port}`,
    timings: { ...FAST_TIMINGS, firstAnswerMs: 60_000, verifyTimeoutMs: 60_000 },
  });
  const bridge = await BridgeClient.connect({ connection: { url: s.url } });
  const A = { size: 200_000, seed: 70 + index, banner: "v1.26.0 on 2025-08-09" };
  const B = { size: IMAGE_SIZE, seed: 80 + index, banner: "v1.27.0 on 2025-12-09" };
  const imageB = buildEsp32AppImage(B);
  let device: SimulatedEsp32Device | undefined;
  try {
    const address = s.server.http?.address;
    if (!address) throw new Error("the server has no HTTP listener");
    httpPort = address.port;
    brokerPort = Number(new URL(s.brokerUrl).port);
    for (const [options, version] of [
      [A, "1.0"],
      [B, "2.0"],
    ] as const) {
      await bridge.request("firmware/add", {
        image: Buffer.from(buildEsp32AppImage(options)).toString("base64"),
        name: "esp32-bench",
        version,
      });
    }
    const id = `esp-bench-${index}`;
    const access = await provisioned(s, id);
    let chargedMs = 0;
    const board = new (class extends Esp32Board {
      override callMs(name: string, args: ReadonlyArray<string | number>): number {
        const ms = super.callMs(name, args);
        chargedMs += ms;
        return ms;
      }
    })({ timing: row.timing ?? ESP32_TYPICAL });
    device = new SimulatedEsp32Device({
      id,
      broker: { ...access.broker, host: "127.0.0.1", port: mqtt.port },
      board,
      firmware: buildEsp32AppImage(A),
      agent: {
        ...access.agent,
        files: { "mpota_pull.py": readFileSync(join(DEVICE_DIR, "mpota_pull.py"), "utf8") },
      },
    });
    await device.start();
    const fwA = esp32Identity(A).slice(0, 32);
    await eventually(
      async () => (await bridge.request("devices", {})).find((d) => d.id === id && d.fw === fwA),
      `${id} on A`,
      60_000,
    );
    const [up0, down0, mup0, mdown0] = [http.up, http.down, mqtt.up, mqtt.down];
    chargedMs = 0;
    const started = performance.now();
    const job = await bridge.request("update", { device: id, firmware: "esp32-bench@2.0" });
    const end = await jobEnd(bridge, job.id, 300_000);
    const seconds = (performance.now() - started) / 1000;
    if (end.state !== "succeeded") throw new Error(`the ESP32 job ended ${end.state}: ${end.error ?? ""}`);
    if (device.fw !== esp32Identity(B).slice(0, 32)) throw new Error("the device does not run B");
    const { floorMs, flashMs, linkMs } = esp32FloorMs(imageB.length, row.link, row.timing);
    return {
      name: row.name,
      link: row.link,
      imageBytes: imageB.length,
      seconds,
      floorSeconds: floorMs / 1000,
      flashSeconds: flashMs / 1000,
      linkSeconds: linkMs / 1000,
      timePerFloor: floorMs > 10 ? seconds / (floorMs / 1000) : 0,
      chargedSeconds: chargedMs / 1000,
      httpBytes: http.up - up0 + (http.down - down0),
      mqttBytes: mqtt.up - mup0 + (mqtt.down - mdown0),
    };
  } finally {
    await device?.stop();
    await bridge.close();
    await s.stop();
    await http.close();
    await mqtt.close();
    data.remove();
  }
}

/**
 * The agent's heap as test/agent/pull-heap.test.ts measures it (the wasm
 * build's gc.mem_free low-water mark means nothing): what mpota_pull keeps
 * after import, and what its transfer loop allocates over a 1.5 MiB image.
 */
export function agentHeap(): { residentBytes: number; transferBytes: number; imageBytes: number } | null {
  const run = spawnSync(
    process.execPath,
    ["--import", "tsx", "--test", "--test-reporter=tap", "test/agent/pull-heap.test.ts"],
    { encoding: "utf8", cwd: new URL("..", import.meta.url).pathname },
  );
  const m = /mpota_pull: (\d+) bytes of heap after import; a (\d+)-byte transfer allocates (\d+) bytes/.exec(
    run.stdout,
  );
  return m ? { residentBytes: Number(m[1]), imageBytes: Number(m[2]), transferBytes: Number(m[3]) } : null;
}

/** Runs the rows whose names contain one of `only` (all when empty), prints them and writes the results. */
export async function runEsp32Bench(only: string[]): Promise<void> {
  const rows = only.length ? ESP32_ROWS.filter((r) => only.some((o) => r.name.includes(o))) : ESP32_ROWS;
  if (rows.length === 0) return;
  const results: Esp32Measured[] = [];
  for (const [i, row] of rows.entries()) {
    process.stderr.write(`running: ${row.name} ... `);
    const m = await runEsp32Row(row, i);
    results.push(m);
    process.stderr.write(`${m.seconds.toFixed(1)} s\n`);
  }
  const heap = agentHeap();
  for (const r of results) {
    console.log(
      [
        r.name.padEnd(36),
        `${r.seconds.toFixed(1)} s`,
        `floor ${r.floorSeconds.toFixed(1)} s (flash ${r.flashSeconds.toFixed(1)}, link ${r.linkSeconds.toFixed(1)})`,
        r.floorSeconds > 0.01 ? `x${r.timePerFloor.toFixed(2)}` : "-",
        `flash charged ${r.chargedSeconds.toFixed(1)} s`,
        `HTTP ${r.httpBytes} B`,
        `MQTT ${r.mqttBytes} B`,
      ].join("  "),
    );
  }
  if (heap) {
    console.log(
      `agent heap (test/agent/pull-heap.test.ts): mpota_pull keeps ${heap.residentBytes} B after import; a ${heap.imageBytes}-byte transfer allocates ${heap.transferBytes} B in all, on top of its 4096-byte block buffer`,
    );
  }
  writeResults(
    "esp32-pull.json",
    {
      node: process.version,
      // The rows' wall time moves with the machine's load; this says what it was.
      loadAverage: loadavg(),
      timing: ESP32_TYPICAL,
      heap,
    },
    results,
    (r) => r.name,
    ESP32_ROWS.map((r) => r.name),
  );
  console.log("written: bench/results/esp32-pull.json");
}
