import assert from "node:assert/strict";
import { generateKeyPairSync, sign } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { DEVICE_DIR } from "../../src/agent-host/agent-files.ts";
import { rsaNumbers } from "../../src/protocol/rsa-numbers.ts";
import { type DeviceInterpreter, deviceFiles, freshInterpreter } from "../support/device-interpreter.ts";

// Every .py under device/ must compile under MicroPython 1.27 (the grammar
// the boards run), and the agent must stay small: the sizes below are the
// ones device/README.md documents. Each test has an interpreter of its own:
// the names (qstrs) one test interns would otherwise be missing from what
// the next one measures, as they were when the sizes ran after the compile
// check (about 4 KB less than a board holds).

/** Heap bytes a module keeps after import (bytecode and objects), as measured by gc.mem_alloc(). */
function residentAfterImport(board: DeviceInterpreter, module: string): number {
  return Number(
    board.run(
      `import gc\ngc.collect()\n_a = gc.mem_alloc()\n__import__(${JSON.stringify(module)})\ngc.collect()\nprint(gc.mem_alloc() - _a)`,
    ),
  );
}

/** The rows of device/README.md's size table: file -> [source bytes, resident bytes]. */
function documentedSizes(): Map<string, [number, number]> {
  const readme = readFileSync(join(DEVICE_DIR, "README.md"), "utf8");
  const rows = new Map<string, [number, number]>();
  for (const m of readme.matchAll(/^\| `([\w/.]+\.py)` \| ([\d,]+) \| ([\d,]+) \|/gm)) {
    rows.set(m[1] as string, [
      Number((m[2] as string).replace(/,/g, "")),
      Number((m[3] as string).replace(/,/g, "")),
    ]);
  }
  return rows;
}

describe("device/ sources", () => {
  test("every .py compiles under MicroPython 1.27", async () => {
    assert.ok(deviceFiles.length >= 6, `found ${deviceFiles.map((f) => f.name)}`);
    const board = await freshInterpreter();
    for (const { name, source } of deviceFiles) {
      const printed = board.lines(
        `try:\n    compile(${JSON.stringify(source)}, ${JSON.stringify(name)}, "exec")\n    print("ok")\nexcept SyntaxError as e:\n    print("SyntaxError", e)`,
      );
      assert.deepEqual(printed, ["ok"], name);
    }
  });

  test("no f-strings: % formatting keeps the ESP8266 heap calm", () => {
    for (const { name, source } of deviceFiles) {
      assert.doesNotMatch(source, /(^|[^\w])f["']/m, name);
    }
  });

  test("sizes: the agent's source and resident heap are as device/README.md documents", async (t) => {
    const board = await freshInterpreter();
    const measured = new Map<string, [number, number]>();
    // What the port has built in (here: the host's fakes) is imported first; each
    // module is then measured on top of the ones it imports, in the order the
    // agent imports them, as a board that has just booted: the names (qstrs)
    // a module adds live on the heap too and count.
    board.run("import gc, json, os, time, struct, binascii, machine, esp, network, socket");
    for (const [name, module] of [
      ["lib/umqtt/simple.py", "umqtt.simple"],
      ["ota.py", "ota"],
      ["mpota_cmd.py", "mpota_cmd"],
      ["mpota_agent.py", "mpota_agent"],
    ] as const) {
      const source = Buffer.byteLength(deviceFiles.find((f) => f.name === name)?.source ?? "");
      measured.set(name, [source, residentAfterImport(board, module)]);
    }
    for (const [name, [source, resident]] of measured) {
      t.diagnostic(`${name}: ${source} bytes of source, ${resident} bytes of heap after import`);
    }
    const agent = measured.get("mpota_agent.py") as [number, number];
    const cmd = measured.get("mpota_cmd.py") as [number, number];
    // 12 KB since the app update hooks (issue 19); what the board keeps after compiling is bounded below.
    assert.ok(agent[0] < 12_000, "mpota_agent.py stays under 12 KB of source");
    // The heap bounds count the names each module interns: before each test had its own
    // interpreter they were measured without them (8 KiB, 7.25 KiB, 20 KiB).
    assert.ok(agent[1] < 11_264, "mpota_agent keeps under 11 KiB of heap after import");
    assert.ok(cmd[0] < 10_000, "mpota_cmd.py stays under 10 KB of source");
    // Op app's field rules live in mpota_appget, loaded on demand (issue 19).
    assert.ok(cmd[1] < 7_680, "mpota_cmd keeps under 7.5 KiB of heap after import");
    // What a board holds once the agent is imported (mpota_agent imports the rest).
    const total = [...measured.values()].reduce((sum, [, resident]) => sum + resident, 0);
    assert.ok(total < 24_576, `the agent with its modules keeps under 24 KiB of heap (${total})`);
    // Heap figures move by a few bytes when other sources change (qstr pools), so allow 128.
    const documented = documentedSizes();
    assert.deepEqual([...documented.keys()].sort(), [...measured.keys()].sort());
    for (const [name, [source, resident]] of measured) {
      const [docSource, docResident] = documented.get(name) as [number, number];
      assert.equal(docSource, source, `update the source size of ${name} in device/README.md`);
      assert.ok(
        Math.abs(docResident - resident) <= 128,
        `update the heap size of ${name} in device/README.md`,
      );
    }
  });

  test("one signature check (RSA 2048, e = 65537): its heap, as device/README.md documents", async (t) => {
    const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const n = rsaNumbers(publicKey).n.toString("hex");
    const msg = "mpota-cmd/2\nsim-2\n12\nota\nj-7f3a\n0123456789abcdef0123456789abcdef\n612352\n1.4.0\n0";
    const sig = sign("sha256", Buffer.from(msg), privateKey).toString("hex");
    const board = await freshInterpreter();
    const run = (code: string) => board.run(code);
    const ok = run(`import gc, mpota_cmd
from binascii import unhexlify
n = unhexlify(${JSON.stringify(n)})
sig = unhexlify(${JSON.stringify(sig)})
msg = ${JSON.stringify(msg)}.encode()
print(mpota_cmd.verify(n, msg, sig), mpota_cmd.verify(n, msg + b"x", sig))`);
    // Everything one check allocates, with the collector off (all garbage afterwards).
    const total = Number(
      run(`gc.collect()
gc.disable()
a0 = gc.mem_alloc()
mpota_cmd.verify(n, msg, sig)
print(gc.mem_alloc() - a0)
gc.enable()`),
    );
    // The most a check holds at once is inside its squaring loop: the three 2048-bit
    // numbers (modulus, signature, running value) and one step m * m % n (the 4096-bit
    // product and the result). This wasm build's collector frees nothing while Python
    // code runs, so the parts are measured one by one, collecting between runs.
    run("gc.collect()\na0 = gc.mem_alloc()");
    const numbers = Number(
      run(`N = int.from_bytes(n, "big")
S = int.from_bytes(sig, "big")
M = int.from_bytes(sig, "big")
print(gc.mem_alloc() - a0)`),
    );
    run("gc.collect()");
    const step = Number(
      run(`gc.disable()
a1 = gc.mem_alloc()
M2 = M * M % N
print(gc.mem_alloc() - a1)
gc.enable()`),
    );
    const peak = numbers + step;
    t.diagnostic(
      `verify: ${total} bytes allocated in all, about ${peak} bytes live at once (${numbers} for the three numbers, ${step} for one step)`,
    );
    assert.equal(ok, "True False");
    // Heap bounds with room; the figures are in device/README.md. Its time is a figure, not a
    // bound: `npm run bench -- app` measures it (bench/app-update-bench.ts).
    assert.ok(peak < 4_096, "one check holds under 4 KiB at once");
    assert.ok(total < 32_768, "one check allocates under 32 KiB in all (reclaimed by the collector)");
  });
});
