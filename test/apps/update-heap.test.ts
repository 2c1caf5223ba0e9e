import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { DEVICE_DIR } from "../../src/agent-host/agent-files.ts";
import { Board, py } from "./micropython.ts";
import { BOARDS, MODULUS, type Release, release } from "./slot-board.ts";

// The heap an update of a 20-file app (about 60 KiB) takes, as a first
// install and with one file changed, on each board profile. The wasm build
// grows its heap and collects only when control returns to JavaScript
// (ports/webassembly/main.c: gc_collect() merely sets a flag), so a
// gc.mem_free() low-water mark taken inside one Python call would count
// garbage as used. The update is driven through mpota_stage.steps() one step
// per call instead: between calls the heap is collected, so the live heap
// before each step is exact, and what a step allocates (nothing is freed
// within a call) bounds its peak from above. Figures in docs/app-updates.md.

const FILES = 20;
const SIZE = 3072;

function app(version: string, changed: number | undefined): Release {
  const files: Record<string, string> = { "main.py": 'import m01\nprint("app")\n' };
  for (let i = 1; i < FILES; i++) {
    const name = `m${String(i).padStart(2, "0")}.py`;
    const head = `V = "${i === changed ? version : "1.0.0"}"\nDATA = "`;
    files[name] = `${head}${"x".repeat(SIZE - head.length - 2)}"\n`;
  }
  return release(version, files);
}

interface Figures {
  /** Live heap before each step, and the most a step reaches (bytes above the interpreter's baseline). */
  live: number;
  peak: number;
  /** What the signature and manifest check allocates (this build's base64 and hexlify are pure Python). */
  check: number;
  /** What the free-space pass over the manifest allocates (short-lived: one line at a time). */
  space: number;
  steps: number;
}

test("heap of an update of a 20-file app (60 KiB) on each board: first install and one file changed", async (t) => {
  const board = await Board.start();
  for (const f of ["mpota_loader.py", "mpota_stage.py"])
    board.write(`/${f}`, readFileSync(join(DEVICE_DIR, f), "utf8"));
  const number = (code: string) => board.run(code).map(Number);
  // Board.start imported mpota_app: forget it, so the modules an update loads are counted from here.
  board.run('import gc, sys\ndel mpota_app\ndel sys.modules["mpota_app"]');

  const first = app("1.0.0", undefined);
  const second = app("1.1.0", 7);
  assert.equal(Object.keys(first.files).length, FILES);
  const bytes = Object.values(first.files).reduce((n, s) => n + s.length, 0);
  assert.ok(bytes > 58_000 && bytes < 62_000, `about 60 KiB (${bytes})`);

  // The transport's bytes live in the test, not on the board: defined before the baseline.
  const transport = (r: Release) =>
    `BYTES = {${Object.entries(r.files)
      .map(([p, s]) => `${py(p)}: ${py(s)}.encode()`)
      .join(", ")}}\n`;
  board.run(`${transport(first)}${transport(second).replace("BYTES", "BYTES2")}
def fetch(digest, size, path, rec):
    b = (BYTES2 if path in BYTES2 and BYTES2[path] != BYTES[path] and FRESH else BYTES)[path]
    mv = memoryview(b)
    for i in range(0, len(b), 512):
        rec.write(mv[i : i + 512])

FRESH = False
def step():
    a0 = gc.mem_alloc()
    s = next(G, None)
    return a0, gc.mem_alloc(), s and s[0]
G = None
`);
  board.run("gc.collect()");
  const [base] = number("print(gc.mem_alloc())") as [number];
  board.run("import mpota_loader, mpota_stage");
  board.run("gc.collect()");
  const resident = (number("print(gc.mem_alloc())")[0] as number) - base;

  const update = (r: Release, platform: string, mpy: number): Figures => {
    board.write("/stage.manifest", r.manifest);
    board.run(
      `G = mpota_stage.steps("/stage.manifest", [${py(MODULUS)}], fetch, platform=${py(platform)}, mpy=${mpy})\ngc.collect()`,
    );
    const f: Figures = { live: 0, peak: 0, check: 0, space: 0, steps: 0 };
    for (;;) {
      const [line] = board.run("print(*step())\ngc.collect()");
      const [a0, a1, kind] = (line as string).split(" ");
      if (kind === "None") break;
      f.steps++;
      if (kind === "check") f.check = Number(a1) - Number(a0);
      else if (kind === "space") f.space = Number(a1) - Number(a0);
      else f.peak = Math.max(f.peak, Number(a1) - base);
      f.live = Math.max(f.live, Number(a0) - base);
    }
    return f;
  };

  const rows: string[] = [];
  for (const b of BOARDS) {
    board.run(
      'import os\ndef rm(d):\n    for e in list(os.ilistdir(d)):\n        p = d + "/" + e[0]\n        rm(p) if e[1] == 0x4000 else os.remove(p)\n    os.rmdir(d)\ntry:\n    rm("/app")\nexcept OSError:\n    pass\nFRESH = False',
    );
    const install = update(first, b.platform, b.mpy);
    assert.deepEqual(board.run("print(mpota_loader.read()[1:4])"), ["['a', '-', 'new']"]);
    board.run("mpota_loader.confirm()\nFRESH = True");
    const change = update(second, b.platform, b.mpy);
    assert.deepEqual(board.run("print(mpota_loader.read()[1:4])"), ["['b', 'a', 'new']"]);
    assert.equal(install.steps, FILES + 3);
    assert.equal(change.steps, FILES + 3);
    rows.push(
      `${b.label}: modules ${resident}; first install: live ${install.live}, step peak <= ${install.peak}; one change: live ${change.live}, step peak <= ${change.peak}; the check allocates ${install.check}, the space pass ${install.space}`,
    );
    // Streaming: moving 60 KiB costs no more heap than moving 3 KiB (one buffer, one file at a time).
    assert.ok(Math.abs(install.peak - change.peak) < 2048, `${b.label}: ${install.peak} vs ${change.peak}`);
    // The bound: the transport needs its socket and one MQTT message of a few KiB beside
    // the update (at most 4 KiB on an ESP8266), so the updater's modules, its state between
    // files and every step that moves a file leave 10 KiB of what the board has free after
    // boot: under 20 KiB on an ESP8266 (30 KiB free with WiFi, the low end). (The agent's own
    // modules do not fit beside them as .py source: docs/app-updates.md, "Heap".)
    if (b.heapFree > 0)
      for (const [what, f] of [
        ["first install", install],
        ["one change", change],
      ] as const)
        assert.ok(
          f.peak <= b.heapFree - 10 * 1024,
          `${b.label}, ${what}: a file step peaks at ${f.peak}, over ${b.heapFree} free less 10 KiB`,
        );
  }
  for (const r of rows) t.diagnostic(r);
});
