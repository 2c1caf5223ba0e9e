import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { DEVICE_DIR } from "../../src/agent-host/agent-files.ts";
import { Board } from "./micropython.ts";

// The heap the agent's app update adds on top of the agent, under MicroPython
// 1.27 (wasm), measured between calls (the wasm build collects only when
// control returns to JavaScript: test/apps/update-heap.test.ts): what
// mpota_appget, mpota_http, mpota_stage and mpota_app hold once imported, and
// that dropping them after the update (mpota_agent._apps) gives it all back.
// The figures are in docs/app-updates.md ("Heap").

test("the updater's modules load only while an update runs, and give their heap back", async (t) => {
  const board = await Board.start();
  for (const f of [
    "mpota_loader.py",
    "mpota_stage.py",
    "mpota_cmd.py",
    "mpota_appget.py",
    "mpota_appjob.py",
    "mpota_http.py",
  ])
    board.write(`/${f}`, readFileSync(join(DEVICE_DIR, f), "utf8"));
  // The wasm build has no socket module: a stand-in, as small as a built-in's entry.
  board.write("/socket.py", "def socket():\n    pass\n");
  const number = (code: string) => Number(board.run(code).at(-1));
  board.run('import gc, sys, socket\ndel mpota_app\ndel sys.modules["mpota_app"]');
  // At rest the agent holds mpota_cmd, and main.py ran the loader.
  board.run("import mpota_cmd, mpota_loader");
  board.run("gc.collect()");
  const rest = number("print(gc.mem_alloc())");
  board.run("import mpota_appget, mpota_appjob, mpota_http, mpota_stage, mpota_app");
  board.run("gc.collect()");
  const loaded = number("print(gc.mem_alloc())") - rest;
  board.run(
    'del mpota_appget, mpota_appjob, mpota_http, mpota_stage, mpota_app\nfor m in ("mpota_appget", "mpota_appjob", "mpota_stage", "mpota_app", "mpota_http"):\n    sys.modules.pop(m, None)',
  );
  board.run("gc.collect()");
  const after = number("print(gc.mem_alloc())") - rest;
  t.diagnostic(`the update's modules: ${loaded} bytes while an update runs; ${after} after they are dropped`);
  assert.ok(loaded > 8000, `the modules were loaded (${loaded})`);
  // What stays is the interned names (qstrs) the sources added: a few hundred bytes, not the code.
  assert.ok(after < 1536, `dropped, they give back all but ${after} bytes`);
});

// The ESP8266 updates in a boot of its own (mpota_appboot, run by the
// loader before the app and the agent): what that boot holds once its
// modules are imported, with the agent, mpota_cmd and umqtt.simple left out
// (it speaks the little MQTT it needs itself). A file step's work comes on
// top (update-heap.test.ts).
test("the update boot holds the loader, the job and the updater, not the agent nor umqtt.simple", async (t) => {
  const board = await Board.start();
  for (const f of [
    "mpota_loader.py",
    "mpota_appboot.py",
    "mpota_appjob.py",
    "mpota_stage.py",
    "mpota_http.py",
    "mpota_cmd.py",
    "lib/umqtt/simple.py",
  ])
    board.write(`/${f}`, readFileSync(join(DEVICE_DIR, f), "utf8"));
  // The wasm build has none of the port's modules: stand-ins as small as a built-in's entry.
  for (const m of ["socket", "machine", "network"]) board.write(`/${m}.py`, "def f():\n    pass\n");
  const number = (code: string) => Number(board.run(code).at(-1));
  board.run(
    'import gc, sys, socket, machine, network\ndel mpota_app\ndel sys.modules["mpota_app"]\nsys.path.append("/lib")',
  );
  board.run("gc.collect()");
  const base = number("print(gc.mem_alloc())");
  board.run("import mpota_loader, mpota_appboot, mpota_appjob, mpota_http, mpota_stage, mpota_app");
  board.run("gc.collect()");
  const modules = number("print(gc.mem_alloc())") - base;
  const loaded = board.run('print(" ".join(sorted(m for m in sys.modules if m[:5] in ("mpota", "umqtt"))))');
  assert.deepEqual(loaded, ["mpota_app mpota_appboot mpota_appjob mpota_http mpota_loader mpota_stage"]);
  board.run("from umqtt.simple import MQTTClient");
  board.run("gc.collect()");
  const umqtt = number("print(gc.mem_alloc())") - base - modules;
  t.diagnostic(
    `the update boot: ${modules} bytes of modules; umqtt.simple, which it does without, ${umqtt} as .py`,
  );
  assert.ok(modules > 8000 && umqtt > 2000, `the modules were loaded (${modules}, ${umqtt})`);
});
