import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { DeviceFilesystem } from "../../src/agent-host/device-filesystem.ts";
import type { FsStep } from "../../src/agent-host/fs-step.ts";
import {
  BOARDS,
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

const board = boardsClosedAfter();

/** Runs main on a copy of fs with the power cut before step k; returns the copy and the step cut. */
async function cutAt(prepared: DeviceFilesystem, main: string, k: number) {
  const fs = prepared.clone();
  const d = board(fs);
  let taken = 0;
  fs.beforeStep = () => taken++ === k;
  const run = await runOnce(d, main);
  fs.beforeStep = undefined;
  assert.ok("cut" in run.outcome, `a cut before step ${k}`);
  return { fs, d, step: (run.outcome as { cut: FsStep }).cut };
}

/** The steps a run takes when nothing cuts it. */
async function stepsOf(prepared: DeviceFilesystem, main: string): Promise<FsStep[]> {
  const fs = prepared.clone();
  const d = board(fs);
  const run = await runOnce(d, main);
  assert.ok("end" in run.outcome);
  await d.close();
  return fs.steps;
}

const show = (s: FsStep) => `${s.op} ${s.path}`;

for (const b of BOARDS) {
  const kind = b.fs;
  const up = (r: Parameters<typeof updateScript>[0]) => updateScript(r, "", b);
  describe(`${b.label}: a power cut after every write`, () => {
    test("of an update: the old app or the new one boots, complete; the update can be run again", async (t) => {
      const prepared = await withOld(b, board);
      const steps = await stepsOf(prepared, up(NEW));
      const switchAt = steps.findIndex((s) => s.op === "commit" && s.path.startsWith("/app/rec."));
      assert.ok(
        switchAt > 10 && switchAt === steps.length - 1,
        `the record is the last write (${steps.map(show)})`,
      );
      if (kind === "fat") assert.ok(steps.some((s) => s.op === "truncate" && s.path.startsWith("/app/rec.")));
      t.diagnostic(`${kind}: ${steps.length} writes: ${steps.map(show).join(", ")}`);
      for (let k = 0; k < steps.length; k++) {
        const { fs, d, step } = await cutAt(prepared, up(NEW), k);
        assert.deepEqual(step, steps[k], "the same steps in the same order");
        const runs = printed((await runOnce(d, LOADER_MAIN)).output);
        const r = record(fs);
        // Every write before the record's last one leaves the old app, complete.
        assert.deepEqual(runs, [RUNS_OLD], `after a cut before ${show(step)} (write ${k + 1})`);
        assert.deepEqual(r?.active, "a");
        assert.deepEqual(slotFiles(fs, "a"), OLD.files, "the running app is never touched");
        // Whatever the cut left in the other slot, the update goes through when run again.
        assert.deepEqual((await runOnce(d, up(NEW))).output, ["staged ('thermostat', '1.4.0')"]);
        assert.deepEqual(printed((await runOnce(d, LOADER_MAIN)).output), [RUNS_NEW]);
        assert.deepEqual(slotFiles(fs, "b"), NEW.files);
        await d.close();
      }
      // And uncut: the new app.
      const done = prepared.clone();
      const d = board(done);
      await runOnce(d, up(NEW));
      assert.deepEqual(printed((await runOnce(d, LOADER_MAIN)).output), [RUNS_NEW]);
      assert.deepEqual(slotFiles(done, "b"), NEW.files);
    });

    test("of an update into the slot of the app before: its files are removed, the running app stays", async (t) => {
      const prepared = await withOld(b, board);
      const s = board(prepared);
      await runOnce(s, up(NEW));
      assert.deepEqual(printed((await runOnce(s, LOADER_MAIN)).output), [RUNS_NEW]);
      await s.close();
      const next = release("1.5.0", { ...NEW.files, "sensor.py": 'V = "1.5.0"\n' });
      const steps = await stepsOf(prepared, up(next));
      assert.ok(steps.some((x) => x.op === "rmdir" && x.path === "/app/a"));
      t.diagnostic(`${kind}: ${steps.length} writes`);
      for (let k = 0; k < steps.length; k++) {
        const { fs, d, step } = await cutAt(prepared, up(next), k);
        assert.deepEqual(
          printed((await runOnce(d, LOADER_MAIN)).output),
          [RUNS_NEW],
          `after a cut before ${show(step)}`,
        );
        assert.deepEqual(record(fs)?.active, "b");
        assert.deepEqual(slotFiles(fs, "b"), NEW.files);
        await d.close();
      }
      const done = prepared.clone();
      const d = board(done);
      await runOnce(d, up(next));
      assert.deepEqual(printed((await runOnce(d, LOADER_MAIN)).output), ["running 1.4.0 1.5.0 u1 e1"]);
      assert.deepEqual(slotFiles(done, "a"), next.files);
    });

    test("of the loader's boots: counting, confirming and rolling back survive a cut at any write", async () => {
      const prepared = await withOld(b, board);
      const bad = release("1.4.0", { ...NEW.files, "sensor.py": "raise OSError(19)\n" });
      for (const [label, rel, settles] of [
        ["a new app that confirms", NEW, RUNS_NEW],
        ["a new app that raises", bad, RUNS_OLD],
      ] as const) {
        const staged = prepared.clone();
        const s = board(staged);
        assert.deepEqual((await runOnce(s, up(rel))).output, ["staged ('thermostat', '1.4.0')"]);
        await s.close();
        const steps = await stepsOf(staged, LOADER_MAIN);
        assert.ok(steps.length >= 2, `${label}: ${steps.map(show)}`);
        for (let k = 0; k < steps.length; k++) {
          const { fs, d, step } = await cutAt(staged, LOADER_MAIN, k);
          // Boot until the board settles (a rollback resets once): one of the two apps, complete.
          let runs = printed((await runOnce(d, LOADER_MAIN)).output);
          if (runs.at(-1)?.startsWith("mpota_loader: rolled back"))
            runs = printed((await runOnce(d, LOADER_MAIN)).output);
          assert.deepEqual(
            runs.at(-1),
            settles,
            `${label}: after a cut before ${show(step)} (write ${k + 1})`,
          );
          const r = record(fs);
          assert.deepEqual(r?.state, "ok");
          assert.deepEqual(
            slotFiles(fs, r?.active === "a" ? "a" : "b"),
            settles === RUNS_OLD ? OLD.files : NEW.files,
          );
          if (settles === RUNS_OLD)
            assert.match(
              fs.readFile("/app/rollback")?.toString() ?? "",
              /^rolled back thermostat 1\.4\.0: .*OSError/,
            );
          await d.close();
        }
      }
    });
  });
}
