// The options of `mpota simulate`, read and checked: the broker address, the
// bootloaders' key and settings, the firmware every device starts with.
import type { BrokerAddress } from "../agent-host/broker-address.ts";
import { verifyAppImage } from "../emulator/esp32-image-check.ts";
import type { DeviceTiming } from "../emulator/timing.ts";
import { UsageError } from "../errors.ts";
import { ESP32_OTA_LAYOUT } from "../firmware/esp32-layout.ts";
import { readImageFileSync } from "../firmware/image-file.ts";
import { checkMd5Trailer } from "../firmware/micropython-image.ts";
import { LINK_PROFILES } from "../net/impairment.ts";
import type { UdpNetwork } from "../net/udp-channel.ts";
import { DEFAULT_SETTINGS, parseConfigH, type YaotaSettings } from "../protocol/config-h.ts";
import type { PublicKeyInfo } from "../protocol/rsa-key.ts";
import { loopbackAddresses } from "../simulator/fleet.ts";
import { buildEsp32AppImage, DEFAULT_ESP32_APP_SIZE } from "../simulator/synthetic-esp32-app.ts";
import { buildSyntheticFirmware } from "../simulator/synthetic-firmware.ts";
import { DEFAULT_KEY_FILE, loadPublicKey, readUserFile } from "./key-options.ts";

/** The broker `mpota serve` starts by default. */
export const DEFAULT_SIMULATOR_BROKER = "mqtt://localhost:1883";

export interface SimulateCommandOptions {
  devices: number;
  /** How many of the devices (after the ESP8266s) are ESP32s (OTA variant); default 0. */
  esp32?: number;
  /** How many of the devices (the last ones) are Raspberry Pi Pico Ws; default 0. */
  picoW?: number;
  /** The ESP32s' first app (micropython.bin); default a synthetic one from --seed. */
  esp32Firmware?: string;
  writeEsp32Firmware?: string;
  sleep: number;
  sleepyShare: number;
  awakeMs: number;
  link: string;
  mqtt: string;
  mqttUsername?: string;
  mqttPassword?: string;
  key?: string;
  modulus?: string;
  configH?: string;
  firmware?: string;
  firmwareSize: number;
  seed: number;
  writeFirmware?: string;
  writeBootloader?: string;
  force?: boolean;
  base: string;
  idPrefix: string;
  firstAddress: string;
  staggerMs: number;
  json?: boolean;
  /** The server's data directory (its admin token provisions the devices). */
  data: string;
  /** false (--no-provision): the devices log in with --mqtt-username/--mqtt-password, or none. */
  provision: boolean;
}

/** What the command runs against; tests replace the stop signal and may speed the devices up. */
export interface SimulateDeps {
  /** Stops the fleet when aborted (SIGINT/SIGTERM do too). */
  stop?: AbortSignal;
  network?: UdpNetwork;
  timing?: Partial<DeviceTiming>;
  /** Settings over the ones from config.h / the defaults. */
  settings?: Partial<YaotaSettings>;
  /** The admin's broker login for provisioning, instead of the token in --data (tests). */
  admin?: { mqttUsername: string; mqttPassword: string };
}

export function parseNumberOption(name: string): (value: string) => number {
  return (value: string) => {
    const n = Number(value);
    if (value.trim() === "" || !Number.isFinite(n))
      throw new UsageError(`${name} must be a number, not "${value}".`);
    return n;
  };
}

export function brokerFrom(options: SimulateCommandOptions): BrokerAddress {
  let url: URL;
  try {
    url = new URL(options.mqtt);
  } catch {
    throw new UsageError(`--mqtt ${options.mqtt} is not a URL; write it as mqtt://host:1883.`);
  }
  if (url.protocol !== "mqtt:") {
    throw new UsageError(
      `The simulated devices speak plain MQTT over TCP, as the agent on an ESP8266 does: use an mqtt:// URL, not ${url.protocol}//.`,
    );
  }
  const username = options.mqttUsername ?? (url.username ? decodeURIComponent(url.username) : undefined);
  const password = options.mqttPassword ?? (url.password ? decodeURIComponent(url.password) : undefined);
  return {
    host: url.hostname.replace(/^\[(.*)\]$/, "$1"),
    port: url.port ? Number(url.port) : 1883,
    ...(username !== undefined ? { username } : {}),
    ...(password !== undefined ? { password } : {}),
  };
}

export function keyAndSettings(options: SimulateCommandOptions): {
  key: PublicKeyInfo;
  settings: YaotaSettings;
} {
  if (options.configH !== undefined && options.key === undefined && options.modulus === undefined) {
    const parsed = parseConfigH(readUserFile(options.configH, "config.h").toString("utf8"), options.configH);
    return { key: parsed.key, settings: parsed.settings };
  }
  const key =
    loadPublicKey({ key: options.key, modulus: options.modulus, configH: options.configH }) ??
    (loadPublicKey({ key: DEFAULT_KEY_FILE }) as PublicKeyInfo);
  return { key, settings: { ...DEFAULT_SETTINGS } };
}

export function checkOptions(options: SimulateCommandOptions): void {
  if (!Number.isSafeInteger(options.devices) || options.devices < 1 || options.devices > 250) {
    throw new UsageError(
      `--devices must be a whole number from 1 to 250 (each takes about 20 MB), not ${options.devices}.`,
    );
  }
  if (options.sleep < 0 || options.sleep > 4294) {
    throw new UsageError(
      `--sleep ${options.sleep} is outside 0-4294 s (an ESP8266 deep-sleeps at most about 71 minutes).`,
    );
  }
  if (options.sleepyShare < 0 || options.sleepyShare > 1) {
    throw new UsageError(`--sleepy-share is a fraction from 0 to 1, not ${options.sleepyShare}.`);
  }
  if (options.awakeMs < 0) throw new UsageError("--awake-ms cannot be negative.");
  if (!(options.link in LINK_PROFILES)) {
    throw new UsageError(
      `Unknown --link "${options.link}"; choose ${Object.keys(LINK_PROFILES).join(", ")}.`,
    );
  }
  if (
    options.base === "" ||
    /[#+]/.test(options.base) ||
    options.base.startsWith("/") ||
    options.base.endsWith("/")
  ) {
    throw new UsageError(
      `--base "${options.base}" must be a topic without wildcards or leading/trailing "/".`,
    );
  }
  if (!/^[A-Za-z0-9_-]{1,56}$/.test(options.idPrefix)) {
    throw new UsageError(
      `--id-prefix "${options.idPrefix}" must be 1-56 of A-Z, a-z, 0-9, _ and - (device ids are <prefix>-<n>).`,
    );
  }
  const esp32 = options.esp32 ?? 0;
  if (!Number.isSafeInteger(esp32) || esp32 < 0 || esp32 > options.devices) {
    throw new UsageError(
      `--esp32 is how many of the ${options.devices} devices are ESP32s: a whole number from 0 to ${options.devices}, not ${esp32}. Raise --devices for more.`,
    );
  }
  const picoW = options.picoW ?? 0;
  if (!Number.isSafeInteger(picoW) || picoW < 0 || picoW > options.devices - esp32) {
    throw new UsageError(
      `--pico-w is how many of the ${options.devices} devices are Pico Ws: a whole number from 0 to ${options.devices - esp32}${esp32 > 0 ? ` (${esp32} of them ${esp32 === 1 ? "is an ESP32" : "are ESP32s"})` : ""}, not ${picoW}. Raise --devices for more.`,
    );
  }
  // Before the devices are provisioned: a fleet that cannot have its addresses must not get credentials.
  loopbackAddresses(options.devices, options.firstAddress);
}

/** The app the ESP32s start with: --esp32-firmware (checked as set_boot would), or a synthetic one from --seed. */
export function initialEsp32Firmware(options: SimulateCommandOptions): { image: Uint8Array; source: string } {
  if (options.esp32Firmware === undefined) {
    return {
      image: buildEsp32AppImage({ seed: options.seed, size: DEFAULT_ESP32_APP_SIZE }),
      source: `synthetic app, seed ${options.seed}`,
    };
  }
  const image = new Uint8Array(readImageFileSync(options.esp32Firmware, "ESP32 firmware"));
  const refusal =
    verifyAppImage(image, 0) ??
    (image.length > ESP32_OTA_LAYOUT.slots[0].size ? "it is larger than the 1.5 MiB slot" : null);
  if (refusal !== null) {
    throw new UsageError(
      `${options.esp32Firmware} is not an app the simulated ESP32 could boot: ${refusal}. Give MicroPython's micropython.bin (the .app-bin) of an ESP32_GENERIC OTA build, or leave --esp32-firmware out for a synthetic one.`,
    );
  }
  return { image, source: options.esp32Firmware };
}

/** The firmware every device starts with: --firmware, or a synthetic image from --seed. */
export function initialFirmware(
  options: SimulateCommandOptions,
  appOffset: number,
): { image: Uint8Array; source: string } {
  if (options.firmware === undefined) {
    return {
      image: buildSyntheticFirmware({ size: options.firmwareSize, seed: options.seed, appOffset }),
      source: `synthetic image, seed ${options.seed}`,
    };
  }
  const image = new Uint8Array(readImageFileSync(options.firmware, "Firmware"));
  const trailer = checkMd5Trailer(image);
  if (trailer.status !== "ok") {
    throw new UsageError(
      `${options.firmware} is not an image boot8266 would start: ${trailer.message} Give a MicroPython firmware-ota.bin, or leave --firmware out for a synthetic image.`,
    );
  }
  return { image, source: options.firmware };
}
