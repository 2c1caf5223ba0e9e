// A bench's results file in bench/results/. A run of some rows (a name filter)
// replaces those rows and keeps the file's others, so a partial run never
// throws away figures the README quotes; each row carries the date it was
// measured, the file's top-level fields are the last run's.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";

type Dated<R> = R & { date: string };

/**
 * The results file as it stands, or {} when there is none. One that cannot
 * be read (a merge conflict, a cut-off write) is reported and treated as
 * empty: this run's figures are still written, the rows it held are lost.
 */
export function readResults(file: URL | string): Record<string, unknown> {
  if (!existsSync(file)) return {};
  try {
    return JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
  } catch (error) {
    console.error(
      `${file instanceof URL ? file.pathname : file}: not readable as JSON (${(error as Error).message}); writing this run's rows alone. Its earlier rows are in git (git checkout -- bench/results).`,
    );
    return {};
  }
}

/**
 * `rows` (dated `date`) over `before`'s (dated by their own date or the file's),
 * matched by `key`. With `order` (the keys of every row the bench has) the
 * result comes in that order and a kept row the bench no longer has is
 * dropped; without it, kept rows come first.
 */
export function mergeRows<R extends object>(
  before: { date?: unknown; rows?: unknown },
  rows: readonly R[],
  key: (row: R) => string,
  date: string,
  order?: readonly string[],
): Dated<R>[] {
  const ran = new Set(rows.map(key));
  const kept = ((before.rows ?? []) as R[])
    .filter((r) => !ran.has(key(r)) && (order === undefined || order.includes(key(r))))
    .map((r) => ({ date: String(before.date ?? ""), ...r }) as Dated<R>);
  const all = [...kept, ...rows.map((r) => ({ ...r, date }) as Dated<R>)];
  return order === undefined ? all : all.sort((a, b) => order.indexOf(key(a)) - order.indexOf(key(b)));
}

/**
 * Writes bench/results/`name` (e.g. "push.json") with `meta` and `rows`
 * merged over the rows already there (see {@link mergeRows}). Returns the
 * merged rows.
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
  const all = mergeRows(readResults(file), rows, key, date, order);
  writeFileSync(file, `${JSON.stringify({ ...meta, date, rows: all }, null, 2)}\n`);
  return all;
}
