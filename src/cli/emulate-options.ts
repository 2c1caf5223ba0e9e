// The options and dependencies of `mpota emulate`.
import type { Clock } from "../net/clock.ts";
import type { UdpNetwork } from "../net/udp-channel.ts";

export interface EmulateCommandOptions {
  /** esp8266 (default): yaota8266 on UDP; esp32: one simulated ESP32 with the agent (see emulate-esp32.ts). */
  chip?: "esp8266" | "esp32";
  /** ESP32: the broker, its login, the data directory that provisions the device, its first app, its id prefix. */
  mqtt?: string;
  mqttUsername?: string;
  mqttPassword?: string;
  data?: string;
  provision?: boolean;
  firmware?: string;
  id?: string;
  sleep?: number;
  key?: string;
  modulus?: string;
  configH?: string;
  bind: string;
  port: number;
  flash?: string;
  flashSize: string;
  link: string;
  gpioMask?: number;
  gpioWaitMs?: number;
  pktWaitMs?: number;
  idleRebootMs?: number;
  baud?: number;
  /** Datagrams the receiver queues while busy (writing a sector); more are lost. */
  receiveQueue?: number;
  appOffset?: number;
  boot: "ota" | "normal";
  rtcMagic: boolean;
  seed: number;
  progressEvery: number;
  json?: boolean;
  /** false (--no-console): never read commands from stdin. */
  console?: boolean;
}

/** What the command runs against; tests replace the stop signal and stdin. */
export interface EmulateDeps {
  /** Stops the emulator when aborted (SIGINT/SIGTERM do too). */
  stop?: AbortSignal;
  /** Command lines ("ota", "reset", "button", ...); default stdin when it is a pipe or file, or the terminal (see below). */
  stdin?: NodeJS.ReadableStream | null;
  /** Opens the terminal for reading (default: a new tty.ReadStream on fd 0); only called while in the foreground. */
  openTerminal?: () => NodeJS.ReadableStream & { destroy(): void };
  /** Whether the process is the terminal's foreground job (default: asks the OS; undefined: cannot tell). */
  foreground?: () => boolean | undefined;
  /** How often the foreground is checked while the console reads a terminal (default 500 ms). */
  foregroundPollMs?: number;
  network?: UdpNetwork;
  clock?: Clock;
}
