// npm run bench:virtual: the push bench in virtual time against two receiver
// models (the emulator, and bench/receiver-model-b.ts written apart from it),
// on seeded links: deterministic, and free of the loaded machine's timer
// noise. Each row runs seeds 1 and 2 and reports their mean; time / floor is
// against each model's own floor. Results: bench/results/push-virtual.json (a run
// of some rows updates those rows there).
//
//   node --import tsx bench/push-bench-virtual.ts [row-name-substring...]
import { LINK_PROFILES, type LinkProfile } from "../src/net/impairment.ts";
import { seededRandom } from "../src/net/random.ts";
import { generateKeyPair } from "../src/protocol/rsa-key.ts";
import { type PushTuning, tuningWithWindow } from "../src/transfer/push-tuning.ts";
import { writeResults } from "./results-file.ts";
import { type ReceiverModel, runVirtualPush, type VirtualResult, type VirtualRun } from "./virtual-push.ts";

const IMAGE_SIZE = 600 * 1024;
const SEEDS = [1, 2];

interface Row {
  name: string;
  link: LinkProfile;
  mode: "mpota" | "compat";
  block: number | "auto";
  models: ReceiverModel[];
  modelB?: VirtualRun["modelB"];
  /** The emulator's costs where they differ from the spec's model. */
  timing?: VirtualRun["timing"];
  /** The sender's tuning, when not its default (`--window`). */
  tuning?: PushTuning;
}

const worse: LinkProfile = {
  name: "worse",
  inbound: { delayMs: 15, jitterMs: 20, loss: 0.05 },
  outbound: { delayMs: 15, jitterMs: 20, loss: 0.05 },
};
const both: ReceiverModel[] = ["emulator", "model-b"];
const rows: Row[] = [
  { name: "lan, 256", link: LINK_PROFILES.lan, mode: "mpota", block: 256, models: both },
  { name: "lan, --compat", link: LINK_PROFILES.lan, mode: "compat", block: 256, models: both },
  { name: "busy, 256", link: LINK_PROFILES.busy, mode: "mpota", block: 256, models: both },
  { name: "busy, --compat", link: LINK_PROFILES.busy, mode: "compat", block: 256, models: both },
  { name: "poor, 256", link: LINK_PROFILES.poor, mode: "mpota", block: 256, models: both },
  { name: "poor, --compat", link: LINK_PROFILES.poor, mode: "compat", block: 256, models: both },
  { name: "poor, --block auto", link: LINK_PROFILES.poor, mode: "mpota", block: "auto", models: both },
  { name: "busy, --block auto", link: LINK_PROFILES.busy, mode: "mpota", block: "auto", models: both },
  // The spec's slower flash: erase 300-400 ms a sector worst case (and PUYA parts), 40-70 typical.
  ...[150, 400].flatMap((erase) =>
    (["lan", "poor"] as const).map(
      (link): Row => ({
        name: `${link}, flash erasing ${erase} ms a sector, 256`,
        link: LINK_PROFILES[link],
        mode: "mpota",
        block: 256,
        models: both,
        timing: { sectorEraseMs: erase },
        modelB: { eraseMs: erase },
      }),
    ),
  ),
  { name: "worse (5 %, 20 ms jitter), 256", link: worse, mode: "mpota", block: 256, models: both },
  {
    name: "poor, bursty loss (mean 3 in a row), 256",
    link: LINK_PROFILES.poor,
    mode: "mpota",
    block: 256,
    models: ["model-b"],
    modelB: { burst: { length: 3 } },
  },
  // A board whose receive queue holds 4 datagrams, not the model's 7: the default window against
  // `--window 3` (README, "If pushes to a device keep stopping that way").
  ...(
    [
      ["default window", undefined],
      ["--window 3", tuningWithWindow(3)],
    ] as const
  ).flatMap(([window, tuning]) =>
    (["lan", "busy", "poor"] as const).flatMap((link) =>
      ([256, "auto"] as const).map(
        (block): Row => ({
          name: `queue of 4, ${window}, ${link}, ${block === "auto" ? "--block auto" : block}`,
          link: LINK_PROFILES[link],
          mode: "mpota",
          block,
          models: both,
          timing: { receiveQueue: 4 },
          modelB: { slots: 4 },
          ...(tuning ? { tuning } : {}),
        }),
      ),
    ),
  ),
  {
    name: "poor, jitter read as ±10 ms, 256",
    link: LINK_PROFILES.poor,
    mode: "mpota",
    block: 256,
    models: ["model-b"],
    modelB: { jitter: "around" },
  },
  {
    name: "poor, jitter read as ±10 ms, --compat",
    link: LINK_PROFILES.poor,
    mode: "compat",
    block: 256,
    models: ["model-b"],
    modelB: { jitter: "around" },
  },
];

type Cell = VirtualResult & { timePerFloor: number };

function mean(results: VirtualResult[]): Cell {
  const avg = (f: (r: VirtualResult) => number) => results.reduce((a, r) => a + f(r), 0) / results.length;
  const first = results[0] as VirtualResult;
  return {
    ...first,
    seconds: avg((r) => r.seconds),
    datagramsSent: avg((r) => r.datagramsSent),
    retransmits: avg((r) => r.retransmits),
    timeouts: avg((r) => r.timeouts),
    unexpected: avg((r) => r.unexpected),
    queueOverflows: Math.max(...results.map((r) => r.queueOverflows)),
    flashExact: results.every((r) => r.flashExact),
    timePerFloor: avg((r) => r.seconds / r.floorSeconds),
  };
}

const key = generateKeyPair(512).key;
const rnd = seededRandom(600);
const image = new Uint8Array(IMAGE_SIZE).map(() => Math.floor(rnd() * 256));
const only = process.argv.slice(2);
const selected = only.length ? rows.filter((r) => only.some((o) => r.name.includes(o))) : rows;
const out: Array<{ row: string; model: ReceiverModel } & Cell> = [];
for (const row of selected) {
  for (const model of row.models) {
    const results: VirtualResult[] = [];
    for (const seed of SEEDS) {
      results.push(
        await runVirtualPush({
          model,
          link: row.link,
          mode: row.mode,
          block: row.block,
          seed,
          image,
          key,
          ...(row.modelB ? { modelB: row.modelB } : {}),
          ...(row.timing ? { timing: row.timing } : {}),
          ...(row.tuning ? { tuning: row.tuning } : {}),
        }),
      );
    }
    const cell = mean(results);
    out.push({ row: row.name, model, ...cell });
    console.log(
      [
        row.name.padEnd(42),
        model.padEnd(8),
        `${cell.seconds.toFixed(1)} s`.padStart(8),
        `floor ${cell.floorSeconds.toFixed(1)}`,
        `x${cell.timePerFloor.toFixed(2)}`,
        `block ${cell.blockUsed}`,
        `sent ${cell.datagramsSent.toFixed(0)}`,
        `unexpected ${cell.unexpected.toFixed(0)}`,
        `timeouts ${cell.timeouts.toFixed(0)}`,
        `overflows ${cell.queueOverflows}`,
        cell.flashExact ? "flash exact" : "FLASH DIFFERS",
      ].join("  "),
    );
  }
}
const cellKey = (c: { row: string; model: ReceiverModel }) => `${c.row} / ${c.model}`;
writeResults(
  "push-virtual.json",
  { node: process.version, imageBytes: IMAGE_SIZE, seeds: SEEDS },
  out,
  cellKey,
  rows.flatMap((r) => r.models.map((model) => cellKey({ row: r.name, model }))),
);
