import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import type { FsStep } from "../../src/agent-host/fs-step.ts";
import {
  MICROPYTHON_BUILDS,
  type MicroPythonRelease,
  micropythonUrl,
} from "../../src/agent-host/micropython-release.ts";
import { SimulatedEsp32Device } from "../../src/simulator/simulated-esp32-device.ts";
import { CommandSigner, TestBroker } from "../agent/support.ts";
import { buildEsp32AppImage } from "../support/esp32-image.ts";
import { AppServer, acks, appCommand, PASSWORD, settled, twentyFiles } from "./agent-app-support.ts";
import { BOARD_MPY, Board } from "./micropython.ts";
import {
  BOARDS,
  boardsClosedAfter,
  LOADER_MAIN,
  MODULUS,
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

// The ESP32 and Pico W app paths on MicroPython 1.29, the current release
// (the spec's "Versions"; the rest of the suite runs 1.27): the switch, the
// way back, power cuts (a subset of the cut points app-power-cut.test.ts
// takes on 1.27), refusals, and the real agent on a simulated ESP32. Same
// helpers and the same unmodified device code as the 1.27 tests.

const board = boardsClosedAfter("1.29");

const show = (s: FsStep) => `${s.op} ${s.path}`;

test("the 1.29 build: its banner, and the .mpy version and sub-version the board profiles carry", async () => {
  const b = await Board.start({ micropython: "1.29" });
  const [banner, mpy] = b.run("import sys\nprint(sys.version)\nprint(sys.implementation._mpy)");
  assert.ok(banner?.endsWith(`MicroPython ${MICROPYTHON_BUILDS["1.29"].banner}`), banner);
  // Bits 0-9 are the core's (version 6, sub-version 3); the architecture above them is the port's.
  for (const m of Object.values(BOARD_MPY)) assert.equal(Number(mpy), m & 0x3ff);
});

test("a release the host has no build of is refused with the choices", () => {
  assert.throws(() => micropythonUrl("1.28" as MicroPythonRelease), {
    name: "AgentHostError",
    message: 'A simulated device runs MicroPython 1.27 or 1.29, not "1.28": choose one of those.',
  });
});

for (const b of BOARDS.filter((p) => p.platform !== "esp8266")) {
  const up = (r: Release, extra = "") => updateScript(r, extra, b);

  describe(`${b.label} on MicroPython 1.29`, () => {
    test("a release is staged beside the running app, fetching only what changed, and switched at the next boot", async () => {
      const fs = await withOld(b, board);
      const d = board(fs);
      const [banner] = (await runOnce(d, "import sys\nprint(sys.version)\n")).output;
      assert.ok(banner?.endsWith(`MicroPython ${MICROPYTHON_BUILDS["1.29"].banner}`), `runs 1.29: ${banner}`);
      const script = up(NEW).replace("    b = BYTES[path]", '    print("fetch", path)\n    b = BYTES[path]');
      assert.deepEqual((await runOnce(d, script)).output, [
        "fetch extra.py",
        "fetch main.py",
        "fetch sensor.py",
        "staged ('thermostat', '1.4.0')",
      ]);
      assert.deepEqual(slotFiles(fs, "a"), OLD.files, "the running slot is untouched");
      assert.deepEqual(record(fs), { seq: 4, active: "b", prev: "a", state: "new" });
      for (let boot = 0; boot < 2; boot++)
        assert.deepEqual(printed((await runOnce(d, LOADER_MAIN)).output), [RUNS_NEW]);
      assert.deepEqual(slotFiles(fs, "b"), NEW.files);
      assert.deepEqual(record(fs), { seq: 6, active: "b", prev: "a", state: "ok" }, "confirmed");
    });

    test("the way back: a new app that raises at import is rolled back with its error line", async () => {
      const fs = await withOld(b, board);
      const d = board(fs);
      const bad = release("1.4.0", { ...NEW.files, "sensor.py": 'V = "1.4.0"\nraise OSError(19)\n' });
      assert.deepEqual((await runOnce(d, up(bad))).output, ["staged ('thermostat', '1.4.0')"]);
      const why = 'File "/app/b/sensor.py", line 2, in <module>: OSError: [Errno 19] ENODEV';
      const failed = await runOnce(d, LOADER_MAIN);
      assert.deepEqual(failed.output, [`mpota_loader: rolled back thermostat 1.4.0: ${why}`]);
      assert.equal("end" in failed.outcome && failed.outcome.end.kind, "reset");
      assert.equal(fs.readFile("/app/rollback")?.toString(), `rolled back thermostat 1.4.0: ${why}\n`);
      assert.deepEqual(printed((await runOnce(d, LOADER_MAIN)).output), [RUNS_OLD]);
      assert.deepEqual(record(fs), { seq: 6, active: "a", prev: "-", state: "ok" });
      assert.deepEqual(slotFiles(fs, "a"), OLD.files);
    });

    test("a power cut during an update (first, middle and last write) leaves the old app, complete; uncut, the new one", async (t) => {
      const prepared = await withOld(b, board);
      const probe = prepared.clone();
      const p = board(probe);
      assert.deepEqual((await runOnce(p, up(NEW))).output, ["staged ('thermostat', '1.4.0')"]);
      await p.close();
      const steps = probe.steps;
      assert.ok(
        steps.at(-1)?.path.startsWith("/app/rec."),
        `the record is the last write (${steps.map(show)})`,
      );
      t.diagnostic(
        `${b.label}: ${steps.length} writes; cut before 1, ${(steps.length >> 1) + 1} and ${steps.length}`,
      );
      for (const k of [0, steps.length >> 1, steps.length - 1]) {
        const fs = prepared.clone();
        let taken = 0;
        fs.beforeStep = () => taken++ === k;
        const d = board(fs);
        const run = await runOnce(d, up(NEW));
        fs.beforeStep = undefined;
        assert.deepEqual("cut" in run.outcome && show(run.outcome.cut), show(steps[k] as FsStep));
        const where = `after a cut before ${show(steps[k] as FsStep)} (write ${k + 1})`;
        assert.deepEqual(printed((await runOnce(d, LOADER_MAIN)).output), [RUNS_OLD], where);
        assert.deepEqual(slotFiles(fs, "a"), OLD.files, where);
        assert.deepEqual((await runOnce(d, up(NEW))).output, ["staged ('thermostat', '1.4.0')"], where);
        assert.deepEqual(printed((await runOnce(d, LOADER_MAIN)).output), [RUNS_NEW], where);
        assert.deepEqual(slotFiles(fs, "b"), NEW.files, where);
        await d.close();
      }
    });

    test("a release for another board or another .mpy is refused before any write", async () => {
      const fs = await withOld(b, board);
      const d = board(fs);
      const sub = (b.mpy >> 8) & 3;
      const arch = b.mpy >> 10;
      const at = fs.steps.length;
      const other = release("1.4.0", NEW.files, ["esp8266"]);
      assert.deepEqual((await runOnce(d, up(other))).output, [
        `refused: thermostat 1.4.0 is for boards esp8266; this board is ${b.platform}`,
      ]);
      const native = release("1.4.0", NEW.files, [b.platform], { version: 6, arch, subVersion: sub - 1 });
      assert.match(
        (await runOnce(d, up(native))).output.join("\n"),
        new RegExp(
          `^refused: .*native code for architecture ${arch}\\.${sub - 1}; this board is ${arch}\\.${sub}$`,
        ),
      );
      assert.deepEqual(
        fs.steps.slice(at).filter((s) => s.path.startsWith("/app")),
        [],
        "nothing under /app was written",
      );
      assert.deepEqual(printed((await runOnce(d, LOADER_MAIN)).output), [RUNS_OLD]);
    });
  });
}

describe("the agent on a simulated ESP32 on MicroPython 1.29", () => {
  const signer = new CommandSigner();
  let broker: TestBroker;
  const cleanups: Array<() => Promise<void> | void> = [];
  before(async () => {
    broker = await TestBroker.start();
  });
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });
  after(async () => {
    await broker.close();
  });

  test("takes a 20-file app, then a one-file change fetching that file and the manifest only", async () => {
    const id = "app-esp32-1-29";
    const server = await AppServer.start(id, PASSWORD);
    cleanups.push(() => server.close());
    const dev = new SimulatedEsp32Device({
      id,
      broker: broker.url,
      firmware: buildEsp32AppImage({ size: 120_000, seed: 11 }),
      agent: {
        micropython: "1.29",
        commandKeys: [signer.modulusHex],
        appKeys: [MODULUS],
        config: { MQTT_USER: id, MQTT_PASSWORD: PASSWORD, RETRY_MS: 200 },
        files: { "boot.py": "import sys\nprint(sys.version)\n" },
      },
    });
    cleanups.push(() => dev.stop());
    const d = dev.agent;
    const first = settled(d, () => true);
    await dev.start();
    const s0 = (await first) as { v: number; chip: string; ver: string; app: Record<string, unknown> };
    assert.deepEqual(
      [s0.v, s0.chip, s0.ver, s0.app.board, s0.app.mpy],
      [3, "esp32", MICROPYTHON_BUILDS["1.29"].banner, "esp32", BOARD_MPY.esp32],
    );
    assert.ok(
      d.output.includes(`3.4.0; MicroPython ${MICROPYTHON_BUILDS["1.29"].banner}`),
      "the interpreter is 1.29",
    );
    let seq = 1;
    const update = (r: ReturnType<typeof twentyFiles>, job: string) => {
      server.active = r.sha;
      const url = server.add(r);
      const running = settled(d, (app) => app.id === r.sha);
      return broker
        .publish(`mpota/${id}/cmd`, appCommand(signer, id, seq++, job, r, url), true)
        .then(() => running);
    };
    const v1 = twentyFiles("1.0.0");
    const v2 = twentyFiles("1.1.0", 7);
    assert.equal(((await update(v1, "j-1")).app as Record<string, unknown>).id, v1.sha);
    assert.ok(d.output.includes("app 1.0.0 1.0.0"), "the first app ran");
    assert.equal(server.since(0).length, 21, "the manifest and 20 files");
    const from = server.requests.length;
    assert.equal(((await update(v2, "j-2")).app as Record<string, unknown>).ver, "1.1.0");
    assert.ok(d.output.includes("app 1.0.0 1.1.0"), "the changed app ran");
    assert.deepEqual(
      server.since(from).map((q) => [q.what, q.sent]),
      [
        ["manifest", v2.manifest.length],
        ["m07.py", (v2.files["m07.py"] as string).length],
      ],
    );
    const total = Object.values(v2.files).reduce((n, text) => n + text.length, 0);
    assert.deepEqual(acks(d, "j-2").at(-1), { job: "j-2", got: total, total, files: 20, of: 20, done: true });
    assert.equal(record(d.fs)?.state, "ok");
  });
});
