import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, it } from "node:test";

// docs/architecture.md's table of rooms is the picture of the code: every import that crosses
// rooms must be listed there, every listed arrow must exist, and the arrows form no circle.

const ROOT = resolve(import.meta.dirname, "..");
const SRC = join(ROOT, "src");

/** The room of a file under src/: its folder, with server/<room> for the server's rooms. */
function roomOf(file: string): string {
  const parts = relative(SRC, file).split("/");
  if (parts.length === 1) return "errors"; // src/errors.ts, src/exit-codes.ts
  if (parts[0] === "server") return parts.length === 2 ? "server" : `server/${parts[1]}`;
  return parts[0] as string;
}

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) {
      if (name !== "dashboard") out.push(...sourceFiles(path));
    } else if (name.endsWith(".ts")) out.push(path);
  }
  return out;
}

/** Relative module specifiers of import/export ... from and import(): the file's arrows. */
function importsOf(file: string): string[] {
  const text = readFileSync(file, "utf8");
  const specs: string[] = [];
  for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)\b[^;]*?\bfrom\s*"(\.[^"]+)"/g))
    specs.push(m[1] as string);
  for (const m of text.matchAll(/\bimport\(\s*"(\.[^"]+)"\s*\)/g)) specs.push(m[1] as string);
  return specs.map((s) => resolve(dirname(file), s));
}

/** The table between the markers of docs/architecture.md: room -> the rooms it may import. */
function readTable(): Map<string, Set<string>> {
  const doc = readFileSync(join(ROOT, "docs/architecture.md"), "utf8");
  const start = doc.indexOf("<!-- rooms");
  const end = doc.indexOf("<!-- end rooms -->");
  assert.ok(start >= 0 && end > start, "docs/architecture.md has its rooms table between the markers");
  const table = new Map<string, Set<string>>();
  for (const line of doc.slice(start, end).split("\n")) {
    const cells = line.split("|").map((c) => c.trim());
    if (cells.length < 5 || cells[1] === "room" || cells[1]?.startsWith("---")) continue;
    const imports = (cells[3] ?? "")
      .split(",")
      .map((c) => c.trim())
      .filter(Boolean);
    table.set(cells[1] as string, new Set(imports));
  }
  return table;
}

function actualArrows(): Map<string, Map<string, string>> {
  const arrows = new Map<string, Map<string, string>>();
  for (const file of sourceFiles(SRC)) {
    const from = roomOf(file);
    for (const target of importsOf(file)) {
      if (!target.startsWith(`${SRC}/`)) continue;
      const to = roomOf(target);
      if (to === from) continue;
      const row = arrows.get(from) ?? new Map<string, string>();
      if (!row.has(to)) row.set(to, `${relative(ROOT, file)} -> ${relative(ROOT, target)}`);
      arrows.set(from, row);
    }
  }
  return arrows;
}

describe("the rooms of src/ (docs/architecture.md)", () => {
  const table = readTable();
  const arrows = actualArrows();

  it("lists every room of the code", () => {
    const rooms = new Set(sourceFiles(SRC).map(roomOf));
    const missing = [...rooms].filter((r) => !table.has(r));
    assert.deepEqual(missing, [], `rooms without a row in docs/architecture.md: ${missing.join(", ")}`);
    const gone = [...table.keys()].filter((r) => !rooms.has(r));
    assert.deepEqual(gone, [], `rows for rooms that no longer exist: ${gone.join(", ")}`);
  });

  it("holds every import that crosses rooms, and no arrow the code does not have", () => {
    const unlisted: string[] = [];
    for (const [from, row] of arrows)
      for (const [to, example] of row)
        if (!table.get(from)?.has(to)) unlisted.push(`${from} -> ${to} (${example})`);
    assert.deepEqual(unlisted, [], `imports the table does not allow:\n${unlisted.join("\n")}`);
    const stale: string[] = [];
    for (const [from, allowed] of table)
      for (const to of allowed) if (!arrows.get(from)?.has(to)) stale.push(`${from} -> ${to}`);
    assert.deepEqual(stale, [], `arrows in the table that no import makes:\n${stale.join("\n")}`);
  });

  it("says in each room's README.md what the room owns", () => {
    // errors is two files, server the composition root, cli the commands: their rows say enough.
    const folders = [...table.keys()].filter((r) => !["errors", "server", "cli"].includes(r));
    const missing = folders.filter((r) => {
      const readme = join(SRC, r, "README.md");
      return !existsSync(readme) || !readFileSync(readme, "utf8").startsWith(`# ${r}\n\n`);
    });
    assert.deepEqual(missing, [], `rooms without a README.md that starts "# <room>": ${missing.join(", ")}`);
  });

  it("has no circle: every arrow points inwards", () => {
    const state = new Map<string, "open" | "done">();
    const path: string[] = [];
    const visit = (room: string): string | undefined => {
      if (state.get(room) === "done") return undefined;
      if (state.get(room) === "open") return [...path.slice(path.indexOf(room)), room].join(" -> ");
      state.set(room, "open");
      path.push(room);
      for (const to of table.get(room) ?? []) {
        const circle = visit(to);
        if (circle) return circle;
      }
      path.pop();
      state.set(room, "done");
      return undefined;
    };
    for (const room of table.keys()) assert.equal(visit(room), undefined, "a circle of rooms");
  });
});
