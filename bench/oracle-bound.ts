// npm run bench:oracle: what an ORACLE sender reaches against model B, in
// virtual time, next to mpota's sender on the same seeds. The oracle
// (bench/oracle-sender.ts) is told what the receiver did with each datagram,
// which no sender can be told by yaota8266: it is a bound, not a sender anyone
// can build. "nack": every answer (drops included, with the offset expected)
// one return-way delay after the handling, never lost; "late": told of a drop
// only when a missing acknowledgement would be surely late, and never wrongly
// (an ack-only sender's timing without its false alarms); "perfect": told at
// once, and which datagrams are still on their way. Each oracle runs at a
// sweep of fixed spacings; seeds 1 to 6, 600 KiB at 256-byte blocks, time /
// floor against model B's floor. Results: bench/results/oracle-bound.json.
//
//   node --import tsx bench/oracle-bound.ts [row-name-substring...]
import { mkdirSync, writeFileSync } from "node:fs";
import { LINK_PROFILES, type LinkProfile } from "../src/net/impairment.ts";
import { seededRandom } from "../src/net/random.ts";
import { generateKeyPair } from "../src/protocol/rsa-key.ts";
import { type OracleCounts, type OracleKind, OracleSender } from "./oracle-sender.ts";
import { runVirtualPush, type VirtualResult } from "./virtual-push.ts";

const IMAGE_SIZE = 600 * 1024;
const SEEDS = [1, 2, 3, 4, 5, 6];
/** From the receiver's beat (10.4 ms) to past the jitter's whole spread (20 ms). */
const SPACINGS = [10.4, 11, 12, 13, 14, 15, 16, 18, 20];
const KINDS: OracleKind[] = ["late", "nack", "perfect"];

interface Row {
  name: string;
  link: LinkProfile;
  jitter: "from" | "around";
}

const rows: Row[] = [
  { name: "poor, jitter read as ±10 ms, 256", link: LINK_PROFILES.poor, jitter: "around" },
  { name: "poor, 256", link: LINK_PROFILES.poor, jitter: "from" },
];

interface Cell {
  sender: string;
  spacingMs?: number;
  timePerFloor: number;
  minTimePerFloor: number;
  maxTimePerFloor: number;
  seconds: number;
  floorSeconds: number;
  datagramsSent: number;
  goBacks: number;
  /** Oracle only: forward losses, drops while the expected datagram was on its way, duplicates. */
  lost?: number;
  overtaken?: number;
  duplicates?: number;
  unexpected: number;
  queueOverflows: number;
  flashExact: boolean;
}

const key = generateKeyPair(512).key;
const rnd = seededRandom(600);
const image = new Uint8Array(IMAGE_SIZE).map(() => Math.floor(rnd() * 256));

function summarize(
  sender: string,
  results: VirtualResult[],
  counts: OracleCounts[],
  spacingMs?: number,
): Cell {
  const avg = (values: number[]) => values.reduce((a, v) => a + v, 0) / values.length;
  const ratios = results.map((r) => r.seconds / r.floorSeconds);
  const cell: Cell = {
    sender,
    timePerFloor: avg(ratios),
    minTimePerFloor: Math.min(...ratios),
    maxTimePerFloor: Math.max(...ratios),
    seconds: avg(results.map((r) => r.seconds)),
    floorSeconds: (results[0] as VirtualResult).floorSeconds,
    datagramsSent: avg(results.map((r) => r.datagramsSent)),
    goBacks: avg(results.map((r) => r.timeouts)),
    unexpected: avg(results.map((r) => r.unexpected)),
    queueOverflows: Math.max(...results.map((r) => r.queueOverflows)),
    flashExact: results.every((r) => r.flashExact),
  };
  if (spacingMs !== undefined) cell.spacingMs = spacingMs;
  if (counts.length > 0) {
    cell.lost = avg(counts.map((c) => c.lost));
    cell.overtaken = avg(counts.map((c) => c.overtaken));
    cell.duplicates = avg(counts.map((c) => c.duplicates));
  }
  return cell;
}

function print(row: string, cell: Cell): void {
  console.log(
    [
      row.padEnd(34),
      (cell.spacingMs === undefined ? cell.sender : `${cell.sender} ${cell.spacingMs} ms`).padEnd(20),
      `x${cell.timePerFloor.toFixed(3)}`,
      `(${cell.minTimePerFloor.toFixed(2)}-${cell.maxTimePerFloor.toFixed(2)})`,
      `${cell.seconds.toFixed(1)} s`.padStart(7),
      `sent ${cell.datagramsSent.toFixed(0)}`,
      `go-backs ${cell.goBacks.toFixed(0)}`,
      `dropped ${cell.unexpected.toFixed(0)}`,
      cell.lost === undefined ? "" : `lost ${cell.lost.toFixed(0)}`,
      cell.overtaken === undefined ? "" : `overtaken ${cell.overtaken.toFixed(0)}`,
      cell.duplicates === undefined ? "" : `dup ${cell.duplicates.toFixed(0)}`,
      `overflows ${cell.queueOverflows}`,
      cell.flashExact ? "flash exact" : "FLASH DIFFERS",
    ]
      .filter(Boolean)
      .join("  "),
  );
}

const only = process.argv.slice(2);
const selected = only.length ? rows.filter((r) => only.some((o) => r.name.includes(o))) : rows;
const out: Array<{ row: string } & Cell> = [];
let broken = false;
for (const row of selected) {
  const base = { model: "model-b" as const, link: row.link, mode: "mpota" as const, block: 256, image, key };
  const real: VirtualResult[] = [];
  for (const seed of SEEDS)
    real.push(await runVirtualPush({ ...base, seed, modelB: { jitter: row.jitter } }));
  const cells = [summarize("mpota", real, [])];
  print(row.name, cells[0] as Cell);
  for (const kind of KINDS) {
    for (const spacingMs of SPACINGS) {
      const results: VirtualResult[] = [];
      const counts: OracleCounts[] = [];
      for (const seed of SEEDS) {
        const oracle = new OracleSender({
          kind,
          spacingMs,
          link: row.link,
          jitter: row.jitter,
          random: seededRandom(seed * 7919 + 1),
        });
        results.push(
          await runVirtualPush({
            ...base,
            seed,
            modelB: { jitter: row.jitter, observe: oracle.observe },
            sender: (context) => oracle.send(context),
          }),
        );
        counts.push(oracle.counts);
      }
      const cell = summarize(`${kind} oracle`, results, counts, spacingMs);
      cells.push(cell);
      print(row.name, cell);
    }
  }
  for (const cell of cells) {
    out.push({ row: row.name, ...cell });
    if (!cell.flashExact || cell.queueOverflows > 0) broken = true;
  }
}
const dir = new URL("./results/", import.meta.url);
mkdirSync(dir, { recursive: true });
writeFileSync(
  new URL("oracle-bound.json", dir),
  `${JSON.stringify({ date: new Date().toISOString(), node: process.version, imageBytes: IMAGE_SIZE, seeds: SEEDS, note: "oracle rows are bounds, not senders: they are told what the receiver did with each datagram", rows: out }, null, 2)}\n`,
);
if (broken) {
  console.error("A flash differed or the receive queue overflowed: the figures above do not count.");
  process.exitCode = 1;
}
