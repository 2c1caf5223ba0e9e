/**
 * Messages between an {@link AgentDevice} (main thread) and its worker, which
 * runs one MicroPython interpreter at a time. Byte strings travel as hex.
 */

/** The ports a simulated device can be: the ESP8266, the ESP32, the rp2 (a Pico W). */
export type BoardChip = "esp8266" | "esp32" | "rp2";

/** Starts a fresh interpreter: one boot of the simulated device. */
export interface BootRequest {
  type: "boot";
  resetCause: number;
  /** RTC user memory carried over from the previous run, hex. */
  rtc: string;
  /** 4 bytes (ESP32: 6, rp2: 8), hex. */
  uniqueId: string;
  flashSize: number;
  flashUserStart: number;
  wifi: { connected: boolean; ip: string; netmask: string; gateway: string; dns: string; rssi: number };
  /** `os.uname().version` */
  version: string;
  /** The chip whose modules the interpreter gets (default esp8266). */
  chip?: BoardChip;
  /** ESP32, rp2: MICROPY_HW_BOARD_NAME of the build (os.uname().machine is "<board> with <MCU>"). */
  boardName?: string;
}

export type RunOutcome =
  /** `machine.reset()`; `rtc` is RTC memory at that moment (hex). */
  | { kind: "reset"; rtc: string }
  /** `machine.deepsleep(ms)`; `ms` null: no time given, sleeps until reset. */
  | { kind: "deepsleep"; ms: number | null; rtc: string }
  /** main.py returned (or sys.exit): the device sits at the REPL. */
  | { kind: "exit"; rtc: string }
  /** main.py raised: the traceback, as the REPL would print it. */
  | { kind: "crash"; error: string; rtc: string };

export type WorkerEvent = { type: "ready" } | { type: "booted" } | { type: "ended"; outcome: RunOutcome };

/** Synchronous calls the worker makes to the main thread (it blocks meanwhile). */
export type HostCall =
  | { op: "stdout"; line: string }
  | { op: "flash_read"; offset: number; length: number }
  | { op: "adc"; channel: number }
  | { op: "delay"; ms: number }
  | { op: "resolve"; host: string }
  | { op: "sock_new" }
  | { op: "sock_connect"; id: number; host: string; port: number; timeoutMs: number }
  | { op: "sock_write"; id: number; data: string }
  | { op: "sock_read"; id: number; length: number; timeoutMs: number; once: boolean }
  | { op: "sock_poll"; id: number; events: number; waitMs: number }
  | { op: "sock_close"; id: number }
  | { op: "fs"; name: FsCallName; args: Array<string | number> }
  | { op: "esp32"; name: Esp32CallName; args: Array<string | number> };

/** ESP32 partition and OTA calls (see Esp32BoardPort); their value, or an esp_err_t. */
export type Esp32CallName =
  | "table"
  | "boot"
  | "running"
  | "next"
  | "read"
  | "write"
  | "erase"
  | "set_boot"
  | "mark_valid";

/** Calls of the device filesystem's VFS (see DeviceFilesystem); their value, or -errno. */
export type FsCallName =
  | "open"
  | "read"
  | "readline"
  | "write"
  | "seek"
  | "flush"
  | "close"
  | "stat"
  | "listdir"
  | "remove"
  | "rmdir"
  | "mkdir"
  | "rename"
  | "chdir"
  | "statvfs";

/**
 * Reply to a {@link HostCall}: `value` is what the Python side gets (hex
 * string, number, null), `errno` an OSError to raise, `halt` stops the run
 * (the device was powered off).
 */
export type HostReply = { value: string | number | null } | { errno: number } | { halt: true };
