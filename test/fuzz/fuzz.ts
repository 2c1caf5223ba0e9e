import assert from "node:assert/strict";
import type { MpotaError } from "../../src/errors.ts";
import { type Random, seededRandom } from "../../src/net/random.ts";

/**
 * A small property-based fuzzer for mpota's parsers: seeded (the same seed
 * gives the same inputs, so a failure in CI is replayed on any machine),
 * with purely random inputs and mutations of valid ones. A failure names
 * the seed, the input's number and the input itself (bytes as hex).
 *
 * MPOTA_FUZZ_SEED=<n> runs every fuzz test with another seed;
 * MPOTA_FUZZ_SCALE=<k> runs k times as many inputs.
 */

/** The seed for a fuzz test: its own fixed one, or MPOTA_FUZZ_SEED for a different run. */
export function fuzzSeed(fixed: number): number {
  const fromEnv = Number(process.env.MPOTA_FUZZ_SEED);
  return Number.isSafeInteger(fromEnv) && process.env.MPOTA_FUZZ_SEED !== "" ? fromEnv : fixed;
}

/** How many inputs to run: `base`, times MPOTA_FUZZ_SCALE when that is set. */
export function fuzzRuns(base: number): number {
  const scale = Number(process.env.MPOTA_FUZZ_SCALE);
  return Number.isFinite(scale) && scale > 0 ? Math.max(1, Math.round(base * scale)) : base;
}

/** Seeded random choices. */
export class Rng {
  private readonly next: Random;

  constructor(seed: number) {
    this.next = seededRandom(seed);
  }

  /** Uniform in [0, 1). */
  float(): number {
    return this.next();
  }

  /** Whole number in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** Whole number in [min, max]. */
  range(min: number, max: number): number {
    return min + this.int(max - min + 1);
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)] as T;
  }

  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.int(256);
    return out;
  }

  /** A length skewed towards small values (most bugs live near 0 and near header sizes). */
  length(max: number): number {
    const r = this.float();
    if (r < 0.3) return this.int(Math.min(max, 16) + 1);
    if (r < 0.7) return this.int(Math.min(max, 256) + 1);
    return this.int(max + 1);
  }
}

/** Values that break arithmetic at the edges of 8-, 16- and 32-bit fields. */
const EDGE_U32 = [
  0, 1, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0x8000, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xffffffff,
];

/**
 * One mutation of `input`, as fuzzers do it: bit flips, edge values written
 * over bytes, 16- and 32-bit fields (either endianness), truncation,
 * extension, chunks deleted, duplicated or inserted. Several may stack.
 */
export function mutate(rng: Rng, input: Uint8Array, rounds = 1 + rng.int(3)): Uint8Array {
  let out: Uint8Array = new Uint8Array(input);
  for (let round = 0; round < rounds; round++) {
    const at = out.length === 0 ? 0 : rng.int(out.length);
    const kind = rng.int(10);
    if (kind === 0 && out.length > 0) {
      const flips = 1 + rng.int(8);
      for (let i = 0; i < flips; i++) {
        const p = rng.int(out.length);
        out[p] = (out[p] as number) ^ (1 << rng.int(8));
      }
    } else if (kind === 1 && out.length > 0) {
      out[at] = rng.pick([0, 1, 0x7f, 0x80, 0xfe, 0xff]);
    } else if ((kind === 2 || kind === 3) && out.length >= 4) {
      // A length, offset or count field set to an edge value.
      const p = rng.int(out.length - 3);
      const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
      const v = rng.chance(0.8) ? rng.pick(EDGE_U32) : rng.int(2 ** 32);
      const little = rng.chance(0.7);
      if (rng.chance(0.5)) view.setUint32(p, v >>> 0, little);
      else view.setUint16(p, v & 0xffff, little);
    } else if (kind === 4) {
      out = out.slice(0, rng.int(out.length + 1));
    } else if (kind === 5) {
      const extra = rng.chance(0.5)
        ? rng.bytes(rng.length(4096))
        : new Uint8Array(rng.length(4096)).fill(rng.pick([0, 0xff]));
      out = concat(out, extra);
    } else if (kind === 6 && out.length > 0) {
      const n = 1 + rng.int(Math.min(out.length - at, 512));
      out = concat(out.subarray(0, at), out.subarray(at + n));
    } else if (kind === 7 && out.length > 0) {
      const n = 1 + rng.int(Math.min(out.length - at, 512));
      const chunk = out.slice(at, at + n);
      out = concat(out.subarray(0, at), chunk, out.subarray(at));
    } else if (kind === 8) {
      out = concat(out.subarray(0, at), rng.bytes(1 + rng.int(64)), out.subarray(at));
    } else if (out.length > 0) {
      out.set(rng.bytes(Math.min(out.length - at, 1 + rng.int(32))), at);
    }
  }
  return out;
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat(parts));
}

export function toHex(bytes: Uint8Array, max = 4096): string {
  const hex = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("hex");
  return hex.length > max * 2 ? `${hex.slice(0, max * 2)}... (${bytes.length} bytes)` : hex;
}

/** How an input is shown in a failure: bytes as hex, anything else as JSON (or its text). */
export function describeInput(input: unknown): string {
  if (input instanceof Uint8Array) return `${input.length} bytes, hex: ${toHex(input)}`;
  if (typeof input === "string") return `string of ${input.length}: ${JSON.stringify(input.slice(0, 2048))}`;
  try {
    // Bytes inside an input show as hex and as text, not as Buffer's list of numbers.
    const json = JSON.stringify(input, function (this: Record<string, unknown>, key, value) {
      const raw = this[key];
      return raw instanceof Uint8Array
        ? { hex: toHex(raw, 1024), text: Buffer.from(raw).toString("utf8").slice(0, 300) }
        : value;
    });
    if (json !== undefined)
      return json.length > 2048 ? `${json.slice(0, 2048)}... (${json.length} chars)` : json;
  } catch {
    // too deep for JSON.stringify
  }
  return String(input);
}

export interface FuzzCase<T> {
  /** Name shown in failures. */
  name: string;
  seed: number;
  runs: number;
  /** Makes input `index` (from the run's shared generator). */
  generate: (rng: Rng, index: number) => T;
  /** Throws (an assertion) when the parser mishandles the input. */
  check: (input: T) => void | Promise<void>;
  /** Inputs that once failed, run first on every run. */
  regressions?: readonly T[];
  /**
   * Checks run at once (default 1). Inputs are still made in order, so a
   * seed gives the same inputs; for checks that wait on a server.
   */
  concurrency?: number;
}

/** What one run did: how many inputs it tried. */
export interface FuzzReport {
  inputs: number;
}

/**
 * Runs the regressions, then `runs` generated inputs, through `check`. The
 * first failure stops the run with the seed, the input's number and the
 * input (hex), so `MPOTA_FUZZ_SEED=<seed>` replays it.
 */
export async function fuzz<T>(c: FuzzCase<T>): Promise<FuzzReport> {
  let inputs = 0;
  const run = async (input: T, label: string) => {
    inputs++;
    try {
      await c.check(input);
    } catch (error) {
      const cause = error instanceof Error ? (error.stack ?? error.message) : String(error);
      assert.fail(`${c.name}: ${label} failed (seed ${c.seed}).\nInput: ${describeInput(input)}\n${cause}`);
    }
  };
  for (const [i, input] of (c.regressions ?? []).entries()) await run(input, `regression case ${i + 1}`);
  const rng = new Rng(c.seed);
  const cases = Array.from({ length: c.runs }, (_, i) => ({
    input: c.generate(rng, i),
    label: `input ${i + 1} of ${c.runs}`,
  }));
  let next = 0;
  const worker = async () => {
    while (next < cases.length) {
      const { input, label } = cases[next++] as { input: T; label: string };
      await run(input, label);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, c.concurrency ?? 1) }, worker));
  return { inputs };
}

/** Text a clear message never holds: an object printed without thought, or a stack. */
const UNCLEAR = /\[object Object\]|\n\s+at |\(node:internal/;
/** Longer than this, a message is mostly echoed input: nobody reads it, and it floods logs. */
const MAX_MESSAGE_LENGTH = 2000;

/** The message is a sentence for people: not empty, not huge, no `[object Object]` or stack. */
export function assertClearMessage(message: unknown, what = "message"): void {
  assert.equal(typeof message, "string", `${what} is not text`);
  const text = message as string;
  assert.ok(text.trim().length > 0, `${what} is empty`);
  assert.ok(
    text.length <= MAX_MESSAGE_LENGTH,
    `${what} has ${text.length} characters: ${text.slice(0, 300)}...`,
  );
  assert.doesNotMatch(text, UNCLEAR, `${what} is not clear: ${text.slice(0, 300)}`);
}

/**
 * A rejection is clear when it is one of mpota's errors (never a TypeError,
 * RangeError or any other internal error) of the expected class, with a
 * message for people.
 */
export function assertClearError(
  error: unknown,
  expected: abstract new (...args: never[]) => MpotaError,
): void {
  if (!(error instanceof expected)) {
    const shown = error instanceof Error ? (error.stack ?? error.message) : String(error);
    assert.fail(`expected a ${expected.name}, got an internal error: ${shown}`);
  }
  assertClearMessage(error.message, `${expected.name} message`);
}

/** Calls `parse` and returns its value, or checks its error is a clear `expected` and returns undefined. */
export function parseOrClearError<T>(
  parse: () => T,
  expected: abstract new (...args: never[]) => MpotaError,
): T | undefined {
  try {
    return parse();
  } catch (error) {
    assertClearError(error, expected);
    return undefined;
  }
}
