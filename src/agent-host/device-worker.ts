/**
 * Worker entry: one simulated board (ESP8266, ESP32, Pico W) running MicroPython 1.27 (wasm). Each
 * `boot` message starts a fresh interpreter (only one exists at a time in
 * this thread) with the fake modules and the carried RTC memory, mounts the
 * device filesystem (kept by the main thread) at "/", runs boot.py and
 * main.py, and reports how the run ended.
 */
import { type MessagePort, parentPort, workerData } from "node:worker_threads";
import { boardModules } from "./board-modules.ts";
import { runScriptSource } from "./python-fakes.ts";
import { FILESYSTEM_MODULE } from "./python-fs-fake.ts";
import { callHostSync } from "./sync-call.ts";
import type {
  BootRequest,
  Esp32CallName,
  FsCallName,
  HostCall,
  HostReply,
  RunOutcome,
  WorkerEvent,
} from "./worker-protocol.ts";

interface PythonError extends Error {
  type: string;
}

interface MicroPython {
  registerJsModule(name: string, module: object): void;
  runPython(code: string): unknown;
  FS: {
    mkdirTree(path: string): void;
    writeFile(path: string, data: string): void;
  };
}

type LoadMicroPython = (options: {
  stdout: (line: string) => void;
  stderr: (line: string) => void;
  heapsize?: number;
}) => Promise<MicroPython>;

const { port, flag, micropython } = workerData as {
  port: MessagePort;
  flag: Int32Array;
  micropython: string;
};
const parent = parentPort as NonNullable<typeof parentPort>;

function post(event: WorkerEvent): void {
  parent.postMessage(event);
}

/** Thrown from JS (so Python cannot catch it) once the run must not go on. */
class RunStopped extends Error {}

async function runBoot(boot: BootRequest, loadMicroPython: LoadMicroPython): Promise<RunOutcome> {
  let rtc = boot.rtc;
  let ending: RunOutcome | undefined;
  let halted = false;

  const stop = () => {
    if (ending || halted) throw new RunStopped("the device has reset");
  };
  const call = (request: HostCall): string | number | null => {
    stop();
    const reply: HostReply = callHostSync(port, flag, request);
    if ("halt" in reply) {
      halted = true;
      throw new RunStopped("the device was powered off");
    }
    return "errno" in reply ? reply.errno : reply.value;
  };
  // Nothing the device prints after reset() or deepsleep() is real (they never return there).
  // Printed through the host-call channel, not as an event: the host then has every line
  // printed before a later call (one the power is cut at), in order.
  const line = (text: string) => {
    if (ending || halted) return;
    if ("halt" in callHostSync(port, flag, { op: "stdout", line: text })) halted = true;
  };

  const mp = await loadMicroPython({ stdout: line, stderr: line });
  mp.registerJsModule("_mpota_host", {
    reset_cause: () => boot.resetCause,
    unique_id: () => boot.uniqueId,
    rtc_get: () => rtc,
    rtc_set: (hex: string) => {
      stop();
      rtc = hex;
    },
    reset: () => {
      stop();
      ending = { kind: "reset", rtc };
    },
    deepsleep: (ms: number) => {
      stop();
      // As the C code: max_ms <= 0 means 1 ms, and max_ms * 1000 is held in a u32.
      const us = ms < 0 ? null : (Math.max(1, ms) * 1000) % 2 ** 32;
      ending = { kind: "deepsleep", ms: us === null ? null : us / 1000, rtc };
    },
    adc: (channel: number) => call({ op: "adc", channel }),
    delay: (ms: number) => call({ op: "delay", ms }),
    flash_read: (offset: number, length: number) => call({ op: "flash_read", offset, length }),
    flash_size: () => boot.flashSize,
    flash_user_start: () => boot.flashUserStart,
    wlan_connected: () => boot.wifi.connected,
    wlan_ifconfig: () => [boot.wifi.ip, boot.wifi.netmask, boot.wifi.gateway, boot.wifi.dns].join(","),
    wlan_rssi: () => boot.wifi.rssi,
    resolve: (host: string) => call({ op: "resolve", host }),
    sock_new: () => call({ op: "sock_new" }),
    sock_connect: (id: number, host: string, port: number, timeoutMs: number) =>
      call({ op: "sock_connect", id, host, port, timeoutMs }),
    sock_write: (id: number, data: string) => call({ op: "sock_write", id, data }),
    sock_read: (id: number, length: number, timeoutMs: number, once: boolean) =>
      call({ op: "sock_read", id, length, timeoutMs, once }),
    sock_poll: (id: number, events: number, waitMs: number) => call({ op: "sock_poll", id, events, waitMs }),
    sock_close: (id: number) => call({ op: "sock_close", id }),
    ...forwardCalls(call),
  });

  // The fake C modules are imported from the wasm port's own filesystem, which the prelude then replaces.
  const board = boardModules(boot);
  const hostFiles: Record<string, string> = {
    ...board.files,
    [FILESYSTEM_MODULE.path]: FILESYSTEM_MODULE.source,
  };
  for (const [path, text] of Object.entries(hostFiles)) {
    const full = `/${path.replace(/^\/+/, "")}`;
    const dir = full.slice(0, full.lastIndexOf("/"));
    if (dir) mp.FS.mkdirTree(dir);
    mp.FS.writeFile(full, text);
  }
  mp.runPython(board.prelude);
  post({ type: "booted" });

  for (const script of ["boot.py", "main.py"]) {
    // As pyexec_file_if_exists: only a regular file runs.
    const stat = call({ op: "fs", name: "stat", args: ["/", script] });
    if (typeof stat !== "string" || !stat.startsWith(`${0x8000},`)) continue;
    try {
      mp.runPython(runScriptSource(script));
    } catch (error) {
      if (ending) return ending;
      if (halted) return { kind: "exit", rtc };
      if (isPythonError(error)) {
        if (error.type === "SystemExit") return { kind: "exit", rtc };
        // The board's traceback has no frame for the host's exec() line.
        const traceback = error.message.replace(/^ {2}File "<stdin>", line 1, in <module>\n/m, "");
        for (const l of traceback.trimEnd().split("\n")) line(l);
        if (script === "boot.py") continue; // the port goes on to main.py
        return { kind: "crash", error: traceback, rtc };
      }
      return { kind: "crash", error: String(error), rtc };
    }
    if (ending) return ending;
  }
  return ending ?? { kind: "exit", rtc };
}

const FS_CALLS: Record<string, FsCallName> = {
  fs_open: "open",
  fs_read: "read",
  fs_readline: "readline",
  fs_write: "write",
  fs_seek: "seek",
  fs_flush: "flush",
  fs_close: "close",
  fs_stat: "stat",
  fs_listdir: "listdir",
  fs_remove: "remove",
  fs_rmdir: "rmdir",
  fs_mkdir: "mkdir",
  fs_rename: "rename",
  fs_chdir: "chdir",
  fs_statvfs: "statvfs",
};

const ESP32_CALLS: Record<string, Esp32CallName> = {
  esp32_table: "table",
  esp32_boot: "boot",
  esp32_running: "running",
  esp32_next: "next",
  esp32_read: "read",
  esp32_write: "write",
  esp32_erase: "erase",
  esp32_set_boot: "set_boot",
  esp32_mark_valid: "mark_valid",
};

type HostFunction = (...args: Array<string | number>) => string | number | null;

/** `_mpota_host.fs_*` and `esp32_*`: each forwards its arguments to the host (DeviceFilesystem, Esp32BoardPort). */
function forwardCalls(call: (request: HostCall) => string | number | null): Record<string, HostFunction> {
  const out: Record<string, HostFunction> = {};
  for (const [fn, name] of Object.entries(FS_CALLS)) out[fn] = (...args) => call({ op: "fs", name, args });
  for (const [fn, name] of Object.entries(ESP32_CALLS))
    out[fn] = (...args) => call({ op: "esp32", name, args });
  return out;
}

function isPythonError(error: unknown): error is PythonError {
  return error instanceof Error && error.name === "PythonError" && "type" in error;
}

const { loadMicroPython } = (await import(micropython)) as { loadMicroPython: LoadMicroPython };
let queue = Promise.resolve();
parent.on("message", (boot: BootRequest) => {
  queue = queue.then(async () => {
    const outcome = await runBoot(boot, loadMicroPython).catch(
      (error: unknown): RunOutcome => ({ kind: "crash", error: String(error), rtc: boot.rtc }),
    );
    post({ type: "ended", outcome });
  });
});
post({ type: "ready" });
