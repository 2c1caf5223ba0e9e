import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { DeviceFilesystem } from "../../src/agent-host/device-filesystem.ts";
import {
  BOARDS,
  boardsClosedAfter,
  confirmLine,
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

// device/mpota_loader.py and mpota_app.stage under real MicroPython (wasm,
// v1.27) on each board profile (the ESP8266 on FAT, the ESP32 and the Pico W
// on LittleFS): the switch and the way back.

const board = boardsClosedAfter();

for (const b of BOARDS) {
  describe(`${b.label}: the switch`, () => {
    test("an update fetches only the changed files, switches at the next boot, and a confirmed app stays", async () => {
      const fs = await withOld(b, board);
      const d = board(fs);
      const script = updateScript(NEW, "", b).replace(
        "    b = BYTES[path]",
        '    print("fetch", path)\n    b = BYTES[path]',
      );
      const up = await runOnce(d, script);
      assert.deepEqual(up.output, [
        "fetch extra.py",
        "fetch main.py",
        "fetch sensor.py",
        "staged ('thermostat', '1.4.0')",
      ]);
      assert.deepEqual(slotFiles(fs, "b"), NEW.files);
      assert.deepEqual(slotFiles(fs, "a"), OLD.files, "the running slot is untouched");
      assert.deepEqual(record(fs), { seq: 4, active: "b", prev: "a", state: "new" });
      for (let boot = 0; boot < 5; boot++)
        assert.deepEqual(printed((await runOnce(d, LOADER_MAIN)).output), [RUNS_NEW]);
      assert.deepEqual(
        record(fs),
        { seq: 6, active: "b", prev: "a", state: "ok" },
        "confirmed once, then left alone",
      );
    });

    test("an unchanged file that is damaged in the running slot is fetched, not copied", async () => {
      const fs = await withOld(b, board);
      fs.writeFile("/app/a/lib/util.py", 'V = "u2"\n'); // same size, other bytes
      const d = board(fs);
      const script = updateScript(NEW, "", b).replace(
        "    b = BYTES[path]",
        '    print("fetch", path)\n    b = BYTES[path]',
      );
      assert.deepEqual((await runOnce(d, script)).output, [
        "fetch extra.py",
        "fetch lib/util.py",
        "fetch main.py",
        "fetch sensor.py",
        "staged ('thermostat', '1.4.0')",
      ]);
      assert.deepEqual(slotFiles(fs, "b"), NEW.files);
    });

    test("a file that does not match its digest is discarded and the running app stays; a downgrade needs consent", async () => {
      const fs = await withOld(b, board);
      const d = board(fs);
      const tampered = { ...NEW, files: { ...NEW.files, "sensor.py": 'V = "evil!"\n' } };
      assert.deepEqual((await runOnce(d, updateScript(tampered, "", b))).output, [
        "refused: sensor.py: its SHA-256 differs from the manifest's; discarded",
      ]);
      assert.equal(fs.readFile("/app/b/sensor.py"), undefined);
      assert.deepEqual(record(fs), { seq: 3, active: "a", prev: "-", state: "ok" });
      assert.deepEqual(printed((await runOnce(d, LOADER_MAIN)).output), [RUNS_OLD]);
      const older = release("1.2.0", OLD.files);
      assert.deepEqual((await runOnce(d, updateScript(older, "", b))).output, [
        "refused: thermostat 1.2.0 is older than the installed 1.3.0: a downgrade needs the owner's consent",
      ]);
      assert.deepEqual((await runOnce(d, updateScript(older, ", down=True", b))).output, [
        "staged ('thermostat', '1.2.0')",
      ]);
    });

    test("a release larger than the free space is refused before any write", async () => {
      const fs = await withOld(b, board, 128 * 1024);
      const d = board(fs);
      const big = release("2.0.0", { ...NEW.files, "table.py": `T = "${"x".repeat(90_000)}"\n` });
      const steps = fs.steps.length;
      fs.writeFile("/main.py", updateScript(big, "", b)); // the script is on flash too, with table.py in it
      const free = (fs.statvfs()[4] as number) * 4096;
      const up = await runOnce(d, updateScript(big, "", b));
      // Blocks of 4 KiB: 22 for table.py, 1 per other file, 1 for lib/, 1 for the manifest, 3 for folder, record and note.
      assert.deepEqual(up.output, [
        `refused: thermostat 2.0.0 needs ${(22 + 4 + 1 + 1 + 3) * 4096} bytes; ${free} are free`,
      ]);
      assert.deepEqual(
        fs.steps.slice(steps).map((s) => `${s.op} ${s.path}`),
        b.fs === "fat" ? ["truncate /stage.manifest", "commit /stage.manifest"] : ["commit /stage.manifest"],
        "only the manifest was received (FAT truncates the last one first; LittleFS commits over it at once)",
      );
      assert.deepEqual(printed((await runOnce(d, LOADER_MAIN)).output), [RUNS_OLD]);
    });
  });

  describe(`${b.label}: the way back`, () => {
    test("a new app that raises at import is rolled back with its error line, and the old app starts", async () => {
      const fs = await withOld(b, board);
      const d = board(fs);
      const bad = release("1.4.0", { ...NEW.files, "sensor.py": 'V = "1.4.0"\nraise OSError(19)\n' });
      assert.deepEqual((await runOnce(d, updateScript(bad, "", b))).output, [
        "staged ('thermostat', '1.4.0')",
      ]);
      const why = 'File "/app/b/sensor.py", line 2, in <module>: OSError: [Errno 19] ENODEV';
      const failed = await runOnce(d, LOADER_MAIN);
      assert.deepEqual(failed.output, [`mpota_loader: rolled back thermostat 1.4.0: ${why}`]);
      assert.deepEqual(
        "end" in failed.outcome && failed.outcome.end.kind,
        "reset",
        "the loader resets into the old app",
      );
      assert.equal(fs.readFile("/app/rollback")?.toString(), `rolled back thermostat 1.4.0: ${why}\n`);
      assert.deepEqual(record(fs), { seq: 6, active: "a", prev: "-", state: "ok" });
      assert.deepEqual(printed((await runOnce(d, LOADER_MAIN)).output), [RUNS_OLD]);
      assert.deepEqual(slotFiles(fs, "a"), OLD.files);
      // The next good update clears the note and goes into the failed app's slot.
      assert.deepEqual((await runOnce(d, updateScript(NEW, "", b))).output, [
        "staged ('thermostat', '1.4.0')",
      ]);
      assert.equal(fs.readFile("/app/rollback"), undefined);
      assert.deepEqual(printed((await runOnce(d, LOADER_MAIN)).output), [RUNS_NEW]);
    });

    test("a new app that never confirms is rolled back after 3 boots; no update is taken meanwhile", async () => {
      const fs = await withOld(b, board);
      const d = board(fs);
      const shy = release("1.4.0", {
        ...NEW.files,
        "main.py": NEW.files["main.py"]?.replace(confirmLine, "") ?? "",
      });
      assert.deepEqual((await runOnce(d, updateScript(shy, "", b))).output, [
        "staged ('thermostat', '1.4.0')",
      ]);
      for (let boot = 0; boot < 3; boot++)
        assert.deepEqual(printed((await runOnce(d, LOADER_MAIN)).output), [RUNS_NEW]);
      assert.deepEqual((await runOnce(d, updateScript(NEW, "", b))).output, [
        "refused: the running app thermostat 1.4.0 is not confirmed yet: update after it confirms or is rolled back",
      ]);
      assert.deepEqual(printed((await runOnce(d, LOADER_MAIN)).output), [
        "mpota_loader: rolled back thermostat 1.4.0: not confirmed within 3 boots",
        RUNS_OLD,
      ]);
      assert.equal(
        fs.readFile("/app/rollback")?.toString(),
        "rolled back thermostat 1.4.0: not confirmed within 3 boots\n",
      );
      assert.deepEqual(printed((await runOnce(d, LOADER_MAIN)).output), [RUNS_OLD]);
    });

    test("a first app that raises has nothing to go back to: it is marked bad and not started again", async () => {
      const fs = new DeviceFilesystem({ kind: b.fs, capacity: b.capacity });
      const d = board(fs);
      const bad = release("1.0.0", { "main.py": "import nosuchmodule\n" });
      assert.deepEqual((await runOnce(d, updateScript(bad, "", b))).output, [
        "staged ('thermostat', '1.0.0')",
      ]);
      assert.deepEqual((await runOnce(d, LOADER_MAIN)).output, [
        "mpota_loader: rolled back thermostat 1.0.0: File \"/app/a/main.py\", line 1, in <module>: ImportError: no module named 'nosuchmodule'",
      ]);
      assert.deepEqual((await runOnce(d, LOADER_MAIN)).output, ["mpota_loader: no app to start"]);
    });
  });
}
