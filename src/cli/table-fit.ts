// Lists (`mpota jobs`, `devices`, `rollout list`, `firmware list`) kept to the
// terminal's width: long free text is cut with an ellipsis, the ids a user
// types into the next command never are.

/** The width when stdout is no terminal (a pipe, a file, a log): what the tables are laid out for. */
export const DEFAULT_TABLE_WIDTH = 100;

/** Narrower terminals get the tables cut to this: below it nothing readable is left to cut. */
const NARROWEST = 40;

/** Where the text that fits the column is kept. */
export type CellCut =
  /** Free text: its start ("12 of 20 files sta…"). */
  | "end"
  /** A name with its version: the last word stays whole ("firmware sens… 2.0"), with a note in brackets after it. */
  | "keep-last-word"
  /** An id with words after it: the id stays whole ("j-0f1e2d3c4b fe…"). */
  | "keep-first-word";

/** No free-text column is cut narrower than this (nor than its header). */
const MIN_CELL = 6;

/** The columns a table may take: the terminal's when stdout is one, else {@link DEFAULT_TABLE_WIDTH}. */
export function tableWidth(io: { readonly columns?: number | undefined }): number {
  const columns = io.columns;
  if (columns === undefined || !Number.isInteger(columns) || columns <= 0) return DEFAULT_TABLE_WIDTH;
  return Math.max(NARROWEST, columns);
}

/** `text` in `width` characters, cut where `how` says, with "…" where text was left out. */
export function cutCell(text: string, width: number, how: CellCut): string {
  if (text.length <= width) return text;
  if (how === "keep-last-word") {
    // A note in brackets after the version ("1.0.0 (rolled back)") stays with it, or alone when
    // both do not fit: the note says more than the version.
    const note = text.endsWith(")") ? text.lastIndexOf(" (") : -1;
    const tails = note > 0 ? [text.lastIndexOf(" ", note - 1), note] : [text.lastIndexOf(" ")];
    for (const space of tails) {
      const last = space < 0 ? "" : text.slice(space);
      if (last !== "" && last.length + 2 <= width) return `${text.slice(0, width - last.length - 1)}…${last}`;
    }
  }
  if (how === "keep-first-word") {
    const space = text.indexOf(" ");
    // The id never goes: a column too narrow for it keeps the id alone.
    if (space >= 0 && space + 2 > width) return text.slice(0, space);
  }
  return `${text.slice(0, Math.max(0, width - 1))}…`;
}

/**
 * The rows (the first is the header, kept whole) with the cells of the
 * `cuts` columns cut so the widest line of formatTable's layout (two spaces
 * between columns, after `indent` characters) fits `width`: the widest of
 * those columns is narrowed first, down to its header or {@link MIN_CELL}.
 * Other columns are never cut, so a table of long ids alone may stay wider.
 */
export function fitTable(
  rows: string[][],
  width: number,
  cuts: ReadonlyArray<readonly [number, CellCut]>,
  indent = 0,
): string[][] {
  const header = rows[0];
  if (header === undefined || rows.length < 2) return rows;
  const widths = header.map((_, i) => Math.max(...rows.map((row) => row[i]?.length ?? 0)));
  const floor = new Map(
    cuts.map(([i, how]) => {
      // An id column's floor is its longest id: what follows the id may go entirely.
      const ids = how === "keep-first-word" ? Math.max(...rows.slice(1).map((row) => firstWord(row[i]))) : 0;
      return [i, Math.max(MIN_CELL, header[i]?.length ?? 0, ids)] as const;
    }),
  );
  let over = indent + widths.reduce((sum, w) => sum + w, 0) + 2 * (widths.length - 1) - width;
  while (over > 0) {
    let widest = -1;
    for (const [i] of cuts) {
      const w = widths[i] ?? 0;
      if (w > (floor.get(i) ?? 0) && (widest < 0 || w > (widths[widest] ?? 0))) widest = i;
    }
    if (widest < 0) break; // only ids and short facts left: the table stays wider
    widths[widest] = (widths[widest] ?? 0) - 1;
    over--;
  }
  const how = new Map(cuts);
  return rows.map((row, r) =>
    r === 0
      ? row
      : row.map((cell, i) => {
          const cut = how.get(i);
          return cut === undefined ? cell : cutCell(cell, widths[i] ?? cell.length, cut);
        }),
  );
}

function firstWord(text: string | undefined): number {
  if (text === undefined) return 0;
  const space = text.indexOf(" ");
  return space < 0 ? text.length : space;
}
