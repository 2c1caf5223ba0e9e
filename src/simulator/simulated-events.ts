/** What a simulated device reports: its status, the steps of its life as the CLI logs them, and wake names. */
import type { BootReason } from "../emulator/boot.ts";
import type { UdpEndpoint } from "../net/udp-channel.ts";

/**
 * What the simulated board is doing: `booting` (boot8266 deciding, or the
 * app starting), `awake` (the agent runs), `sleeping` (deep sleep), `ota`
 * (yaota8266's receiver listens), `halted` (main.py ended or crashed), `off`.
 */
export type SimulatedStatus = "off" | "booting" | "awake" | "sleeping" | "ota" | "halted";

/** The contract's wake names, by ESP8266 reset reason. */
export const WAKE_NAMES: Record<number, string> = {
  0: "power",
  1: "wdt",
  2: "other",
  3: "wdt",
  4: "soft",
  5: "deepsleep",
  6: "hard",
};

/** The contract's wake names, by ESP32 reset cause (modmachine.c). */
export const ESP32_WAKE_NAMES: Record<number, string> = {
  1: "power",
  2: "hard",
  3: "wdt",
  4: "deepsleep",
  5: "soft",
};

/** One step of a simulated device's life, as the CLI logs it. */
export type SimulatedEvent =
  | { type: "power-on" }
  | { type: "power-off" }
  | { type: "boot"; mode: "app" | "ota"; reason: BootReason; message: string; resetReason: number }
  | { type: "app-start"; fw: string | undefined; checked: boolean; wake: string }
  /** The ESP32's bootloader chose `partition` (null: nothing bootable); `log` in ESP-IDF's words. */
  | { type: "esp32-boot"; partition: string | null; fastBoot: boolean; log: string[]; resetCause: number }
  /** The firmware crashed in C before the agent ran (a panic): the chip resets. */
  | { type: "panic"; fw: string | undefined; message: string }
  | { type: "checkin"; state: Record<string, unknown> }
  | { type: "ack"; ack: Record<string, unknown> }
  | { type: "ota-listening"; endpoint: UdpEndpoint }
  | { type: "push-started"; from: UdpEndpoint }
  | { type: "push-restarted"; buffered: number }
  | { type: "push-received"; bytes: number; sectors: number; ms: number }
  | { type: "firmware-changed"; from: string | undefined; to: string | undefined }
  | { type: "deepsleep"; ms: number | null }
  | { type: "output"; line: string }
  | { type: "halted"; reason: string }
  | { type: "warning"; message: string };

export interface SimulatedDeviceEvents {
  event: SimulatedEvent & { atMs: number };
  status: { status: SimulatedStatus; previous: SimulatedStatus; atMs: number };
}
