import { readFileSync } from "node:fs";
import { join } from "node:path";
import { DEVICE_DIR } from "../../src/agent-host/agent-files.ts";
import {
  DEFAULT_MICROPYTHON,
  type MicroPythonRelease,
  micropythonUrl,
} from "../../src/agent-host/micropython-release.ts";

// One real MicroPython (the wasm build, v1.27 unless asked for 1.29) per
// test file, with device/mpota_app.py on its filesystem. One interpreter per
// JS realm, so the tests of a file run one after another (node:test's default).

interface MicroPython {
  runPython(code: string): unknown;
  FS: {
    mkdirTree(path: string): void;
    writeFile(path: string, data: string | Uint8Array): void;
    readFile(path: string): Uint8Array;
    analyzePath(path: string): { exists: boolean };
  };
}

/** `sys.implementation._mpy` of v1.27 and v1.29 boards: version 6, sub-version 3, and the native architecture. */
export const BOARD_MPY = { esp8266: 0x2706, esp32: 0x2b06, rp2: 0x1306 } as const;

export class Board {
  private readonly printed: string[] = [];

  private constructor(private readonly mp: MicroPython) {}

  static async start(options: { micropython?: MicroPythonRelease } = {}): Promise<Board> {
    const { loadMicroPython } = (await import(
      micropythonUrl(options.micropython ?? DEFAULT_MICROPYTHON)
    )) as {
      loadMicroPython: (options: object) => Promise<MicroPython>;
    };
    let board: Board | undefined;
    const mp = await loadMicroPython({
      stdout: (line: string) => board?.printed.push(line),
      stderr: (line: string) => board?.printed.push(line),
    });
    board = new Board(mp);
    mp.FS.writeFile("/mpota_app.py", readFileSync(join(DEVICE_DIR, "mpota_app.py"), "utf8"));
    mp.runPython("import mpota_app");
    return board;
  }

  /** Runs Python; returns what it printed (a Python exception that escapes fails the test). */
  run(code: string): string[] {
    this.printed.length = 0;
    this.mp.runPython(code);
    return [...this.printed];
  }

  write(path: string, data: string | Uint8Array): void {
    const dir = path.slice(0, path.lastIndexOf("/"));
    if (dir) this.mp.FS.mkdirTree(dir);
    this.mp.FS.writeFile(path, data);
  }

  read(path: string): Buffer | undefined {
    if (!this.mp.FS.analyzePath(path).exists) return undefined;
    return Buffer.from(this.mp.FS.readFile(path));
  }
}

/** A Python literal for a JS string (JSON's escapes are Python's for these). */
export const py = (s: string): string => JSON.stringify(s);
