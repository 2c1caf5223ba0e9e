import assert from "node:assert/strict";
import { after, test } from "node:test";
import { DeviceFilesystem } from "../../src/agent-host/device-filesystem.ts";
import { Board } from "./micropython.ts";
import { device, runOnce } from "./slot-board.ts";

// The device filesystem fake reads a line of at most n bytes as MicroPython's
// own files do (py/stream.c, readline(size)): the same script run on the
// fake and on the wasm build's own filesystem prints the same.

const SCRIPT = `f = open("/lines.txt", "rb")
print(f.readline(3), f.readline(100), f.readline(0), f.readline(), f.readline(4), f.readline())
f.close()
`;
const EXPECTED = "b'abc' b'def\\n' b'' b'ghi\\n' b'xy' b''";

const fs = new DeviceFilesystem({ kind: "fat" });
const d = device(fs);
after(() => d.close());

test("readline(n) on the fake matches MicroPython's own files", async () => {
  const board = await Board.start();
  board.write("/lines.txt", "abcdef\nghi\nxy");
  assert.deepEqual(board.run(SCRIPT), [EXPECTED]);
  fs.writeFile("/lines.txt", "abcdef\nghi\nxy");
  assert.deepEqual((await runOnce(d, SCRIPT)).output, [EXPECTED]);
});
