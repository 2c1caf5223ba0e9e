import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { DeviceFilesystem } from "../../src/agent-host/device-filesystem.ts";
import type { FsStep } from "../../src/agent-host/fs-step.ts";
import {
  BOARDS,
  type BoardProfile,
  boardsClosedAfter,
  LOADER_MAIN,
  NEW,
  OLD,
  printed,
  RUNS_NEW,
  RUNS_OLD,
  record,
  release,
  runOnce,
  slotFiles,
  updateScript,
  withOld,
} from "./slot-board.ts";

// A power cut after every single filesystem write, in turn: of an update
// (mpota_app.stage), and of the loader's own writes (the boot count, the
// confirmation, a rollback). After each cut the board boots the loader and
// runs the old app or the new one, each complete, never a mix. The cut stops
// the interpreter from outside (no finally, no close), before the step.
//
// Every cut is checked, but most are not made for real: one uncut run copies
// the flash just before each of its writes, and each copy is booted on one
// board that restore() rewinds (its worker kept between runs). A real cut
// leaves exactly that copy: DeviceFilesystem asks beforeStep before it changes
// anything, and the cut drops only the open files, which a copy never holds.
// Cutting for real instead costs a new worker and MicroPython start per cut,
// plus the run up to it: most of this file's time when it did. So a real cut is
// made before the first write of each kind (create, commit, truncate, mkdir,
// rmdir, remove, rename: each changes the flash in its own code, the FAT and
// LittleFS ones apart) on each filesystem, and must leave the flash its copy
// holds. MPOTA_REAL_CUTS=all cuts for real before every write of every run
// (each compared with its copy), as this file once did.

const REAL_CUTS_ALL = process.env.MPOTA_REAL_CUTS === "all";

const board = boardsClosedAfter();
/** "<filesystem> <step op>" of the real cuts made so far. */
const cutForReal = new Set<string>();

const show = (s: FsStep) => `${s.op} ${s.path}`;

/** What is on flash, path -> contents ("dir" for a folder): what a cut leaves, folders included. */
function onFlash(fs: DeviceFilesystem): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (dir: string) => {
    for (const [name, mode] of fs.listdir("/", dir)) {
      const path = `${dir === "/" ? "" : dir}/${name}`;
      if (mode === 0x4000) {
        out[path] = "dir";
        walk(path);
      } else out[path] = (fs.readFile(path) as Buffer).toString("hex");
    }
  };
  walk("/");
  return out;
}

/** One board for a test: a device whose flash (`flash`) is rewound to each state with restore(). */
function rig(b: BoardProfile) {
  const flash = new DeviceFilesystem({ kind: b.fs, capacity: b.capacity });
  return { flash, d: board(flash) };
}

interface Writes {
  steps: FsStep[];
  /** The flash just before each step: what a cut there leaves. */
  before: DeviceFilesystem[];
  /** The flash after the whole run. */
  after: DeviceFilesystem;
  output: string[];
}

/** Runs main uncut on the rig's flash rewound to `from`, copying the flash before each write. */
async function writesOf(r: ReturnType<typeof rig>, from: DeviceFilesystem, main: string): Promise<Writes> {
  r.flash.restore(from);
  const steps: FsStep[] = [];
  const before: DeviceFilesystem[] = [];
  r.flash.beforeStep = (step) => {
    before.push(r.flash.clone());
    steps.push(step);
    return false;
  };
  const run = await runOnce(r.d, main).finally(() => {
    r.flash.beforeStep = undefined;
  });
  assert.ok("end" in run.outcome, "the run ends uncut");
  return { steps, before, after: r.flash.clone(), output: run.output };
}

/**
 * Real power cuts of main run on `from`: before each write of a kind not yet
 * cut for real on this filesystem (every write with MPOTA_REAL_CUTS=all).
 * Each cuts at the same step and leaves the flash that `w` copied there.
 */
async function realCuts(label: string, from: DeviceFilesystem, main: string, w: Writes): Promise<number> {
  const at = w.steps.flatMap((s, k) => {
    const key = `${from.kind} ${s.op}`;
    if (!REAL_CUTS_ALL && cutForReal.has(key)) return [];
    cutForReal.add(key);
    return [k];
  });
  for (const k of at) {
    const fs = from.clone();
    const d = board(fs);
    let taken = 0;
    fs.beforeStep = () => taken++ === k;
    const run = await runOnce(d, main);
    fs.beforeStep = undefined;
    const where = `${label}: a real cut before write ${k + 1}`;
    assert.ok("cut" in run.outcome, `${where}: the run was cut (it printed ${run.output.join(" | ")})`);
    const step = (run.outcome as { cut: FsStep }).cut;
    assert.deepEqual(
      step,
      w.steps[k],
      `${where}: the same steps in the same order (${w.steps.map(show)}; it printed ${run.output.join(" | ")})`,
    );
    assert.deepEqual(
      onFlash(fs),
      onFlash(w.before[k] as DeviceFilesystem),
      `${where} (${show(step)}) leaves the flash copied there`,
    );
    await d.close();
  }
  return at.length;
}

for (const b of BOARDS) {
  const kind = b.fs;
  const up = (r: Parameters<typeof updateScript>[0]) => updateScript(r, "", b);
  // OLD installed and confirmed, once for the board's three tests (each rewinds its own copy).
  let installed: Promise<DeviceFilesystem> | undefined;
  const old = () => {
    installed ??= withOld(b, board);
    return installed;
  };
  describe(`${b.label}: a power cut after every write`, () => {
    test("of an update: the old app or the new one boots, complete; the update can be run again", async (t) => {
      const prepared = await old();
      const r = rig(b);
      const w = await writesOf(r, prepared, up(NEW));
      assert.deepEqual(w.output, ["staged ('thermostat', '1.4.0')"]);
      const { steps } = w;
      const switchAt = steps.findIndex((s) => s.op === "commit" && s.path.startsWith("/app/rec."));
      assert.ok(
        switchAt > 10 && switchAt === steps.length - 1,
        `the record is the last write (${steps.map(show)})`,
      );
      if (kind === "fat") assert.ok(steps.some((s) => s.op === "truncate" && s.path.startsWith("/app/rec.")));
      const real = await realCuts(`${b.label}, an update`, prepared, up(NEW), w);
      t.diagnostic(`${kind}: ${steps.length} writes (${real} cut for real): ${steps.map(show).join(", ")}`);
      for (let k = 0; k < steps.length; k++) {
        const step = steps[k] as FsStep;
        r.flash.restore(w.before[k] as DeviceFilesystem);
        const runs = printed((await runOnce(r.d, LOADER_MAIN)).output);
        const rec = record(r.flash);
        // Every write before the record's last one leaves the old app, complete.
        assert.deepEqual(runs, [RUNS_OLD], `after a cut before ${show(step)} (write ${k + 1})`);
        assert.deepEqual(rec?.active, "a");
        assert.deepEqual(slotFiles(r.flash, "a"), OLD.files, "the running app is never touched");
        // Whatever the cut left in the other slot, the update goes through when run again.
        assert.deepEqual((await runOnce(r.d, up(NEW))).output, ["staged ('thermostat', '1.4.0')"]);
        assert.deepEqual(printed((await runOnce(r.d, LOADER_MAIN)).output), [RUNS_NEW]);
        assert.deepEqual(slotFiles(r.flash, "b"), NEW.files);
      }
      // And uncut: the new app.
      r.flash.restore(w.after);
      assert.deepEqual(printed((await runOnce(r.d, LOADER_MAIN)).output), [RUNS_NEW]);
      assert.deepEqual(slotFiles(r.flash, "b"), NEW.files);
      await r.d.close();
    });

    test("of an update into the slot of the app before: its files are removed, the running app stays", async (t) => {
      const r = rig(b);
      r.flash.restore(await old());
      await runOnce(r.d, up(NEW));
      assert.deepEqual(printed((await runOnce(r.d, LOADER_MAIN)).output), [RUNS_NEW]);
      const prepared = r.flash.clone();
      const next = release("1.5.0", { ...NEW.files, "sensor.py": 'V = "1.5.0"\n' });
      const w = await writesOf(r, prepared, up(next));
      assert.deepEqual(w.output, ["staged ('thermostat', '1.5.0')"]);
      assert.ok(w.steps.some((x) => x.op === "rmdir" && x.path === "/app/a"));
      const real = await realCuts(`${b.label}, an update into the slot before`, prepared, up(next), w);
      t.diagnostic(`${kind}: ${w.steps.length} writes (${real} cut for real)`);
      for (let k = 0; k < w.steps.length; k++) {
        r.flash.restore(w.before[k] as DeviceFilesystem);
        assert.deepEqual(
          printed((await runOnce(r.d, LOADER_MAIN)).output),
          [RUNS_NEW],
          `after a cut before ${show(w.steps[k] as FsStep)}`,
        );
        assert.deepEqual(record(r.flash)?.active, "b");
        assert.deepEqual(slotFiles(r.flash, "b"), NEW.files);
      }
      r.flash.restore(w.after);
      assert.deepEqual(printed((await runOnce(r.d, LOADER_MAIN)).output), ["running 1.4.0 1.5.0 u1 e1"]);
      assert.deepEqual(slotFiles(r.flash, "a"), next.files);
      await r.d.close();
    });

    test("of the loader's boots: counting, confirming and rolling back survive a cut at any write", async (t) => {
      const r = rig(b);
      const prepared = await old();
      const bad = release("1.4.0", { ...NEW.files, "sensor.py": "raise OSError(19)\n" });
      for (const [label, rel, settles] of [
        ["a new app that confirms", NEW, RUNS_NEW],
        ["a new app that raises", bad, RUNS_OLD],
      ] as const) {
        r.flash.restore(prepared);
        assert.deepEqual((await runOnce(r.d, up(rel))).output, ["staged ('thermostat', '1.4.0')"]);
        const staged = r.flash.clone();
        const w = await writesOf(r, staged, LOADER_MAIN);
        assert.ok(w.steps.length >= 2, `${label}: ${w.steps.map(show)}`);
        const real = await realCuts(`${b.label}, ${label}`, staged, LOADER_MAIN, w);
        t.diagnostic(`${kind}, ${label}: ${w.steps.length} writes (${real} cut for real)`);
        for (let k = 0; k < w.steps.length; k++) {
          r.flash.restore(w.before[k] as DeviceFilesystem);
          // Boot until the board settles (a rollback resets once): one of the two apps, complete.
          let runs = printed((await runOnce(r.d, LOADER_MAIN)).output);
          if (runs.at(-1)?.startsWith("mpota_loader: rolled back"))
            runs = printed((await runOnce(r.d, LOADER_MAIN)).output);
          assert.deepEqual(
            runs.at(-1),
            settles,
            `${label}: after a cut before ${show(w.steps[k] as FsStep)} (write ${k + 1})`,
          );
          const rec = record(r.flash);
          assert.deepEqual(rec?.state, "ok");
          assert.deepEqual(
            slotFiles(r.flash, rec?.active === "a" ? "a" : "b"),
            settles === RUNS_OLD ? OLD.files : NEW.files,
          );
          if (settles === RUNS_OLD)
            assert.match(
              r.flash.readFile("/app/rollback")?.toString() ?? "",
              /^rolled back thermostat 1\.4\.0: .*OSError/,
            );
        }
      }
      await r.d.close();
    });
  });
}
