import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { DEVICE_DIR } from "../../src/agent-host/agent-files.ts";
import { Board } from "./micropython.ts";

// mpota_appjob.why under MicroPython 1.27 (wasm): the words of a stopped
// update's `error`, as the CLI and the dashboard show them. The errno's name
// comes from the port's own str(OSError(n)), so its table decides the name.

test("an update's error in words: the words raised, or what failed with the errno's name and number", async () => {
  const board = await Board.start();
  board.write("/mpota_appjob.py", readFileSync(join(DEVICE_DIR, "mpota_appjob.py"), "utf8"));
  board.run("import mpota_appjob as J");
  const cases: Array<[string, string]> = [
    ['OSError("battery low")', "battery low"],
    ["OSError(104)", "no connection to 10.0.0.2:8080 (ECONNRESET, errno 104)"],
    ["OSError(113)", "no connection to 10.0.0.2:8080 (EHOSTUNREACH, errno 113)"],
    ["OSError(5)", "no connection to 10.0.0.2:8080 (EIO, errno 5)"],
    // Numbers the port has no name for: ENOSPC is not in MicroPython's short
    // errno table; -2 is getaddrinfo's failure on the ESP8266.
    ["OSError(28)", "no connection to 10.0.0.2:8080 (errno 28)"],
    ["OSError(-2)", "no connection to 10.0.0.2:8080 (errno -2)"],
    // Not an OSError: a bug or the heap, told as Python tells it.
    ["MemoryError()", "MemoryError()"],
    ['ValueError("bad")', "ValueError('bad',)"],
  ];
  for (const [raised, words] of cases)
    assert.deepEqual(board.run(`print(J.why(${raised}, "no connection to 10.0.0.2:8080"))`), [words], raised);
});
