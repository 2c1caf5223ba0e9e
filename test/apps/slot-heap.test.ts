import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { DEVICE_DIR } from "../../src/agent-host/agent-files.ts";
import { BOARD_MPY, Board } from "./micropython.ts";
import { MODULUS, NEW, OLD, updateScript } from "./slot-board.ts";

// Heap of the loader and of an update's switch, measured with gc.mem_alloc()
// in the wasm build (docs/app-updates.md states the figures). The ESP8266
// has 30-40 KiB free after boot with WiFi: the loader stays imported while
// the app runs; mpota_stage only while an update runs.

test("heap: the loader's resident size, a boot's record work, and what staging allocates besides the check", async (t) => {
  const board = await Board.start();
  for (const f of ["mpota_loader.py", "mpota_stage.py"])
    board.write(`/${f}`, readFileSync(join(DEVICE_DIR, f), "utf8"));
  const number = (code: string) => Number(board.run(code).at(-1));
  const resident = (module: string) =>
    number(
      `import gc\ngc.collect()\na0 = gc.mem_alloc()\nimport ${module}\ngc.collect()\nprint(gc.mem_alloc() - a0)`,
    );
  const allocated = (code: string) =>
    number(
      `gc.collect()\ngc.disable()\na0 = gc.mem_alloc()\n${code}\nprint(gc.mem_alloc() - a0)\ngc.enable()`,
    );

  const loader = resident("mpota_loader");
  const stager = resident("mpota_stage");
  // OLD installed and confirmed; then one boot of a new app's record work (count the boot, confirm).
  board.run(updateScript(OLD));
  board.run("mpota_loader.confirm()");
  assert.deepEqual(board.run("print(mpota_loader.read())"), ["[2, 'a', '-', 'ok', 0]"]);
  const [receive] = updateScript(NEW).split("\ntry:\n");
  board.run(receive as string);
  const args = `"/stage.manifest", [${JSON.stringify(MODULUS)}], fetch, platform="esp8266", mpy=${BOARD_MPY.esp8266}`;
  const check = allocated(
    `mpota_app.check("/stage.manifest", [${JSON.stringify(MODULUS)}], platform="esp8266", mpy=${BOARD_MPY.esp8266})`,
  );
  const stage = allocated(`print(mpota_stage.stage(${args}))`);
  assert.deepEqual(board.run("print(mpota_loader.read())"), ["[3, 'b', 'a', 'new', 0]"]);
  const boot = allocated(
    "r = mpota_loader.read()\nmpota_loader.write(r[0] + 1, r[1], r[2], r[3], r[4] + 1)\nmpota_loader.confirm()",
  );
  assert.deepEqual(board.run("print(mpota_loader.read())"), ["[5, 'b', 'a', 'ok', 0]"]);
  t.diagnostic(
    `mpota_loader: ${loader} bytes of heap after import; mpota_stage: ${stager}; a trial boot's record work (count, confirm) allocates ${boot} bytes in all; staging a 4-file release allocates ${stage - check} bytes besides the check (${check}, which includes the wasm build's pure-Python base64)`,
  );
  assert.ok(loader < 6144, `the loader keeps under 6 KiB after import (${loader})`);
  assert.ok(stager < 6144, `mpota_stage keeps under 6 KiB after import (${stager})`);
  // Both include hexlify, which is pure Python in this wasm build and C on the boards.
  assert.ok(boot < 8192, `a boot's record work allocates under 8 KiB (${boot})`);
  assert.ok(stage - check < 24_576, `staging allocates under 24 KiB besides the check (${stage - check})`);
});
