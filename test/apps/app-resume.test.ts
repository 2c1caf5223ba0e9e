import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { DeviceFilesystem } from "../../src/agent-host/device-filesystem.ts";
import type { FsStep } from "../../src/agent-host/fs-step.ts";
import {
  BOARDS,
  type BoardProfile,
  boardsClosedAfter,
  ESP8266,
  LOADER_MAIN,
  NEW,
  OLD,
  printed,
  type Release,
  RUNS_NEW,
  RUNS_OLD,
  record,
  release,
  runOnce,
  slotFiles,
  updateScript,
  withOld,
} from "./slot-board.ts";

// Resuming a stopped update (issue 19: "a transfer that stops resumes where
// it stopped, keeping the files already verified"), on each board's
// filesystem: the files an attempt for the same manifest staged are checked
// again by SHA-256 and kept, only the rest is fetched; another manifest
// discards the partial stage. A power cut after every single write of a
// resumed update, in turn, leaves the old app, complete.

const board = boardsClosedAfter();

const show = (s: FsStep) => `${s.op} ${s.path}`;
/** The update, step by step (`kept x`, `copied x`, `fetched x`). */
const listing = (r: Release, b: BoardProfile) => updateScript(r, "", b, true);
const stepsNew = ["check thermostat", "fetched extra.py", "copied lib/util.py", "fetched main.py"];

/** OLD running; an update to NEW cut by the power just before main.py's data reached flash. */
async function partial(b: BoardProfile): Promise<DeviceFilesystem> {
  const prepared = await withOld(b, board);
  const probe = prepared.clone();
  const p = board(probe);
  await runOnce(p, listing(NEW, b));
  await p.close();
  const at = probe.steps.findIndex((s) => s.op === "commit" && s.path === "/app/b/main.py");
  assert.ok(at > 0);
  const fs = prepared.clone();
  let taken = 0;
  fs.beforeStep = () => taken++ === at;
  const d = board(fs);
  const run = await runOnce(d, listing(NEW, b));
  fs.beforeStep = undefined;
  assert.ok("cut" in run.outcome);
  assert.deepEqual(run.output, stepsNew.slice(0, 3), "extra.py and lib/util.py were staged before the cut");
  await d.close();
  return fs;
}

for (const b of BOARDS) {
  describe(`${b.label}: resuming`, () => {
    test("a resumed update keeps the verified files, fetches the rest; a power cut after each of its writes leaves the old app", async (t) => {
      const stopped = await partial(b);
      const script = listing(NEW, b);
      const probe = stopped.clone();
      const p = board(probe);
      assert.deepEqual((await runOnce(p, script)).output, [
        "check thermostat",
        "kept extra.py",
        "kept lib/util.py",
        "fetched main.py",
        "fetched sensor.py",
        "switch thermostat",
      ]);
      await p.close();
      const steps = probe.steps;
      t.diagnostic(
        `${b.label}: the resumed update takes ${steps.length} writes: ${steps.map(show).join(", ")}`,
      );
      assert.ok(
        steps.every((s) => !/^\/app\/b\/(extra\.py|lib)/.test(s.path)),
        "nothing kept is written again",
      );
      assert.ok(steps.at(-1)?.path.startsWith("/app/rec."), "the record is still the last write");
      for (let k = 0; k < steps.length; k++) {
        const fs = stopped.clone();
        let taken = 0;
        fs.beforeStep = () => taken++ === k;
        const d = board(fs);
        const run = await runOnce(d, script);
        fs.beforeStep = undefined;
        assert.deepEqual("cut" in run.outcome && show(run.outcome.cut), show(steps[k] as FsStep));
        const where = `after a cut before ${show(steps[k] as FsStep)} (write ${k + 1})`;
        assert.deepEqual(printed((await runOnce(d, LOADER_MAIN)).output), [RUNS_OLD], where);
        assert.deepEqual(slotFiles(fs, "a"), OLD.files, "the running app is never touched");
        // Resumed once more, it goes through; what it fetches is what the cuts left unverified.
        const again = (await runOnce(d, script)).output;
        assert.deepEqual(again.at(-1), "switch thermostat", where);
        assert.ok(again.includes("kept extra.py"), `${where}: ${again}`);
        assert.deepEqual(printed((await runOnce(d, LOADER_MAIN)).output), [RUNS_NEW]);
        assert.deepEqual(slotFiles(fs, "b"), NEW.files);
        await d.close();
      }
    });

    test("a release for another board, another .mpy or more than the free space is refused before any write", async () => {
      const fs = await withOld(b, board);
      const d = board(fs);
      const other = b.platform === "esp8266" ? "esp32" : "esp8266";
      const sub = (b.mpy >> 8) & 3;
      const arch = b.mpy >> 10;
      const big = release("2.0.0", { ...NEW.files, "table.py": "x".repeat(1024 * 1024) });
      const at = fs.steps.length;
      const cases: Array<[Release, RegExp]> = [
        [
          release("1.4.0", NEW.files, [other]),
          new RegExp(`is for boards ${other}; this board is ${b.platform}$`),
        ],
        [
          release("1.4.0", NEW.files, [b.platform], { version: 6, arch, subVersion: sub === 3 ? 2 : 3 }),
          new RegExp(
            `native code for architecture ${arch}\\.${sub === 3 ? 2 : 3}; this board is ${arch}\\.${sub}$`,
          ),
        ],
        // The script carries no bytes for table.py: nothing may be fetched.
        [{ ...big, files: NEW.files }, /^refused: thermostat 2\.0\.0 needs \d+ bytes; \d+ are free$/],
      ];
      for (const [r, refusal] of cases) {
        const out = (await runOnce(d, updateScript(r, "", b))).output;
        assert.equal(out.length, 1);
        assert.match(out[0] as string, refusal);
        assert.match(out[0] as string, /^refused: /);
      }
      const [, need, free] = /needs (\d+) bytes; (\d+) are free/.exec(
        (await runOnce(d, updateScript({ ...big, files: NEW.files }, "", b))).output[0] as string,
      ) as RegExpExecArray;
      assert.ok(Number(need) > 1024 * 1024 && Number(free) < Number(need) && Number(free) > 0);
      assert.deepEqual(
        fs.steps.slice(at).filter((s) => s.path.startsWith("/app")),
        [],
        "only main.py and the manifest were written",
      );
      assert.deepEqual(printed((await runOnce(d, LOADER_MAIN)).output), [RUNS_OLD]);
    });
  });
}

describe("resuming: what is kept and what is not", () => {
  test("a transfer that breaks is resumed by the next attempt; a staged file damaged meanwhile is fetched again", async () => {
    const fs = await withOld("littlefs", board);
    const d = board(fs);
    const broken = listing(NEW, ESP8266).replace(
      "    b = BYTES[path]",
      '    if path == "main.py":\n        raise OSError(104)  # ECONNRESET\n    b = BYTES[path]',
    );
    const first = await runOnce(d, broken);
    assert.deepEqual(first.output.slice(0, 3), stepsNew.slice(0, 3));
    assert.ok("end" in first.outcome && first.outcome.end.kind === "crash", "the OSError reaches the caller");
    assert.deepEqual(record(fs), { seq: 3, active: "a", prev: "-", state: "ok" });
    fs.writeFile("/app/b/extra.py", 'V = "e2"\n'); // same size, other bytes
    assert.deepEqual((await runOnce(d, listing(NEW, ESP8266))).output, [
      "check thermostat",
      "fetched extra.py",
      "kept lib/util.py",
      "fetched main.py",
      "fetched sensor.py",
      "switch thermostat",
    ]);
    assert.deepEqual(printed((await runOnce(d, LOADER_MAIN)).output), [RUNS_NEW]);
  });

  test("a sleepy device stops between two steps at the end of its wake and goes on at the next", async () => {
    const fs = await withOld("fat", board);
    const d = board(fs);
    // Two fetched files per wake, then a deep sleep (it never returns), as a wake's time budget would.
    const wake = listing(NEW, ESP8266)
      .replace("try:\n", "import machine\nn = 0\ntry:\n")
      .replace(
        "            print(*s[:2])",
        '            print(*s[:2])\n            n += s[0] == "fetched"\n            if n == 2:\n                machine.deepsleep(60000)',
      );
    const first = await runOnce(d, wake);
    assert.deepEqual(first.output, stepsNew);
    assert.ok("end" in first.outcome && first.outcome.end.kind === "deepsleep");
    assert.deepEqual(record(fs), { seq: 3, active: "a", prev: "-", state: "ok" }, "no switch yet");
    assert.deepEqual(printed((await runOnce(d, LOADER_MAIN)).output), [RUNS_OLD]);
    assert.deepEqual((await runOnce(d, wake)).output, [
      "check thermostat",
      "kept extra.py",
      "kept lib/util.py",
      "kept main.py",
      "fetched sensor.py",
      "switch thermostat",
    ]);
    assert.deepEqual(printed((await runOnce(d, LOADER_MAIN)).output), [RUNS_NEW]);
  });

  test("another manifest discards the partial stage; a manifest that fails its check leaves it", async () => {
    const fs = await partial(ESP8266);
    const d = board(fs);
    const forged = { ...NEW, manifest: Buffer.from(NEW.manifest.toString().replace("1.4.0", "1.4.1")) };
    assert.match(
      (await runOnce(d, updateScript(forged))).output[0] as string,
      /^refused: manifest: the signature/,
    );
    assert.equal(fs.readFile("/app/b/extra.py")?.toString(), NEW.files["extra.py"], "still staged");
    const next = release("1.5.0", { ...NEW.files, "sensor.py": 'V = "1.5.0"\n' });
    assert.deepEqual((await runOnce(d, listing(next, ESP8266))).output, [
      "check thermostat",
      "fetched extra.py",
      "copied lib/util.py",
      "fetched main.py",
      "fetched sensor.py",
      "switch thermostat",
    ]);
    assert.deepEqual(slotFiles(fs, "b"), next.files);
    assert.deepEqual(fs.readFile("/app/b/.manifest"), next.manifest);
    assert.deepEqual(printed((await runOnce(d, LOADER_MAIN)).output), ["running 1.4.0 1.5.0 u1 e1"]);
  });
});
