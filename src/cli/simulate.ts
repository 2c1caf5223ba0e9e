import { type Command, Option } from "commander";
import { formatTable } from "../firmware/format.ts";
import { LINK_PROFILES } from "../net/impairment.ts";
import { DEFAULT_SETTINGS } from "../protocol/config-h.ts";
import { DEFAULT_DATA_DIR } from "../server/server-options.ts";
import { describeEvent } from "../simulator/event-text.ts";
import type { FleetDevice } from "../simulator/fleet.ts";
import { DEFAULT_FIRST_ADDRESS, Fleet } from "../simulator/fleet.ts";
import type { SimulatedEvent } from "../simulator/simulated-events.ts";
import { DEFAULT_SYNTHETIC_SIZE, firmwareIdentity } from "../simulator/synthetic-firmware.ts";
import type { CliIo } from "./io.ts";
import { DEFAULT_KEY_FILE, parseIntegerOption } from "./key-options.ts";
import { probeBroker, provisionFleet } from "./simulate-broker.ts";
import {
  brokerFrom,
  checkOptions,
  DEFAULT_SIMULATOR_BROKER,
  initialEsp32Firmware,
  initialFirmware,
  keyAndSettings,
  parseNumberOption,
  type SimulateCommandOptions,
  type SimulateDeps,
} from "./simulate-options.ts";
import { writeSamples } from "./simulate-samples.ts";

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

/** Runs the simulated fleet until stopped (signal or deps.stop). */
export async function simulateCommand(
  options: SimulateCommandOptions,
  io: CliIo,
  deps: SimulateDeps = {},
): Promise<void> {
  if (
    options.writeFirmware !== undefined ||
    options.writeEsp32Firmware !== undefined ||
    options.writeBootloader !== undefined
  ) {
    await writeSamples(options, io);
    return;
  }
  checkOptions(options);
  const broker = brokerFrom(options);
  const esp32Count = options.esp32 ?? 0;
  const picoWCount = options.picoW ?? 0;
  const esp8266Count = options.devices - esp32Count - picoWCount;
  // A fleet without ESP8266s has no yaota8266 bootloader, so no key to load.
  const { key, settings } =
    esp8266Count === 0 ? { key: undefined, settings: { ...DEFAULT_SETTINGS } } : keyAndSettings(options);
  const { image, source } = initialFirmware(options, settings.mainAppOffset);
  const esp32 = esp32Count > 0 ? initialEsp32Firmware(options) : undefined;
  await probeBroker(broker, options.mqtt);
  const access =
    options.provision && options.mqttUsername === undefined ? await provisionFleet(options, deps) : undefined;

  const json = options.json === true;
  const print = (device: FleetDevice | undefined, event: Record<string, unknown>, text?: string) => {
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
    ...(key ? { key } : {}),
    firmware: image,
    ...(esp32 ? { esp32: { count: esp32Count, firmware: esp32.image } } : {}),
    // Without provisioning a Pico W learns no app key: it runs apps but refuses every release.
    ...(picoWCount > 0 ? { picoW: { count: picoWCount, appKeys: [] } } : {}),
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
      esp32: esp32 ? { count: esp32Count, source: esp32.source } : null,
      picoW: picoWCount > 0 ? { count: picoWCount, appKeys: access ? "server" : "none" } : null,
      keyBits: key?.bits ?? null,
    },
    `simulating ${options.devices} device${options.devices === 1 ? "" : "s"} (${options.devices - sleepy} always on, ${sleepy} sleeping ${options.sleep} s) on ${fleet.devices[0]?.address}${options.devices > 1 ? ` to ${fleet.devices.at(-1)?.address}` : ""}, broker ${options.mqtt}, link ${options.link}${esp8266Count > 0 ? `; firmware ${fw} (${source})${key ? `, bootloader key ${key.bits}-bit` : ""}` : ""}${esp32 ? `; ${esp32Count} ${esp32Count === 1 ? "is an ESP32" : "are ESP32s"} (OTA variant, ${esp32.source})` : ""}${picoWCount > 0 ? `; the last ${picoWCount} ${picoWCount === 1 ? "is a Pico W" : "are Pico Ws"} (app updates only, ${access ? "trusting the server's app key" : "no app key without provisioning: every app release is refused"})` : ""}. Ctrl-C stops.`,
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
      "Run simulated devices (ESP8266s with the yaota8266 emulator, ESP32s, Pico Ws; each the real MicroPython agent), each on its own loopback address, against an MQTT broker: watch updates happen without hardware.",
    )
    .option("--devices <n>", "how many devices", parseIntegerOption("--devices"), 1)
    .option(
      "--esp32 <n>",
      "how many of the devices (after the ESP8266s) are ESP32s with MicroPython's OTA variant: two app slots, otadata, the bootloader's rollback",
      parseIntegerOption("--esp32"),
      0,
    )
    .option(
      "--pico-w <n>",
      "how many of the devices (the last ones) are Raspberry Pi Pico Ws: app updates only (mpota does not update their firmware), from releases signed by the server's app key",
      parseIntegerOption("--pico-w"),
      0,
    )
    .option(
      "--esp32-firmware <file>",
      "micropython.bin (the .app-bin) the ESP32s start with (default: a synthetic app from --seed)",
    )
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
      "--write-esp32-firmware <file>",
      "write the synthetic ESP32 app (per --seed) to a file and exit, to offer it as an ESP32 update",
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
With --esp32 N, N devices after the ESP8266s are ESP32s (ESP32_GENERIC's
OTA variant): the same agent pulls an update into the other app slot,
set_boot() and a hard reset switch to it, and ESP-IDF's bootloader rolls
back a firmware that does not confirm itself.
With --pico-w N the last N devices are Raspberry Pi Pico Ws (RPI_PICO_W):
they report chip rp2 and run an app that the server updates in place
(mpota app add, then mpota update <id> <app>@<version>); a firmware update
for them is refused. They trust the server's app key, which provisioning
gives them (with --no-provision they trust none).
Linux routes all of 127.0.0.0/8 to loopback; on macOS add aliases first
(sudo ifconfig lo0 alias 127.0.1.1 up, and so on).

Example:
  mpota serve                                  # server + broker on 1883
  mpota simulate --devices 4 --sleep 30        # 2 always on, 2 sleeping 30 s
  mpota simulate --write-firmware new.bin --seed 2
  mpota simulate --devices 4 --esp32 2         # 2 ESP8266s and 2 ESP32s
  mpota simulate --devices 3 --esp32 1 --pico-w 1   # an ESP8266, an ESP32, a Pico W
  mpota simulate --write-esp32-firmware new-esp32.bin --seed 2
  mpota simulate --write-bootloader yaota8266.bin --key priv.key   # synthetic: never flash it
  mpota firmware add new.bin --name demo --version 2.0 && mpota update sim-1 demo@2.0`,
    )
    .action(async (options: SimulateCommandOptions) => {
      await simulateCommand(options, io, deps);
    });
}
