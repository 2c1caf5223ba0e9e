/**
 * How a patch object becomes `column = <placeholder>` pairs, for both
 * backends: `bind` stores the value and returns its placeholder (SQLite's
 * `@key`, PostgreSQL's `$n`).
 */

/** Column and encoding (applied to non-null values) of each patchable field. */
export type PatchColumns<K extends string> = Record<
  K,
  readonly [column: string, encode: (v: never) => unknown]
>;

export type Bind = (key: string, value: unknown) => string;

export function setClause(
  columns: Record<string, readonly [string, (v: never) => unknown]>,
  patch: Record<string, unknown>,
  bind: Bind,
): string[] {
  const sets: string[] = [];
  for (const [key, [column, encode]] of Object.entries(columns)) {
    const value = patch[key];
    if (value === undefined) continue;
    sets.push(`${column} = ${bind(key, value === null ? null : encode(value as never))}`);
  }
  return sets;
}

/** The value itself (most columns). */
export const asIs = (v: never): unknown => v;

/** SQLite's binder: named parameters collected in `params`. */
export function bindNamed(params: Record<string, unknown>): Bind {
  return (key, value) => {
    params[key] = value;
    return `@${key}`;
  };
}

/** PostgreSQL's binder: positional parameters appended to `params`. */
export function bindPositional(params: unknown[]): Bind {
  return (_key, value) => {
    params.push(value);
    return `$${params.length}`;
  };
}
