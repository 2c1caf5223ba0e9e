import assert from "node:assert/strict";
import { after, test } from "node:test";
import { DeviceFilesystem } from "../../src/agent-host/device-filesystem.ts";
import { FsErrno } from "../../src/agent-host/fs-errno.ts";
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

test("restore puts back a clone: its files and empty folders, nothing written since, no open file", () => {
  const board = new DeviceFilesystem({ kind: "littlefs" });
  board.writeFile("/app/a/main.py", "print(1)\n");
  board.mkdir("/", "/app/b");
  const before = board.clone();
  board.writeFile("/app/a/main.py", "print(2)\n");
  board.rmdir("/", "/app/b");
  board.writeFile("/extra.py", "x = 1\n");
  const fd = board.open("/", "/app/a/main.py", "r");
  board.restore(before);
  assert.deepEqual(board.files(), ["/app/a/main.py"]);
  assert.equal(board.readFile("/app/a/main.py")?.toString(), "print(1)\n");
  assert.deepEqual(board.listdir("/", "/app"), [
    ["a", 0x4000, 0],
    ["b", 0x4000, 0],
  ]);
  assert.throws(() => board.read(fd, 1), { errno: FsErrno.EBADF });
  // The restored board and the copy are independent: a write to one leaves the other as it was.
  board.writeFile("/app/a/main.py", "print(3)\n");
  assert.equal(before.readFile("/app/a/main.py")?.toString(), "print(1)\n");
  assert.throws(
    () => board.restore(new DeviceFilesystem({ kind: "fat" })),
    /Cannot restore a fat filesystem of 405504 bytes onto a littlefs one of 405504: restore a clone/,
  );
});
