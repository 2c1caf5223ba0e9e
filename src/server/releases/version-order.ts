/**
 * mpota's one order of firmware versions, for every path that updates a
 * device (single update, line update, rollout, Home Assistant install) and
 * for the device agent's own downgrade check, the way people number
 * releases:
 *
 * 1. Surrounding spaces are dropped, a leading `v` before a digit is
 *    ignored (`v1.2` = `1.2`), and so is build metadata from the first `+`
 *    (`1.4.2+build5` = `1.4.2`).
 * 2. The first `-` or `~` separates the release from a pre-release tag.
 * 3. Release and tag are each split into parts: runs of digits and runs of
 *    letters (`1.4b2` is 1, 4, b, 2); other characters only separate.
 * 4. Parts are compared in turn: two numbers as numbers of any length
 *    (`1.10` after `1.9`); a number ranks above letters in the same place
 *    (`1.0.1` after `1.0.beta`); letters by character code, ignoring case.
 *    A missing part counts as 0: `1.0` = `1.0.0`, and `1.0` after `1.0.a`
 *    and `1.4b2` (as `1.0.0` is after `1.0.a`: the order stays transitive).
 * 5. Equal releases: the one without a tag ranks above any tag of it
 *    (`2.0` after `2.0-rc1`); two tags compare as in 4 (`rc2` before `rc10`).
 *
 * Plain character and digit-string comparisons only (no locale, no floating
 * point), so the MicroPython agent can follow it rule for rule.
 * Returns a negative number, 0 or a positive number, like a sort comparator.
 */
export function compareVersions(a: string, b: string): number {
  const [mainA, preA] = splitVersion(a);
  const [mainB, preB] = splitVersion(b);
  const main = compareParts(mainA, mainB);
  if (main !== 0) return main;
  if (preA === undefined || preB === undefined) return preA === preB ? 0 : preA === undefined ? 1 : -1;
  return compareParts(preA, preB);
}

function splitVersion(version: string): [string[], string[] | undefined] {
  const text = version
    .trim()
    .replace(/^v(?=\d)/i, "")
    .split("+")[0] as string;
  const cut = text.search(/[-~]/);
  const main = cut < 0 ? text : text.slice(0, cut);
  const pre = cut < 0 ? undefined : text.slice(cut + 1);
  return [parts(main), pre === undefined ? undefined : parts(pre)];
}

/** "1.4b2" → ["1", "4", "b", "2"]: digit runs and letter runs, lower case, separators dropped. */
function parts(text: string): string[] {
  return text.toLowerCase().match(/\d+|[a-z]+/g) ?? [];
}

const isNumber = (part: string) => /^\d/.test(part);

function compareParts(a: string[], b: string[]): number {
  const n = Math.max(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a[i] ?? "0";
    const y = b[i] ?? "0";
    const xn = isNumber(x);
    const yn = isNumber(y);
    if (xn !== yn) return xn ? 1 : -1;
    const c = xn ? compareNumbers(x, y) : compareText(x, y);
    if (c !== 0) return c;
  }
  return 0;
}

/** Two digit strings as whole numbers of any length: leading zeros dropped, then the longer is larger. */
function compareNumbers(x: string, y: string): number {
  const p = x.replace(/^0+(?=\d)/, "");
  const q = y.replace(/^0+(?=\d)/, "");
  return p.length !== q.length ? Math.sign(p.length - q.length) : compareText(p, q);
}

function compareText(x: string, y: string): number {
  return x < y ? -1 : x > y ? 1 : 0;
}
