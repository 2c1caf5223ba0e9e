/** What a simulated device is made of: its id, address, broker, key, firmware, flash, link, timing and agent. */
import type { AgentDeviceOptions } from "../agent-host/agent-device-options.ts";
import type { BrokerAddress } from "../agent-host/broker-address.ts";
import type { DeviceLogEntry } from "../emulator/device-events.ts";
import type { Flash } from "../emulator/flash.ts";
import type { DeviceTiming } from "../emulator/timing.ts";
import type { Clock } from "../net/clock.ts";
import type { LinkProfile } from "../net/impairment.ts";
import type { Random } from "../net/random.ts";
import type { UdpNetwork } from "../net/udp-channel.ts";
import type { YaotaSettings } from "../protocol/config-h.ts";
import type { PublicKeyInfo } from "../protocol/rsa-key.ts";

export interface SimulatedDeviceOptions {
  /** DEVICE_ID of the agent: the `<id>` in its topics. */
  id: string;
  /** The device's own address: the emulator binds it, the agent reports it as its IP. */
  address: string;
  /** The receiver's UDP port; the agent always acks 8266, so keep the default outside tests. */
  port?: number;
  broker: string | BrokerAddress;
  /** The public key the bootloader was built with. */
  key: PublicKeyInfo;
  /** Written at MAIN_APP_OFFSET before the first power-on. */
  firmware?: Uint8Array;
  /** The device's flash (default a fresh 1 MiB memory flash). */
  flash?: Flash;
  /** Seconds between wakes; 0 (default) is an always-on device. */
  sleepSeconds?: number;
  /** How long a sleepy device stays awake after check-in, as if reading a slow sensor. */
  awakeMs?: number;
  /** Impairment of the device's UDP link: a profile name (lan, busy, poor, none) or a profile. */
  link?: string | LinkProfile;
  /** yaota8266's config.h settings (GPIO wait, IDLE_REBOOT_MS, MAIN_APP_OFFSET, ...). */
  settings?: Partial<YaotaSettings>;
  /** The emulator's timing model (tests use a fast one). */
  timing?: Partial<DeviceTiming>;
  baseTopic?: string;
  /** CMD_WAIT_MS of the agent. */
  cmdWaitMs?: number;
  /** More AgentDevice options (battery, keepalive, config entries, ...). */
  agent?: Partial<Omit<AgentDeviceOptions, "broker" | "flash" | "id" | "autoWake" | "autoRestart">>;
  network?: UdpNetwork;
  clock?: Clock;
  random?: Random;
  /** boot8266 and ota-server log lines. */
  logger?: (entry: DeviceLogEntry) => void;
}
