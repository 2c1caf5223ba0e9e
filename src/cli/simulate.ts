import { connect } from "node:net";
import { type Command, Option } from "commander";
import type { BrokerAddress } from "../agent-host/agent-device.ts";
import type { DeviceTiming } from "../emulator/timing.ts";
import { MpotaError, UsageError } from "../errors.ts";
import { EXIT_CODES } from "../exit-codes.ts";
import { formatTable } from "../firmware/format.ts";
import { readImageFileSync } from "../firmware/image-file.ts";
import { checkMd5Trailer } from "../firmware/micropython-image.ts";
import { LINK_PROFILES } from "../net/impairment.ts";
import type { UdpNetwork } from "../net/udp-channel.ts";
import { DEFAULT_SETTINGS, parseConfigH, type YaotaSettings } from "../protocol/config-h.ts";
import type { PublicKeyInfo } from "../protocol/rsa-key.ts";
import type { ProvisionedDevice } from "../server/api/admin-views.ts";
import { RequestError } from "../server/base/request-error.ts";
import { DEFAULT_DATA_DIR } from "../server/server.ts";
import { describeEvent } from "../simulator/event-text.ts";
import { DEFAULT_FIRST_ADDRESS, type DeviceAccess, Fleet, loopbackAddresses } from "../simulator/fleet.ts";
import type { SimulatedDevice, SimulatedEvent } from "../simulator/simulated-device.ts";
import { buildSyntheticBootloader } from "../simulator/synthetic-bootloader.ts";
import {
  buildSyntheticFirmware,
  DEFAULT_SYNTHETIC_SIZE,
  firmwareIdentity,
} from "../simulator/synthetic-firmware.ts";
import { withBridge } from "./devices.ts";
import type { CliIo } from "./io.ts";
import { DEFAULT_KEY_FILE, loadPublicKey, parseIntegerOption, readUserFile } from "./key-options.ts";
import { writeFileAtomic } from "./write-file.ts";

/** The broker `mpota serve` starts by default. */
export const DEFAULT_SIMULATOR_BROKER = "mqtt://localhost:1883";

/** No MQTT broker answers where the simulated devices should connect. */
export class SimulatorBrokerError extends MpotaError {
  override readonly exitCode: number = EXIT_CODES.simulatorBroker.code;
}

export interface SimulateCommandOptions {
  devices: number;
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

function parseNumberOption(name: string): (value: string) => number {
  return (value: string) => {
    const n = Number(value);
    if (value.trim() === "" || !Number.isFinite(n))
      throw new UsageError(`${name} must be a number, not "${value}".`);
    return n;
  };
}

function brokerFrom(options: SimulateCommandOptions): BrokerAddress {
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

function keyAndSettings(options: SimulateCommandOptions): { key: PublicKeyInfo; settings: YaotaSettings } {
  if (options.configH !== undefined && options.key === undefined && options.modulus === undefined) {
    const parsed = parseConfigH(readUserFile(options.configH, "config.h").toString("utf8"), options.configH);
    return { key: parsed.key, settings: parsed.settings };
  }
  const key =
    loadPublicKey({ key: options.key, modulus: options.modulus, configH: options.configH }) ??
    (loadPublicKey({ key: DEFAULT_KEY_FILE }) as PublicKeyInfo);
  return { key, settings: { ...DEFAULT_SETTINGS } };
}

function checkOptions(options: SimulateCommandOptions): void {
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
  // Before the devices are provisioned: a fleet that cannot have its addresses must not get credentials.
  loopbackAddresses(options.devices, options.firstAddress);
}

/** The firmware every device starts with: --firmware, or a synthetic image from --seed. */
function initialFirmware(
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

/** Fails early, with advice, when nothing listens where the devices should connect. */
function probeBroker(broker: BrokerAddress, url: string, timeoutMs = 3000): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: broker.host, port: broker.port });
    const fail = (why: string) => {
      socket.destroy();
      reject(
        new SimulatorBrokerError(
          `No MQTT broker answers at ${url} (${why}). Start the update server first (\`mpota serve\` runs a broker on port 1883), or point --mqtt at your broker.`,
        ),
      );
    };
    socket.setTimeout(timeoutMs, () => fail(`no answer in ${timeoutMs / 1000} s`));
    socket.once("error", (error: NodeJS.ErrnoException) => fail(error.code ?? error.message));
    socket.once("connect", () => {
      socket.end();
      resolve();
    });
  });
}

function clockTime(): string {
  return new Date().toISOString().slice(11, 23);
}

function summaryTable(fleet: Fleet): string {
  const rows = [
    ["device", "address", "status", "firmware", "sleep", "link", "boots", "check-ins", "updates"],
  ];
  for (const s of fleet.summary()) {
    rows.push([
      s.id,
      s.address,
      s.status,
      s.fw ?? "-",
      s.sleepSeconds > 0 ? `${s.sleepSeconds} s` : "always on",
      s.link,
      String(s.boots),
      String(s.checkins),
      String(s.updates),
    ]);
  }
  return formatTable(rows, { header: true, indent: "  " });
}

/** --write-firmware and --write-bootloader: sample files to try the other commands with, instead of a fleet. */
async function writeSamples(options: SimulateCommandOptions, io: CliIo): Promise<void> {
  if (options.writeFirmware !== undefined) {
    const image = buildSyntheticFirmware({ size: options.firmwareSize, seed: options.seed });
    await writeFileAtomic(options.writeFirmware, image, {
      force: options.force === true,
      what: "Firmware file",
      alternative: "choose another name",
    });
    io.out(
      `Wrote ${options.writeFirmware}: synthetic MicroPython OTA image, ${image.length} bytes, seed ${options.seed}, identity ${firmwareIdentity(image)}\n`,
    );
  }
  if (options.writeBootloader !== undefined) {
    const { key, settings } = keyAndSettings(options);
    const image = buildSyntheticBootloader({ modulus: key.modulus, settings, seed: options.seed });
    await writeFileAtomic(options.writeBootloader, image, {
      force: options.force === true,
      what: "Bootloader file",
      alternative: "choose another name",
    });
    const keyName =
      options.key ?? options.configH ?? (options.modulus !== undefined ? "--modulus" : DEFAULT_KEY_FILE);
    io.out(
      `Wrote ${options.writeBootloader}: a SYNTHETIC yaota8266 bootloader, ${image.length} bytes, laid out as upstream's build with the ${key.bits}-bit modulus of ${keyName}, GPIO mask 0x${settings.gpioMask.toString(16)}, MAIN_APP_OFFSET 0x${settings.mainAppOffset.toString(16)}.\n` +
        `It runs nothing: it is for trying \`mpota inspect ${options.writeBootloader} --key priv.key\` and \`mpota flash-plan --bootloader ${options.writeBootloader} ...\`. Do not flash it; build yaota8266 for a device.\n`,
    );
  }
}

/** Runs the simulated fleet until stopped (signal or deps.stop). */
export async function simulateCommand(
  options: SimulateCommandOptions,
  io: CliIo,
  deps: SimulateDeps = {},
): Promise<void> {
  if (options.writeFirmware !== undefined || options.writeBootloader !== undefined) {
    await writeSamples(options, io);
    return;
  }
  checkOptions(options);
  const broker = brokerFrom(options);
  const { key, settings } = keyAndSettings(options);
  const { image, source } = initialFirmware(options, settings.mainAppOffset);
  await probeBroker(broker, options.mqtt);
  const access =
    options.provision && options.mqttUsername === undefined ? await provisionFleet(options, deps) : undefined;

  const json = options.json === true;
  const print = (device: SimulatedDevice | undefined, event: Record<string, unknown>, text?: string) => {
    if (json) {
      io.out(`${JSON.stringify({ time: new Date().toISOString(), device: device?.id ?? null, ...event })}\n`);
    } else if (text !== undefined) {
      io.out(`${clockTime()}  ${device ? `${device.id.padEnd(idWidth)}  ` : ""}${text}\n`);
    }
  };
  const idWidth = `${options.idPrefix}-${options.devices}`.length;
  const fleet = new Fleet({
    count: options.devices,
    broker,
    key,
    firmware: image,
    sleepSeconds: options.sleep,
    sleepyShare: options.sleepyShare,
    awakeMs: options.awakeMs,
    link: options.link,
    idPrefix: options.idPrefix,
    baseTopic: options.base,
    firstAddress: options.firstAddress,
    seed: options.seed,
    staggerMs: options.staggerMs,
    settings: { ...settings, ...deps.settings },
    ...(deps.timing ? { timing: deps.timing } : {}),
    ...(deps.network ? { network: deps.network } : {}),
    ...(access ? { access: (id: string) => access.get(id) } : {}),
    onEvent: (device, event: SimulatedEvent & { atMs: number }) => {
      const { atMs: _, ...rest } = event;
      print(device, { ...rest }, describeEvent(event));
    },
  });

  const fw = firmwareIdentity(image);
  const sleepy = fleet.devices.filter((d) => d.sleepSeconds > 0).length;
  print(
    undefined,
    {
      type: "start",
      devices: fleet.summary(),
      broker: options.mqtt,
      firmware: fw ?? null,
      source,
      keyBits: key.bits,
    },
    `simulating ${options.devices} device${options.devices === 1 ? "" : "s"} (${options.devices - sleepy} always on, ${sleepy} sleeping ${options.sleep} s) on ${fleet.devices[0]?.address}${options.devices > 1 ? ` to ${fleet.devices.at(-1)?.address}` : ""}, broker ${options.mqtt}, link ${options.link}; firmware ${fw} (${source}), bootloader key ${key.bits}-bit. Ctrl-C stops.`,
  );

  const cleanups: Array<() => void> = [];
  const stopped = stopSignal(deps, cleanups, () => print(undefined, { type: "signal" }, "stopping"));
  const starting = fleet.start();
  try {
    // A device that cannot start (its address is taken) ends the command with the reason.
    await Promise.race([starting, stopped]);
    await stopped;
  } finally {
    for (const cleanup of cleanups) cleanup();
    await fleet.stop();
    await starting.catch(() => undefined);
    if (json) print(undefined, { type: "stopped", devices: fleet.summary() });
    else io.out(`${clockTime()}  stopped; the devices are powered off:\n${summaryTable(fleet)}`);
  }
}

/**
 * Gives every simulated device a credential of its own from the server (as
 * \`mpota devices add\` does for a real one), logging in as mpota-admin with
 * the admin token of --data; a device provisioned before gets a new secret.
 */
async function provisionFleet(
  options: SimulateCommandOptions,
  deps: SimulateDeps,
): Promise<Map<string, DeviceAccess>> {
  const ids = Array.from({ length: options.devices }, (_, i) => `${options.idPrefix}-${i + 1}`);
  const url = new URL(options.mqtt);
  url.username = "";
  url.password = "";
  const access = new Map<string, DeviceAccess>();
  const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
  const port = url.port ? Number(url.port) : 1883;
  await withBridge(
    { mqtt: url.toString(), base: options.base, timeout: 10, data: options.data, ...deps.admin },
    async (bridge) => {
      for (const id of ids) {
        let device: ProvisionedDevice;
        try {
          device = await bridge.request("devices/add", { id, host, port });
        } catch (error) {
          if (!(error instanceof RequestError) || !/already provisioned/.test(error.message)) throw error;
          device = await bridge.request("devices/rotate", { id, host, port });
        }
        access.set(id, {
          username: device.username,
          password: device.secret,
          config: { CMD_KEYS: device.commandKeyModuli },
        });
      }
    },
  );
  return access;
}

function stopSignal(deps: SimulateDeps, cleanups: Array<() => void>, onSignal: () => void): Promise<void> {
  return new Promise((resolve) => {
    const signalled = () => {
      onSignal();
      resolve();
    };
    process.once("SIGINT", signalled);
    process.once("SIGTERM", signalled);
    cleanups.push(() => {
      process.off("SIGINT", signalled);
      process.off("SIGTERM", signalled);
    });
    const stop = deps.stop;
    if (stop) {
      if (stop.aborted) resolve();
      const aborted = () => resolve();
      stop.addEventListener("abort", aborted, { once: true });
      cleanups.push(() => stop.removeEventListener("abort", aborted));
    }
  });
}

export function registerSimulateCommand(program: Command, io: CliIo, deps: SimulateDeps = {}): Command {
  return program
    .command("simulate")
    .description(
      "Run simulated ESP8266 devices (yaota8266 emulator + the real MicroPython agent), each on its own loopback address, against an MQTT broker: watch updates happen without hardware.",
    )
    .option("--devices <n>", "how many devices", parseIntegerOption("--devices"), 1)
    .option(
      "--sleep <seconds>",
      "deep-sleep period of the sleepy devices; 0: all always on",
      parseNumberOption("--sleep"),
      0,
    )
    .option(
      "--sleepy-share <fraction>",
      "share of the devices that deep-sleep when --sleep is set",
      parseNumberOption("--sleepy-share"),
      0.5,
    )
    .option(
      "--awake-ms <ms>",
      "how long a sleepy device stays awake after check-in (a slow sensor)",
      parseIntegerOption("--awake-ms"),
      0,
    )
    .addOption(
      new Option("--link <profile>", "impair each device's UDP link: lan, busy (1% loss), poor (3% loss)")
        .choices(Object.keys(LINK_PROFILES))
        .default("none"),
    )
    .option("--mqtt <url>", "the broker the devices connect to", DEFAULT_SIMULATOR_BROKER)
    .addOption(
      new Option(
        "--data <dir>",
        "the server's data directory: its admin token provisions each device with a credential of its own (as `mpota devices add` does)",
      )
        .env("MPOTA_DATA")
        .default(DEFAULT_DATA_DIR),
    )
    .option(
      "--no-provision",
      "do not provision the devices; they log in with --mqtt-username/--mqtt-password, if given",
    )
    .option(
      "--mqtt-username <name>",
      "one user name for every device (a broker mpota does not run; implies --no-provision)",
    )
    .addOption(
      new Option("--mqtt-password <password>", "password for the broker (or set MPOTA_MQTT_PASSWORD)").env(
        "MPOTA_MQTT_PASSWORD",
      ),
    )
    .option(
      "--key <file>",
      `key whose public half the devices' bootloaders hold (default ${DEFAULT_KEY_FILE}, the server's key)`,
    )
    .option("--modulus <hex>", "the bootloaders' RSA modulus as hex, instead of --key")
    .option("--config-h <file>", "a yaota8266 config.h: its MODULUS and settings")
    .option(
      "--firmware <file>",
      "MicroPython OTA image every device starts with (default: a synthetic one from --seed)",
    )
    .option(
      "--firmware-size <bytes>",
      "size of the synthetic image",
      parseIntegerOption("--firmware-size"),
      DEFAULT_SYNTHETIC_SIZE,
    )
    .option(
      "--seed <n>",
      "seed of the synthetic image and of the links' loss",
      parseIntegerOption("--seed"),
      1,
    )
    .option(
      "--write-firmware <file>",
      "write the synthetic image (per --seed, --firmware-size) to a file and exit, to offer it as an update",
    )
    .option(
      "--write-bootloader <file>",
      "write a synthetic yaota8266.bin holding the key's modulus (per --key, --modulus or --config-h) and exit: for trying inspect and flash-plan, never for flashing",
    )
    .option("--force", "with --write-firmware or --write-bootloader: replace an existing file")
    .option("--base <topic>", "base topic of the devices", "mpota")
    .option("--id-prefix <prefix>", "device ids are <prefix>-1, <prefix>-2, ...", "sim")
    .option("--first-address <ip>", "the first device's loopback address", DEFAULT_FIRST_ADDRESS)
    .option(
      "--stagger-ms <ms>",
      "pause between powering on one device and the next",
      parseIntegerOption("--stagger-ms"),
      200,
    )
    .option("--json", "print one JSON object per line instead of text")
    .addHelpText(
      "after",
      `
Each device is a modelled ESP8266 with yaota8266 (boot8266 + ota-server on
UDP port 8266 of its own address) whose app is the device agent from device/,
run under real MicroPython 1.27. It checks in on <base>/<id>/state, takes an
update command from the server, resets into OTA mode with the RTC magic,
receives the push, and boots the new firmware if its MD5 checks out.
Sleepy devices deep-sleep and pick up a pending update on their next wake.
Linux routes all of 127.0.0.0/8 to loopback; on macOS add aliases first
(sudo ifconfig lo0 alias 127.0.1.1 up, and so on).

Example:
  mpota serve                                  # server + broker on 1883
  mpota simulate --devices 4 --sleep 30        # 2 always on, 2 sleeping 30 s
  mpota simulate --write-firmware new.bin --seed 2
  mpota simulate --write-bootloader yaota8266.bin --key priv.key   # synthetic: never flash it
  mpota firmware add new.bin && mpota update sim-1 new.bin`,
    )
    .action(async (options: SimulateCommandOptions) => {
      await simulateCommand(options, io, deps);
    });
}
