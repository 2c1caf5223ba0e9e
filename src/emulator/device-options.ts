/** What an emulated device is made of: its network and address, clock, key, settings, flash, link and timing. */
import type { Clock } from "../net/clock.ts";
import type { LinkProfile } from "../net/impairment.ts";
import type { Random } from "../net/random.ts";
import type { UdpNetwork } from "../net/udp-channel.ts";
import type { YaotaSettings } from "../protocol/config-h.ts";
import type { PublicKeyInfo } from "../protocol/rsa-key.ts";
import type { AppIdentity, DeviceLogEntry } from "./device-events.ts";
import type { Flash } from "./flash.ts";
import type { DeviceTiming } from "./timing.ts";

export interface EmulatedDeviceOptions {
  network: UdpNetwork;
  /** Address to bind (a loopback alias such as 127.0.0.2 gives each device its own address). */
  address?: string;
  port?: number;
  clock?: Clock;
  /** Randomness of the link profile (loss, jitter). */
  random?: Random;
  /** The public key the bootloader was built with. */
  key: PublicKeyInfo;
  settings?: Partial<YaotaSettings>;
  /** Defaults to a fresh 1 MiB memory flash. The device never closes it. */
  flash?: Flash;
  /** Impairment of the device's link (each way). */
  link?: LinkProfile | string;
  /** Timing model; baudRate defaults to settings.baudRate. */
  timing?: Partial<DeviceTiming>;
  /** Honour RTC magic (ulno's patch). Default true. */
  rtcMagic?: boolean;
  logger?: (entry: DeviceLogEntry) => void;
  /** Called when boot8266 starts the main app (the MicroPython agent would run there). */
  onAppBoot?: (app: AppIdentity) => void;
}
