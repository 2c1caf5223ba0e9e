/** How a simulated device's runs end and the events it emits. */
import type { FsStep } from "./fs-step.ts";
import type { MqttPacket, PublishedMessage } from "./mqtt-packets.ts";

/** How one run of the device ended. */
export type RunEnd =
  | { kind: "reset"; rtc: Uint8Array; ota: boolean }
  | { kind: "deepsleep"; ms: number | null }
  | { kind: "exit" }
  | { kind: "crash"; error: string };

export type DevicePhase = "off" | "booting" | "running" | "sleeping" | "ota" | "halted";

export interface AgentDeviceEvents {
  booted: [{ cause: number; count: number }];
  stdout: [string];
  /** Every MQTT packet the device sent (CONNECT, PINGREQ, ...). */
  packet: [MqttPacket];
  published: [PublishedMessage];
  /** machine.reset(); `ota` when RTC memory holds b"yaotaota" (the device is entering OTA mode). */
  reset: [{ rtc: Uint8Array; ota: boolean }];
  /** Reset into OTA mode: nothing boots until the caller calls boot(). */
  ota: [{ rtc: Uint8Array }];
  deepsleep: [{ ms: number | null }];
  ended: [RunEnd];
  /** The power was cut before this filesystem step (see DeviceFilesystem.beforeStep); the device is off. */
  powerCut: [FsStep];
  /** The harness itself failed (worker died, automatic boot failed). */
  failure: [Error];
}
