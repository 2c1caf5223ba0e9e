/**
 * Orders firmware versions of one line, the way people number releases:
 * `1.10` after `1.9`, `2.0` after `2.0-rc1` (a pre-release comes before its
 * release), a leading `v` ignored, build metadata after `+` ignored. Parts
 * are compared as numbers when both are digits, as text otherwise.
 * Returns a negative number, 0 or a positive number, like a sort comparator.
 */
export function compareVersions(a: string, b: string): number {
  const [mainA, preA] = splitVersion(a);
  const [mainB, preB] = splitVersion(b);
  const main = compareParts(mainA, mainB);
  if (main !== 0) return main;
  // Same release: no pre-release tag ranks above any pre-release of it.
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
  return [tokens(main), pre === undefined ? undefined : tokens(pre)];
}

/** "1.4b2" → ["1", "4", "b", "2"]: digit runs and other runs, separators dropped. */
function tokens(text: string): string[] {
  return text.match(/\d+|[A-Za-z]+/g) ?? [];
}

function compareParts(a: string[], b: string[]): number {
  const n = Math.max(a.length, b.length);
  for (let i = 0; i < n; i++) {
    // A missing part is 0 (1.0 equals 1.0.0), and ranks below text (1.0 before 1.0.a).
    const x = a[i] ?? (/^\d+$/.test(b[i] as string) ? "0" : undefined);
    const y = b[i] ?? (/^\d+$/.test(a[i] as string) ? "0" : undefined);
    if (x === undefined) return -1;
    if (y === undefined) return 1;
    const xn = /^\d+$/.test(x);
    const yn = /^\d+$/.test(y);
    if (xn && yn) {
      const d = Number(x) - Number(y);
      if (d !== 0) return Math.sign(d);
      continue;
    }
    // A number ranks above text in the same place (1.0.1 > 1.0.beta).
    if (xn !== yn) return xn ? 1 : -1;
    const c = x.localeCompare(y, "en");
    if (c !== 0) return Math.sign(c);
  }
  return 0;
}
