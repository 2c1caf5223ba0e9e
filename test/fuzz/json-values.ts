import assert from "node:assert/strict";
import { mutate, type Rng } from "./fuzz.ts";

/**
 * JSON inputs for the payload and request validators: random values, and
 * mutations of a valid object that put edge values in its fields (0, -1,
 * huge, fractions, NaN's JSON stand-ins, long and odd strings, nested
 * objects, arrays, `__proto__` keys). Payloads are JSON text, so a parser
 * also meets the text itself mutated and nested deeper than it expects.
 */

export const EDGE_NUMBERS = [
  0,
  -0,
  1,
  -1,
  0.5,
  -0.5,
  1e-320,
  255,
  256,
  65535,
  65536,
  2 ** 31 - 1,
  2 ** 31,
  2 ** 32 - 1,
  2 ** 32,
  2 ** 53 - 1,
  2 ** 53 + 2,
  -(2 ** 53),
  1e21,
  1e308,
  -1e308,
  Number.MAX_VALUE,
  Number.MIN_VALUE,
  8.64e15,
  8.64e15 + 1,
];

/** Keys that reach the prototype machinery when code copies or indexes objects carelessly. */
export const HOSTILE_KEYS = [
  "__proto__",
  "constructor",
  "prototype",
  "toString",
  "valueOf",
  "hasOwnProperty",
  "$caller",
];

export const EDGE_STRINGS = [
  "",
  " ",
  "\u0000",
  "\n",
  "null",
  "undefined",
  "NaN",
  "Infinity",
  "-1",
  "0x10",
  "1e999",
  "true",
  "[]",
  "{}",
  "__proto__",
  "constructor",
  "../../etc/passwd",
  "a/b/c",
  "#",
  "+",
  "%",
  "%zz",
  "\ud800",
  "\udfff\ud800",
  "é",
  "🙂",
  "\u202e",
  "<script>alert(1)</script>",
  "' OR 1=1 --",
  "2030-01-31T22:00:00Z",
  "1970-01-01",
  "9999-12-31T23:59:59Z",
  "-271821-04-20T00:00:00Z",
  "+275760-09-13T00:00:01Z",
  "0123456789abcdef0123456789abcdef",
  "rest",
  "10%",
  "0%",
  "101%",
  "online",
  "bridge",
];

export function edgeString(rng: Rng): string {
  const r = rng.int(6);
  if (r === 0) return "x".repeat(rng.pick([64, 65, 100, 1000, 5000]));
  if (r === 1) return rng.pick(["a", "é", "\u0000", "🙂", "%"]).repeat(1 + rng.int(300));
  if (r === 2) return String.fromCharCode(...Array.from({ length: rng.int(40) }, () => rng.int(0x10000)));
  return rng.pick(EDGE_STRINGS);
}

/** Any JSON value, with edge numbers and strings, hostile keys and some nesting. */
export function jsonValue(rng: Rng, depth = 0): unknown {
  const r = rng.int(depth > 3 ? 6 : 9);
  switch (r) {
    case 0:
      return null;
    case 1:
      return rng.chance(0.5);
    case 2:
      return rng.pick(EDGE_NUMBERS);
    case 3:
      return rng.chance(0.5) ? rng.int(100) : (rng.float() - 0.5) * 10 ** rng.int(20);
    case 4:
    case 5:
      return edgeString(rng);
    case 6:
      return Array.from({ length: rng.int(5) }, () => jsonValue(rng, depth + 1));
    default:
      return jsonObject(rng, depth + 1);
  }
}

export function jsonObject(rng: Rng, depth = 0): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const n = rng.int(5);
  for (let i = 0; i < n; i++) {
    const key = rng.chance(0.3) ? rng.pick(HOSTILE_KEYS) : edgeString(rng).slice(0, 20);
    Object.defineProperty(out, key, {
      value: rng.chance(0.3) ? { polluted: "yes" } : jsonValue(rng, depth),
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  return out;
}

/**
 * A valid request or payload with a few fields changed: set to an edge
 * value, removed, wrapped, or joined by hostile keys.
 */
export function mutateObject(rng: Rng, valid: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...valid };
  const keys = Object.keys(valid);
  const rounds = 1 + rng.int(3);
  for (let i = 0; i < rounds; i++) {
    const key = keys.length > 0 && rng.chance(0.85) ? rng.pick(keys) : rng.pick(HOSTILE_KEYS);
    const current = out[key];
    const r = rng.int(8);
    let value: unknown;
    if (r === 0) value = undefined;
    else if (r === 1) value = rng.pick(EDGE_NUMBERS);
    else if (r === 2) value = edgeString(rng);
    else if (r === 3) value = [current];
    else if (r === 4) value = { [key]: current, polluted: "yes" };
    else if (r === 5 && typeof current === "string") value = current + edgeString(rng);
    else if (r === 6 && typeof current === "number") value = current * rng.pick([-1, 0, 2, 1.5, 1e6, 1e300]);
    else value = jsonValue(rng, 2);
    if (value === undefined) delete out[key];
    else Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true });
  }
  return out;
}

/** JSON nested `depth` deep: arrays or objects. */
export function deepJson(depth: number, kind: "array" | "object"): string {
  return kind === "array"
    ? `${"[".repeat(depth)}${"]".repeat(depth)}`
    : `${'{"a":'.repeat(depth)}1${"}".repeat(depth)}`;
}

/**
 * The text a client sends for one fuzz input: usually a value made by
 * `makeValue` as JSON, sometimes that text mutated at the byte level, raw
 * JSON edge cases, or JSON nested far deeper than any request needs.
 */
export function jsonText(rng: Rng, makeValue: () => unknown, maxBytes: number): Uint8Array {
  const r = rng.int(20);
  if (r === 0)
    return Buffer.from(
      rng.pick([
        "",
        " ",
        "null",
        "[]",
        '"x"',
        "1",
        "{",
        "}",
        '{"a":}',
        "\u0000",
        "\ufeff{}",
        '{"__proto__":{"polluted":"yes"}}',
      ]),
    );
  if (r === 1) {
    const depth = rng.pick([100, 1000, 3000, 6000, 12000, 30000]);
    const text = deepJson(depth, rng.chance(0.5) ? "array" : "object");
    return Buffer.from(text.length <= maxBytes ? text : deepJson(Math.floor(maxBytes / 6), "object"));
  }
  const text = Buffer.from(JSON.stringify(makeValue()) ?? "null");
  if (r <= 4) return mutate(rng, text);
  return text;
}

/** Own keys of Object.prototype before any input ran: a parser that adds one has been polluted. */
const PROTOTYPE_KEYS = Object.getOwnPropertyNames(Object.prototype).sort();

export function assertNoPrototypePollution(): void {
  assert.deepEqual(
    Object.getOwnPropertyNames(Object.prototype).sort(),
    PROTOTYPE_KEYS,
    "Object.prototype was changed",
  );
  assert.equal(({} as Record<string, unknown>).polluted, undefined, "Object.prototype was polluted");
}
