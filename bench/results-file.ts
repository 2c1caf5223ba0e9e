// A bench's results file in bench/results/. A run of some rows (a name filter)
// replaces those rows and keeps the file's others, so a partial run never
// throws away figures the README quotes; each row carries the date it was
// measured, the file's top-level fields are the last run's.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";

type Dated<R> = R & { date: string };

/**
 * Writes `name` (e.g. "push.json") with `meta` and `rows` merged over the
 * rows already there, matched by `key`, in `order`: the keys of every row the
 * bench has (a kept row whose key is not among them is one it no longer has,
 * and is dropped). Returns the merged rows.
 */
export function writeResults<R extends object>(
  name: string,
  meta: Record<string, unknown>,
  rows: readonly R[],
  key: (row: R) => string,
  order: readonly string[],
): Dated<R>[] {
  const dir = new URL("./results/", import.meta.url);
  mkdirSync(dir, { recursive: true });
  const file = new URL(name, dir);
  const date = new Date().toISOString();
  const before = existsSync(file)
    ? (JSON.parse(readFileSync(file, "utf8")) as { date?: string; rows?: R[] })
    : {};
  const ran = new Set(rows.map(key));
  const kept = (before.rows ?? [])
    .filter((r) => !ran.has(key(r)) && order.includes(key(r)))
    .map((r) => ({ date: before.date ?? "", ...r }) as Dated<R>);
  const all = [...kept, ...rows.map((r) => ({ ...r, date }) as Dated<R>)].sort(
    (a, b) => order.indexOf(key(a)) - order.indexOf(key(b)),
  );
  writeFileSync(file, `${JSON.stringify({ ...meta, date, rows: all }, null, 2)}\n`);
  return all;
}
