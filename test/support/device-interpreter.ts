import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { DEVICE_DIR } from "../../src/agent-host/agent-files.ts";
import { HOST_MODULES } from "../../src/agent-host/python-fakes.ts";

// A bare MicroPython 1.27 (the wasm build) with the host's fakes and every
// device/ file on its filesystem: no worker, no board around it, for tests
// and benches that compile, import or time the agent's modules directly.

const MICROPYTHON_PACKAGE: string = "@micropython/micropython-webassembly-pyscript";

interface MicroPython {
  registerJsModule(name: string, module: object): void;
  runPython(code: string): unknown;
  FS: { mkdirTree(path: string): void; writeFile(path: string, data: string): void };
}

function pythonFiles(dir: string): string[] {
  return readdirSync(dir)
    .sort()
    .flatMap((name) => {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) return pythonFiles(path);
      return name.endsWith(".py") ? [path] : [];
    });
}

/** Every .py under device/: its path there and its text. */
export const deviceFiles: ReadonlyArray<{ name: string; source: string }> = pythonFiles(DEVICE_DIR).map(
  (path) => ({ name: relative(DEVICE_DIR, path), source: readFileSync(path, "utf8") }),
);

/** A fresh interpreter: the host's fakes and every device/ file on its filesystem, nothing run yet. */
export interface DeviceInterpreter {
  /** Runs Python; returns the last line it printed. */
  run(code: string): string;
  /** Runs Python; returns every line it printed. */
  lines(code: string): string[];
}

/**
 * Starts one. Each caller that measures heap needs its own: the names (qstrs)
 * one run interns would be missing from what the next one measures.
 */
export async function freshInterpreter(): Promise<DeviceInterpreter> {
  const { loadMicroPython } = (await import(MICROPYTHON_PACKAGE)) as {
    loadMicroPython: (options: object) => Promise<MicroPython>;
  };
  const printed: string[] = [];
  const mp = await loadMicroPython({
    stdout: (line: string) => printed.push(line),
    stderr: (line: string) => printed.push(line),
  });
  mp.registerJsModule("_mpota_host", {});
  for (const [path, text] of Object.entries({ ...HOST_MODULES, "mpota_config.py": "MQTT_HOST = 'h'\n" })) {
    mp.FS.mkdirTree(`/${path.slice(0, path.lastIndexOf("/"))}`);
    mp.FS.writeFile(`/${path}`, text);
  }
  for (const { name, source } of deviceFiles) {
    if (name.includes("/")) mp.FS.mkdirTree(`/${name.slice(0, name.lastIndexOf("/"))}`);
    mp.FS.writeFile(`/${name}`, source);
  }
  const lines = (code: string) => {
    printed.length = 0;
    mp.runPython(code);
    return [...printed];
  };
  return { lines, run: (code) => lines(code).at(-1) ?? "" };
}
