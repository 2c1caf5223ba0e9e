import type { PythonValue } from "../agent-host/agent-files.ts";
import { type BrokerAddress, parseBroker } from "../agent-host/broker-address.ts";
import type { DeviceTiming } from "../emulator/timing.ts";
import { type Clock, systemClock } from "../net/clock.ts";
import { NodeUdpNetwork } from "../net/node-udp.ts";
import { seededRandom } from "../net/random.ts";
import type { UdpNetwork } from "../net/udp-channel.ts";
import type { YaotaSettings } from "../protocol/config-h.ts";
import type { PublicKeyInfo } from "../protocol/rsa-key.ts";
import { SimulatedDevice, type SimulatedDeviceSummary } from "./simulated-device.ts";
import type { SimulatedDeviceOptions } from "./simulated-device-options.ts";
import { SimulatedEsp32Device } from "./simulated-esp32-device.ts";
import type { SimulatedEvent, SimulatedStatus } from "./simulated-events.ts";
import { SimulatedPicoWDevice } from "./simulated-pico-w-device.ts";
import { SimulatorError } from "./simulator-error.ts";

/** Where the first device of a fleet listens by default (127.0.0.2 is `mpota emulate`'s default). */
export const DEFAULT_FIRST_ADDRESS = "127.0.1.1";

/** A device of a fleet: an ESP8266 with yaota8266, an ESP32 (OTA variant) or a Pico W. */
export type FleetDevice = SimulatedDevice | SimulatedEsp32Device | SimulatedPicoWDevice;

export interface FleetOptions {
  /** How many devices. */
  count: number;
  /** How many of them are ESP32s (after the ESP8266s), and the app image in their ota_0. */
  esp32?: { count: number; firmware: Uint8Array };
  /**
   * How many of them (the last ones) are Pico Ws, and the app keys (APP_KEYS)
   * they trust unless a device's `access` gives its own: they run apps.
   */
  picoW?: { count: number; appKeys?: readonly string[] };
  broker: string | BrokerAddress;
  /** The public key the ESP8266s' bootloaders hold (a fleet without ESP8266s needs none). */
  key?: PublicKeyInfo;
  /** The image every device starts with at MAIN_APP_OFFSET. */
  firmware: Uint8Array;
  /** Seconds the sleepy devices sleep; 0 (default): every device is always on. */
  sleepSeconds?: number;
  /** Share of the devices that sleep when sleepSeconds > 0 (default 0.5), spread evenly over the fleet. */
  sleepyShare?: number;
  /** How long a sleepy device stays awake after check-in. */
  awakeMs?: number;
  /** Link profile of every device's UDP link. */
  link?: string;
  /** Device ids are `<idPrefix>-1`, `<idPrefix>-2`, ... */
  idPrefix?: string;
  baseTopic?: string;
  /** The first device's address; the others follow (127.0.1.1, 127.0.1.2, ...). */
  firstAddress?: string;
  /** The receivers' UDP port (default 8266; the agent acks 8266). */
  port?: number;
  settings?: Partial<YaotaSettings>;
  timing?: Partial<DeviceTiming>;
  cmdWaitMs?: number;
  /** Seed of the links' loss and jitter (each device gets its own stream). */
  seed?: number;
  /** Pause between powering on one device and the next, ms (so N interpreters do not start at once). */
  staggerMs?: number;
  network?: UdpNetwork;
  clock?: Clock;
  /** Every event of every device. */
  onEvent?: (device: FleetDevice, event: SimulatedEvent & { atMs: number }) => void;
  onStatus?: (device: FleetDevice, status: SimulatedStatus, previous: SimulatedStatus) => void;
  /** More options per device (tests). */
  device?: Partial<SimulatedDeviceOptions>;
  /**
   * Each device's own broker credential and more mpota_config.py settings
   * (its command keys), as provisioning gave them; undefined: the fleet's broker as it is.
   */
  access?: (id: string) => DeviceAccess | undefined;
}

/** What a provisioned device knows: its MQTT login and the settings that came with it. */
export interface DeviceAccess {
  username: string;
  password: string;
  config?: Record<string, PythonValue>;
  /** The app keys (APP_KEYS) it trusts: a Pico W of the fleet takes these. */
  appKeys?: readonly string[];
}

function parseIpv4(address: string): number {
  const parts = address.split(".");
  if (parts.length !== 4 || parts.some((p) => !/^\d{1,3}$/.test(p) || Number(p) > 255)) {
    throw new SimulatorError(`${address} is not an IPv4 address; give one such as ${DEFAULT_FIRST_ADDRESS}.`);
  }
  return parts.reduce((n, p) => n * 256 + Number(p), 0);
}

const formatIpv4 = (n: number) => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");

/**
 * `count` consecutive loopback addresses from `first`, skipping host parts
 * .0 and .255 (network and broadcast look-alikes some tools refuse).
 */
export function loopbackAddresses(count: number, first = DEFAULT_FIRST_ADDRESS): string[] {
  let n = parseIpv4(first);
  if (n >>> 24 !== 127) {
    throw new SimulatorError(
      `${first} is not a loopback address; simulated devices live in 127.0.0.0/8 (for example ${DEFAULT_FIRST_ADDRESS}).`,
    );
  }
  const out: string[] = [];
  while (out.length < count) {
    const host = n & 255;
    if (host !== 0 && host !== 255) out.push(formatIpv4(n));
    n++;
    if (n >>> 24 !== 127 || n === 0x7fffffff) {
      throw new SimulatorError(
        `${count} devices from ${first} run past the end of 127.0.0.0/8; start lower or simulate fewer.`,
      );
    }
  }
  return out;
}

/** Which devices sleep: `share` of them, spread evenly (share 0.5: every second one). */
export function sleepyIndexes(count: number, share: number): Set<number> {
  const out = new Set<number>();
  const s = Math.max(0, Math.min(1, share));
  for (let i = 0; i < count; i++) if (Math.floor((i + 1) * s) > Math.floor(i * s)) out.add(i);
  return out;
}

/**
 * N simulated devices, each on its own loopback address, all connected to
 * one broker: some always on, some deep-sleeping `sleepSeconds`.
 */
export class Fleet {
  readonly devices: FleetDevice[];
  private readonly options: FleetOptions;
  private readonly unsubscribe: Array<() => void> = [];
  private started = false;
  private network: UdpNetwork | undefined;
  private stopping = false;

  constructor(options: FleetOptions) {
    if (!Number.isSafeInteger(options.count) || options.count < 1) {
      throw new SimulatorError(`A fleet needs at least one device, not ${options.count}.`);
    }
    this.options = options;
    const addresses = loopbackAddresses(options.count, options.firstAddress);
    const sleepSeconds = options.sleepSeconds ?? 0;
    const sleepy = sleepSeconds > 0 ? sleepyIndexes(options.count, options.sleepyShare ?? 0.5) : new Set();
    const prefix = options.idPrefix ?? "sim";
    const firstPicoW = options.count - (options.picoW?.count ?? 0);
    const firstEsp32 = firstPicoW - (options.esp32?.count ?? 0);
    if (firstEsp32 < 0) {
      throw new SimulatorError(
        `A fleet of ${options.count} devices cannot hold ${options.count - firstEsp32} ESP32s and Pico Ws (${options.esp32?.count ?? 0} + ${options.picoW?.count ?? 0}): raise count or ask for fewer.`,
      );
    }
    this.devices = addresses.map((address, i) => {
      const id = `${prefix}-${i + 1}`;
      const access = options.access?.(id);
      const agent = access?.config
        ? {
            agent: {
              ...options.device?.agent,
              config: { ...options.device?.agent?.config, ...access.config },
            },
          }
        : {};
      const broker = access
        ? { ...parseBroker(options.broker), username: access.username, password: access.password }
        : options.broker;
      const sleepFor = sleepy.has(i) ? sleepSeconds : 0;
      const device: FleetDevice =
        i >= firstPicoW
          ? this.picoW(id, address, broker, sleepFor, access)
          : options.esp32 && i >= firstEsp32
            ? new SimulatedEsp32Device({
                ...this.selfBooted(id, address, broker, sleepFor),
                firmware: options.esp32.firmware,
                ...agent,
              })
            : this.esp8266(id, address, broker, i, sleepFor, agent);
      const onEvent = options.onEvent;
      if (onEvent) this.unsubscribe.push(device.events.on("event", (e) => onEvent(device, e)));
      const onStatus = options.onStatus;
      if (onStatus) {
        this.unsubscribe.push(device.events.on("status", (e) => onStatus(device, e.status, e.previous)));
      }
      return device;
    });
  }

  /** What the ESP32s and Pico Ws of the fleet take alike. */
  private selfBooted(id: string, address: string, broker: string | BrokerAddress, sleepSeconds: number) {
    const options = this.options;
    return {
      id,
      address,
      broker,
      sleepSeconds,
      clock: options.clock ?? systemClock,
      ...(options.awakeMs !== undefined ? { awakeMs: options.awakeMs } : {}),
      ...(options.baseTopic !== undefined ? { baseTopic: options.baseTopic } : {}),
      ...(options.cmdWaitMs !== undefined ? { cmdWaitMs: options.cmdWaitMs } : {}),
    };
  }

  /** A Pico W runs apps (its only updates): APP_KEYS from its access, else the fleet's. */
  private picoW(
    id: string,
    address: string,
    broker: string | BrokerAddress,
    sleepSeconds: number,
    access: DeviceAccess | undefined,
  ): SimulatedPicoWDevice {
    const agent = this.options.device?.agent;
    return new SimulatedPicoWDevice({
      ...this.selfBooted(id, address, broker, sleepSeconds),
      agent: {
        ...agent,
        config: { ...agent?.config, ...access?.config },
        appKeys: access?.appKeys ?? this.options.picoW?.appKeys ?? [],
      },
    });
  }

  private esp8266(
    id: string,
    address: string,
    broker: string | BrokerAddress,
    i: number,
    sleepSeconds: number,
    agent: Partial<SimulatedDeviceOptions>,
  ): SimulatedDevice {
    const options = this.options;
    if (!options.key)
      throw new SimulatorError(
        `Device ${id} is an ESP8266 with yaota8266: the fleet needs its bootloader's key.`,
      );
    this.network ??= options.network ?? new NodeUdpNetwork();
    return new SimulatedDevice({
      id,
      address,
      broker,
      key: options.key,
      firmware: options.firmware,
      sleepSeconds,
      network: this.network,
      clock: options.clock ?? systemClock,
      random: seededRandom((options.seed ?? 1) * 1009 + i),
      ...(options.port !== undefined ? { port: options.port } : {}),
      ...(options.awakeMs !== undefined ? { awakeMs: options.awakeMs } : {}),
      ...(options.link !== undefined ? { link: options.link } : {}),
      ...(options.baseTopic !== undefined ? { baseTopic: options.baseTopic } : {}),
      ...(options.settings !== undefined ? { settings: options.settings } : {}),
      ...(options.timing !== undefined ? { timing: options.timing } : {}),
      ...(options.cmdWaitMs !== undefined ? { cmdWaitMs: options.cmdWaitMs } : {}),
      ...options.device,
      ...agent,
    });
  }

  /** Powers the devices on one after the other. A device that cannot start stops the whole fleet. */
  async start(): Promise<void> {
    if (this.started) throw new SimulatorError("The fleet is already running.");
    this.started = true;
    const clock = this.options.clock ?? systemClock;
    try {
      for (const [i, device] of this.devices.entries()) {
        if (i > 0 && (this.options.staggerMs ?? 0) > 0) await clock.sleep(this.options.staggerMs ?? 0);
        if (this.stopping) return;
        await device.start();
      }
    } catch (error) {
      await this.stop();
      throw error;
    }
  }

  /** Powers every device off for good (the broker sees their last wills) and releases their ports. */
  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(this.devices.map((d) => d.stop()));
    for (const off of this.unsubscribe.splice(0)) off();
  }

  summary(): SimulatedDeviceSummary[] {
    return this.devices.map((d) => d.summary());
  }

  /** The device with this id. */
  device(id: string): FleetDevice | undefined {
    return this.devices.find((d) => d.id === id);
  }
}
