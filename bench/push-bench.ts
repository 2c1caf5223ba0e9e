// npm run bench: pushes a deterministic 600 KiB image to the emulator over
// real loopback UDP under each link profile and prints the figures issue 4
// asks for. Results: bench/results/push.json and bench/results/push.svg.
// Then the ESP32 rows (bench/esp32-pull-bench.ts): `npm run bench -- esp32`
// runs those alone; and the app rows (bench/app-update-bench.ts): `npm run
// bench -- app`.
import { writeFileSync } from "node:fs";
import { Worker } from "node:worker_threads";
import { deviceFloorMs } from "../src/emulator/timing.ts";
import { systemClock } from "../src/net/clock.ts";
import { NodeUdpNetwork } from "../src/net/node-udp.ts";
import { seededRandom } from "../src/net/random.ts";
import { signImage } from "../src/protocol/image-packets.ts";
import { generateKeyPair, type SigningKey } from "../src/protocol/rsa-key.ts";
import { probeBlockSize } from "../src/transfer/block-probe.ts";
import { COMPAT_TUNING, DEFAULT_TUNING, push } from "../src/transfer/sender.ts";
import { runAppBench } from "./app-update-bench.ts";
import { runEsp32Bench } from "./esp32-pull-bench.ts";
import { writeResults } from "./results-file.ts";

const IMAGE_SIZE = 600 * 1024;

interface Row {
  name: string;
  link: "lan" | "busy" | "poor";
  mode: "mpota" | "compat";
  block: number | "auto";
  baudRate: number;
  maxDatagramBytes?: number;
}

interface Measured extends Row {
  seconds: number;
  floorSeconds: number;
  timePerFloor: number;
  blockUsed: number;
  datagramsSent: number;
  retransmits: number;
  timeouts: number;
  receiveOverflows: number;
  linkLost: number;
  speedupOverCompat?: number;
}

function image(): Uint8Array {
  const rnd = seededRandom(600);
  const out = new Uint8Array(IMAGE_SIZE);
  for (let i = 0; i < out.length; i++) out[i] = Math.floor(rnd() * 256);
  return out;
}

async function startDevice(row: Row, key: SigningKey, address: string) {
  const worker = new Worker(new URL("./worker-bootstrap.mjs", import.meta.url), {
    workerData: {
      entry: new URL("./emulator-worker.ts", import.meta.url).href,
      address,
      modulusHex: Buffer.from(key.modulus).toString("hex"),
      link: row.link,
      maxDatagramBytes: row.maxDatagramBytes,
      baudRate: row.baudRate,
      seed: 8266,
    },
  });
  const ready = await new Promise<{ port: number }>((resolve, reject) => {
    worker.once("message", resolve);
    worker.once("error", reject);
  });
  const stats = () =>
    new Promise<{ stats: { queueOverflows: number }; link?: { inboundLost: number; outboundLost: number } }>(
      (resolve) => {
        worker.once("message", resolve);
        worker.postMessage({ type: "stats" });
      },
    );
  const close = async () => {
    worker.postMessage({ type: "close" });
    await new Promise((resolve) => worker.once("exit", resolve));
  };
  return { endpoint: { address, port: ready.port }, stats, close };
}

async function run(row: Row, key: SigningKey, data: Uint8Array, index: number): Promise<Measured> {
  const address = `127.0.${10 + index}.2`;
  const device = await startDevice(row, key, address);
  const channel = await new NodeUdpNetwork().bind({ address: "127.0.0.1", connect: device.endpoint });
  try {
    const started = performance.now();
    let block = typeof row.block === "number" ? row.block : 256;
    let firstSeq = 0;
    if (row.block === "auto") {
      const probe = await probeBlockSize({
        channel,
        device: device.endpoint,
        clock: systemClock,
        large: signImage(data.subarray(0, 1024), key, 1024)[0] as never,
        fallback: signImage(data.subarray(0, 256), key, 256)[0] as never,
        waitMs: 10_000,
      });
      block = probe.block === 1024 ? 1024 : 256;
      firstSeq = probe.lastSeq;
    }
    const packets = signImage(data, key, block);
    const result = await push({
      channel,
      device: device.endpoint,
      clock: systemClock,
      tuning: row.mode === "compat" ? COMPAT_TUNING : DEFAULT_TUNING,
      firstSeq,
      source: {
        totalBytes: data.length,
        packets: (async function* () {
          yield* packets;
        })(),
      },
    });
    const seconds = (performance.now() - started) / 1000;
    await new Promise((r) => setTimeout(r, 300));
    const s = await device.stats();
    const floorSeconds = deviceFloorMs(data.length, block, { baudRate: row.baudRate }) / 1000;
    return {
      ...row,
      seconds,
      floorSeconds,
      timePerFloor: seconds / floorSeconds,
      blockUsed: block,
      datagramsSent: result.datagramsSent,
      retransmits: result.retransmits,
      timeouts: result.timeouts,
      receiveOverflows: s.stats.queueOverflows,
      linkLost: (s.link?.inboundLost ?? 0) + (s.link?.outboundLost ?? 0),
    };
  } finally {
    await channel.close();
    await device.close();
  }
}

function svgChart(rows: Measured[]): string {
  const width = 760;
  const barH = 22;
  const left = 250;
  const max = Math.max(...rows.map((r) => r.seconds)) * 1.1;
  const scale = (s: number) => ((width - left - 60) * s) / max;
  const bars = rows
    .map((r, i) => {
      const y = 40 + i * (barH + 8);
      const colour = r.mode === "compat" ? "#b0b0b0" : "#2f7ed8";
      return `<text x="${left - 8}" y="${y + 15}" text-anchor="end" font-size="12">${r.name}</text>
<rect x="${left}" y="${y}" width="${scale(r.seconds).toFixed(1)}" height="${barH}" fill="${colour}"/>
<line x1="${(left + scale(r.floorSeconds)).toFixed(1)}" x2="${(left + scale(r.floorSeconds)).toFixed(1)}" y1="${y - 2}" y2="${y + barH + 2}" stroke="#d33" stroke-width="2"/>
<text x="${(left + scale(r.seconds) + 6).toFixed(1)}" y="${y + 15}" font-size="12">${r.seconds.toFixed(1)} s</text>`;
    })
    .join("\n");
  const height = 60 + rows.length * (barH + 8);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" role="img">
<title>mpota push benchmark</title>
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="22" font-size="14" font-weight="bold">mpota push: 600 KiB to the emulated yaota8266 receiver (blue mpota, grey --compat, red line device floor)</text>
${bars}
</svg>
`;
}

async function main(): Promise<void> {
  const key = generateKeyPair(512).key;
  const data = image();
  const rows: Row[] = [
    { name: "lan, mpota, 256", link: "lan", mode: "mpota", block: 256, baudRate: 115200 },
    { name: "lan, --compat, 256", link: "lan", mode: "compat", block: 256, baudRate: 115200 },
    { name: "busy, mpota, 256", link: "busy", mode: "mpota", block: 256, baudRate: 115200 },
    { name: "busy, --compat, 256", link: "busy", mode: "compat", block: 256, baudRate: 115200 },
    { name: "poor, mpota, 256", link: "poor", mode: "mpota", block: 256, baudRate: 115200 },
    { name: "poor, --compat, 256", link: "poor", mode: "compat", block: 256, baudRate: 115200 },
    { name: "poor, mpota, --block auto", link: "poor", mode: "mpota", block: "auto", baudRate: 115200 },
    { name: "lan, mpota, --block auto", link: "lan", mode: "mpota", block: "auto", baudRate: 115200 },
    {
      name: "lan ≤548 B, --block auto",
      link: "lan",
      mode: "mpota",
      block: "auto",
      baudRate: 115200,
      maxDatagramBytes: 548,
    },
    { name: "lan, mpota, 256, 921600 baud", link: "lan", mode: "mpota", block: 256, baudRate: 921600 },
  ];
  const only = process.argv.slice(2);
  const selected = only.length ? rows.filter((r) => only.some((o) => r.name.includes(o))) : rows;
  if (selected.length === 0) {
    await runEsp32Bench(only);
    return runAppBench(only);
  }
  const results: Measured[] = [];
  for (const [i, row] of selected.entries()) {
    process.stderr.write(`running: ${row.name} ... `);
    const m = await run(row, key, data, i);
    results.push(m);
    process.stderr.write(`${m.seconds.toFixed(1)} s\n`);
  }
  for (const r of results) {
    const compat = results.find((c) => c.link === r.link && c.mode === "compat" && !c.maxDatagramBytes);
    if (compat && r !== compat && r.baudRate === compat.baudRate)
      r.speedupOverCompat = compat.seconds / r.seconds;
  }
  const header = [
    "row",
    "seconds",
    "floor s",
    "time/floor",
    "vs compat",
    "block",
    "sent",
    "rexmit",
    "timeouts",
    "overflows",
    "link lost",
  ];
  const lines = results.map((r) => [
    r.name,
    r.seconds.toFixed(1),
    r.floorSeconds.toFixed(1),
    r.timePerFloor.toFixed(2),
    r.speedupOverCompat ? `${r.speedupOverCompat.toFixed(2)}x` : "-",
    String(r.blockUsed),
    String(r.datagramsSent),
    String(r.retransmits),
    String(r.timeouts),
    String(r.receiveOverflows),
    String(r.linkLost),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => (l[i] as string).length)));
  const fmt = (cells: string[]) =>
    cells
      .map((c, i) => (i === 0 ? c.padEnd(widths[i] as number) : c.padStart(widths[i] as number)))
      .join("  ");
  console.log(fmt(header));
  for (const l of lines) console.log(fmt(l));
  const all = writeResults(
    "push.json",
    { node: process.version, imageBytes: IMAGE_SIZE },
    results,
    (r) => r.name,
    rows.map((r) => r.name),
  );
  writeFileSync(new URL("./results/push.svg", import.meta.url), svgChart(all));
  console.log("written: bench/results/push.json, bench/results/push.svg");
  await runEsp32Bench(only);
  await runAppBench(only);
}

await main();
