/** Small text helpers shared by the firmware reports and the commands that print them. */

/** `0x3c000`; with `width`, zero-padded to that many hex digits (`0x0003c000`). */
export function hex(n: number, width = 0): string {
  return `0x${(n >>> 0).toString(16).padStart(width, "0")}`;
}

/** Bytes as lowercase hex without separators. */
export function hexBytes(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("hex");
}

/** `614,384 bytes (600.0 KiB)`: the exact count people compare, and a size they can picture. */
export function sizeText(bytes: number): string {
  const exact = `${bytes.toLocaleString("en-US")} bytes`;
  if (Math.abs(bytes) < 1024) return exact;
  const kib = bytes / 1024;
  return `${exact} (${kib < 1024 ? `${kib.toFixed(1)} KiB` : `${(kib / 1024).toFixed(2)} MiB`})`;
}

/** Bytes for a parenthesis: "18.6 KiB, 19,050 bytes" (no parenthesis inside), or "65 bytes". */
export function sizeBrief(bytes: number): string {
  const exact = `${bytes.toLocaleString("en-US")} bytes`;
  if (Math.abs(bytes) < 1024) return exact;
  const kib = bytes / 1024;
  return `${kib < 1024 ? `${kib.toFixed(1)} KiB` : `${(kib / 1024).toFixed(2)} MiB`}, ${exact}`;
}

/** Reads a little-endian u32 at `offset`; undefined when it does not fit in `bytes`. */
export function readU32(bytes: Uint8Array, offset: number): number | undefined {
  if (offset < 0 || offset + 4 > bytes.length) return undefined;
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(offset, true);
}

/**
 * Left-aligned columns separated by two spaces, for terminal tables. The
 * first row is taken as the header when `header` is true and underlined.
 */
export function formatTable(rows: string[][], options: { header?: boolean; indent?: string } = {}): string {
  const indent = options.indent ?? "";
  const widths: number[] = [];
  for (const row of rows) {
    row.forEach((cell, i) => {
      widths[i] = Math.max(widths[i] ?? 0, cell.length);
    });
  }
  const line = (row: string[]) =>
    `${indent}${row
      .map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
      .join("  ")}`.trimEnd();
  const out: string[] = [];
  rows.forEach((row, index) => {
    out.push(line(row));
    if (index === 0 && options.header) out.push(line(row.map((_, i) => "-".repeat(widths[i] ?? 0))));
  });
  return `${out.join("\n")}\n`;
}
