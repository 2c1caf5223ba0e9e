/** What an emulated device reports: its states, the app boot8266 started, its log lines and its events. */

import type { UdpEndpoint } from "../net/udp-channel.ts";
import type { Ack } from "../protocol/datagram.ts";
import type { BootDecision } from "./boot.ts";
import type { DropReason } from "./receiver.ts";

export type DeviceState = "off" | "booting" | "ota" | "app";

/** The main app boot8266 started: its size word and MD5 trailer (the firmware identity). */
export interface AppIdentity {
  size: number;
  /** The MD5 trailer as hex; undefined when a deep-sleep wake booted flash without a readable trailer. */
  md5: string | undefined;
  /** False when booted on a deep-sleep wake, which skips the check. */
  checked: boolean;
}

export interface DeviceLogEntry {
  /** Device clock time, ms. */
  atMs: number;
  /** boot8266 decisions, ota-server lines (as it prints them), or the emulator's own notes. */
  source: "boot8266" | "ota-server" | "emulator";
  message: string;
}

export interface DeviceEvents {
  state: { state: DeviceState; previous: DeviceState; atMs: number };
  /** The chip reset (power-on included); boot8266 starts. */
  reset: { resetReason: number; atMs: number };
  /** boot8266 decided what to run. */
  boot: { decision: BootDecision; resetReason: number; atMs: number };
  /** A 4 KiB sector erased and programmed by the receiver. */
  sectorWritten: { address: number; filled: number; atMs: number };
  ack: { ack: Ack; to: UdpEndpoint; atMs: number };
  drop: { reason: DropReason; atMs: number };
  accepted: { offset: number; length: number; atMs: number };
  sessionRestart: { atMs: number; buffered: number };
  otaFinished: { rexmits: number; atMs: number };
  appBoot: AppIdentity;
}
