import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { before, describe, test } from "node:test";
import { DEVICE_DIR } from "../../src/agent-host/agent-files.ts";
import { HOST_MODULES } from "../../src/agent-host/python-fakes.ts";

// The heap of the ESP32 pull path under MicroPython 1.27 (wasm). This wasm
// build's heap grows on demand and its collector frees nothing while Python
// runs, so a board's low-water mark cannot be read off a simulated run (the
// fakes' own hex strings would swamp it). What the agent itself costs is
// measured instead: what mpota_pull keeps after import, and everything its
// transfer loop allocates over a 1.5 MiB image read from a socket and
// written to a slot that allocate nothing themselves. The board's peak is
// the resident part plus the 4 KiB block buffer plus what the collector has
// not yet reclaimed of that garbage.

const MICROPYTHON_PACKAGE: string = "@micropython/micropython-webassembly-pyscript";
const SIZE = 1_572_864 - 4096 * 12; // a 1.5 MiB image, close to the slot as real builds are

interface MicroPython {
  registerJsModule(name: string, module: object): void;
  runPython(code: string): unknown;
  FS: { mkdirTree(path: string): void; writeFile(path: string, data: string): void };
}

let mp: MicroPython;
const printed: string[] = [];
const run = (code: string): string => {
  printed.length = 0;
  mp.runPython(code);
  return printed.at(-1) ?? "";
};

before(async () => {
  const { loadMicroPython } = (await import(MICROPYTHON_PACKAGE)) as {
    loadMicroPython: (options: object) => Promise<MicroPython>;
  };
  mp = await loadMicroPython({
    stdout: (line: string) => printed.push(line),
    stderr: (line: string) => printed.push(line),
  });
  mp.registerJsModule("_mpota_host", {});
  const files: Record<string, string> = {
    ...HOST_MODULES,
    "lib/esp32.py": "class Partition:\n    pass\n",
    "mpota_cmd.py": readFileSync(join(DEVICE_DIR, "mpota_cmd.py"), "utf8"),
    "mpota_pull.py": readFileSync(join(DEVICE_DIR, "mpota_pull.py"), "utf8"),
  };
  for (const [path, text] of Object.entries(files)) {
    if (path.includes("/")) mp.FS.mkdirTree(`/${path.slice(0, path.lastIndexOf("/"))}`);
    mp.FS.writeFile(`/${path}`, text);
  }
});

describe("the ESP32 pull path's heap", () => {
  test("resident after import, and what a 1.5 MiB transfer allocates", (t) => {
    run("import gc, json, os, time, binascii, hashlib, machine, socket, esp32, mpota_cmd");
    const resident = Number(
      run("gc.collect()\na0 = gc.mem_alloc()\nimport mpota_pull\ngc.collect()\nprint(gc.mem_alloc() - a0)"),
    );
    const out = run(`from hashlib import sha256
from binascii import hexlify
body = bytearray(${SIZE})
for i in range(0, ${SIZE}, 251):
    body[i] = i & 255
digest = hexlify(sha256(body).digest()).decode()


class Sock:
    # The image behind an HTTP 200 header; read and readinto allocate nothing.
    def __init__(self):
        h = b"HTTP/1.1 200 OK\\r\\nContent-Length: ${SIZE}\\r\\n\\r\\n"
        self.hdr = [h[i : i + 1] for i in range(len(h))]
        self.o = 0

    def read(self, n):
        return self.hdr.pop(0)

    def readinto(self, mv):
        n = min(len(mv), ${SIZE} - self.o)
        o = self.o
        i = 0
        while i < n:
            mv[i] = body[o + i]
            i += 1
        self.o = o + n
        return n


class Slot:
    writes = 0

    def writeblocks(self, n, buf):
        Slot.writes += 1


class Agent:
    vmin = 3.3

    def _pub(self, sub, msg, retain=False):
        pass

    def _vbat(self):
        return 3.9


p = object.__new__(mpota_pull.Pull)
p.a = Agent()
p.to = Slot()
p.n = 0
p.i = 1
r = {"job": "j-7f3a", "fw": "0" * 32, "sha": digest, "size": ${SIZE}, "url": "http://192.168.1.10:8080/device/firmware/" + "0" * 32, "ver": "1.27.0", "to": "ota_1", "got": 0}
p.r = r
s = Sock()
h = sha256()
buf = bytearray(4096)
gc.collect()
gc.disable()
a0 = gc.mem_alloc()
h, got = p._body(s, r, h, buf, 0)
total = gc.mem_alloc() - a0
gc.enable()
print(json.dumps([total, got, Slot.writes, hexlify(h.digest()).decode() == digest]))`);
    const [total, got, writes, shaOk] = JSON.parse(out) as [number, number, number, boolean];
    const blocks = Math.ceil(SIZE / 4096);
    t.diagnostic(
      `mpota_pull: ${resident} bytes of heap after import; a ${SIZE}-byte transfer allocates ${total} bytes in all (${Math.round(total / blocks)} per 4 KiB block, including ${Math.floor((blocks - 1) / 16)} record saves and progress reports), on top of the 4096-byte block buffer`,
    );
    assert.equal(got, SIZE);
    assert.equal(writes, blocks);
    assert.equal(shaOk, true);
    // Bounds with room; the figures are in device/README.md.
    assert.ok(resident < 16_384, `mpota_pull keeps under 16 KiB after import (${resident})`);
    assert.ok(total < 200 * blocks, `under 200 bytes of garbage per block on average (${total})`);
  });
});
