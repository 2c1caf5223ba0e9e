// The `mpota emulate` command: an emulated ESP8266 with yaota8266 on real UDP.
import { type Command, Option } from "commander";
import { EmulatedDevice, OTA_PORT } from "../emulator/device.ts";
import { type Flash, openFlash } from "../emulator/flash.ts";
import { DEFAULT_TIMING } from "../emulator/timing.ts";
import { UsageError } from "../errors.ts";
import { checkFlashSize, formatFlashSize } from "../firmware/flash-layout.ts";
import { systemClock } from "../net/clock.ts";
import { LINK_PROFILES } from "../net/impairment.ts";
import { NodeUdpNetwork } from "../net/node-udp.ts";
import { seededRandom } from "../net/random.ts";
import { rejectPortInAddress } from "./address-option.ts";
import { emulateEsp32 } from "./emulate-esp32.ts";
import type { EmulateCommandOptions, EmulateDeps } from "./emulate-options.ts";
import { watchProgress } from "./emulate-progress.ts";
import { checkOptions, settingsFrom } from "./emulate-settings.ts";
import { describeBindError } from "./emulator-bind-error.ts";
import { COMMANDS_HELP, enterOta } from "./emulator-commands.ts";
import { runUntilStopped } from "./emulator-console.ts";
import { EmulatorLog } from "./emulator-log.ts";
import type { CliIo } from "./io.ts";
import { DEFAULT_KEY_FILE, parseFlashSize, parseIntegerOption } from "./key-options.ts";

/** Runs the emulator until stopped (signal, "quit", or deps.stop). */
export async function emulateCommand(
  options: EmulateCommandOptions,
  io: CliIo,
  deps: EmulateDeps = {},
): Promise<void> {
  if (options.chip === "esp32") {
    await emulateEsp32(options, io, deps);
    return;
  }
  const flashSize = checkFlashSize(parseFlashSize(options.flashSize));
  const { key, settings } = settingsFrom(options);
  checkOptions(options, settings, flashSize);
  if (!(options.link in LINK_PROFILES)) {
    throw new UsageError(
      `Unknown --link "${options.link}"; choose ${Object.keys(LINK_PROFILES).join(", ")}.`,
    );
  }
  const log = new EmulatorLog(io, options.json === true);
  const flash: Flash = openFlash({ path: options.flash, size: flashSize });
  const device = new EmulatedDevice({
    network: deps.network ?? new NodeUdpNetwork(),
    address: options.bind,
    port: options.port,
    clock: deps.clock ?? systemClock,
    random: seededRandom(options.seed),
    key,
    settings,
    flash,
    link: options.link,
    rtcMagic: options.rtcMagic,
    logger: log.entry,
    ...(options.receiveQueue !== undefined ? { timing: { receiveQueue: options.receiveQueue } } : {}),
  });
  const cleanups: Array<() => void> = [];
  try {
    watchProgress(device, log, options, cleanups);
    const where = options.flash ? `flash file ${options.flash}` : "flash in memory";
    const describe = `${formatFlashSize(flashSize)} ${where}, link ${options.link}, BAUD_RATE ${settings.baudRate}, PKT_WAIT_MS ${settings.pktWaitMs}, IDLE_REBOOT_MS ${settings.idleRebootMs}, GPIO_MASK 0x${settings.gpioMask.toString(16)}, GPIO_WAIT_MS ${settings.gpioWaitMs}, receive queue ${options.receiveQueue ?? DEFAULT_TIMING.receiveQueue}`;
    if (options.json)
      log.emit({
        type: "start",
        flashSize,
        flash: options.flash ?? null,
        link: options.link,
        settings,
        receiveQueue: options.receiveQueue ?? DEFAULT_TIMING.receiveQueue,
      });
    else log.line(`emulating yaota8266: ${describe}`);
    try {
      await device.powerOn();
    } catch (error) {
      throw describeBindError(error, options.bind, options.port);
    }
    if (options.boot === "ota") enterOta(device, log, options.rtcMagic);
    if (!options.json) {
      log.line(
        options.console === false
          ? `console off (--no-console): stop the emulator with Ctrl-C or kill ${process.pid}`
          : COMMANDS_HELP,
      );
    }
    await runUntilStopped(device, log, options, deps, cleanups);
  } finally {
    for (const cleanup of cleanups) cleanup();
    log.flush();
    const s = device.stats;
    const drops = Object.entries(s.dropped)
      .filter(([, n]) => n > 0)
      .map(([reason, n]) => `${reason} ${n}`)
      .join(", ");
    await device.close();
    flash.close();
    if (options.json) log.emit({ type: "stopped", stats: s });
    else {
      log.line(
        `stopped: ${s.datagramsReceived} datagrams received, ${s.acksSent} acks, ${s.sectorsWritten} sectors written, ${s.duplicates} duplicates, drops: ${drops || "none"}${options.flash ? `; flash saved in ${options.flash}` : ""}`,
      );
    }
  }
}

export function registerEmulateCommand(program: Command, io: CliIo, deps: EmulateDeps = {}): Command {
  return program
    .command("emulate")
    .description(
      "Run an emulated ESP8266 with yaota8266 (boot8266 + ota-server) on real UDP, to push updates to without hardware.",
    )
    .addOption(
      new Option(
        "--chip <chip>",
        "esp8266: yaota8266 on UDP; esp32: an ESP32 (OTA variant) running the agent against --mqtt, as `mpota simulate --devices 1 --esp32 1`",
      )
        .choices(["esp8266", "esp32"])
        .default("esp8266"),
    )
    .option("--mqtt <url>", "esp32: the broker the agent connects to (default mqtt://localhost:1883)")
    .option("--data <dir>", "esp32: the server's data directory, whose admin token provisions the device")
    .option("--no-provision", "esp32: do not provision; log in with --mqtt-username/--mqtt-password")
    .option("--mqtt-username <name>", "esp32: the device's broker user name (implies --no-provision)")
    .option("--mqtt-password <password>", "esp32: its password")
    .option("--firmware <file>", "esp32: micropython.bin (the .app-bin) in ota_0 (default a synthetic app)")
    .option("--id <prefix>", "esp32: the device id is <prefix>-1 (default esp32-1)")
    .option(
      "--sleep <seconds>",
      "esp32: deep-sleep between check-ins (default always on)",
      parseIntegerOption("--sleep"),
    )
    .option(
      "--key <file>",
      `key whose public half the emulated bootloader holds (default ${DEFAULT_KEY_FILE})`,
    )
    .option("--modulus <hex>", "the bootloader's RSA modulus as hex, instead of --key")
    .option(
      "--config-h <file>",
      "a yaota8266 config.h: its MODULUS and its settings (options below override them)",
    )
    .option(
      "--bind <address>",
      "address to listen on; 127.0.0.x aliases let several emulators share a host",
      "127.0.0.2",
    )
    .option("--port <port>", "UDP port of the receiver", parseIntegerOption("--port"), OTA_PORT)
    .option(
      "--flash <file>",
      "keep the flash in this file so it survives restarts (created erased if missing)",
    )
    .option("--flash-size <size>", "flash size: 512K, 1M, 2M, 4M, 8M or 16M", "1M")
    .addOption(
      new Option(
        "--link <profile>",
        "impair the link each way: lan (2 ms), busy (5 ms, 1% loss), poor (15 ms, 3% loss)",
      )
        .choices(Object.keys(LINK_PROFILES))
        .default("none"),
    )
    .option(
      "--gpio-mask <mask>",
      "GPIO_MASK: inputs watched after reset; 0 = OTA mode on every boot",
      parseIntegerOption("--gpio-mask"),
    )
    .option(
      "--gpio-wait-ms <ms>",
      "GPIO_WAIT_MS: how long boot8266 watches the GPIOs",
      parseIntegerOption("--gpio-wait-ms"),
    )
    .option(
      "--pkt-wait-ms <ms>",
      "PKT_WAIT_MS: silence after which the receiver restarts the session",
      parseIntegerOption("--pkt-wait-ms"),
    )
    .option(
      "--idle-reboot-ms <ms>",
      "IDLE_REBOOT_MS: reboot when no first packet arrives in this time",
      parseIntegerOption("--idle-reboot-ms"),
    )
    .option(
      "--baud <rate>",
      "BAUD_RATE of the receiver's log; it paces reception (0 = ROM default 74880)",
      parseIntegerOption("--baud"),
    )
    .option(
      "--receive-queue <n>",
      `datagrams the receiver queues while it writes a sector, 1 to 16; more are lost (default ${DEFAULT_TIMING.receiveQueue}; try 4 with push --window)`,
      parseIntegerOption("--receive-queue"),
    )
    .option(
      "--app-offset <offset>",
      "MAIN_APP_OFFSET, where updates are written (default 0x3c000)",
      parseIntegerOption("--app-offset"),
    )
    .addOption(
      new Option(
        "--boot <mode>",
        "ota: start in OTA mode as if RTC magic was set; normal: power on and let boot8266 decide",
      )
        .choices(["ota", "normal"])
        .default("ota"),
    )
    .option("--no-rtc-magic", "emulate a bootloader without ulno's RTC-magic patch (upstream yaota8266)")
    .option("--seed <n>", "seed for the link profile's loss and jitter", parseIntegerOption("--seed"), 1)
    .option(
      "--progress-every <sectors>",
      "print progress every this many 4 KiB sectors",
      parseIntegerOption("--progress-every"),
      16,
    )
    .option("--json", "print one JSON object per line instead of text")
    .option("--no-console", "do not read commands from stdin (for running it in the background with &)")
    .addHelpText(
      "after",
      `
The emulator verifies every datagram with the configured modulus, acknowledges
like the real receiver, writes 4 KiB sectors at MAIN_APP_OFFSET, follows the
timing model (UART logging paces it: ~33 s for 600 KiB at 115200 baud), and
keeps the receiver's quirks (PKT_WAIT_MS restarts without clearing the sector
buffer). After "OTA finished" it reboots and boot8266 checks the app's MD5.

While it runs, type on stdin:
  ota        RTC magic "yaotaota" + soft reset (as ota.start() on the device)
  reset      reset pin; boot8266 watches the GPIOs for GPIO_WAIT_MS
  button     change a GPIO during that wait (enters OTA mode); only right
             after "reset", within GPIO_WAIT_MS: at other times nothing happens
  deepsleep  deep-sleep wake (boots the app without checks)
  power      power cycle (RTC memory lost)
  status     state, expected offset, app MD5
  quit       stop (as do Ctrl-C and SIGTERM)
Commands are read from a pipe or file on stdin, or from the terminal while the
emulator is in the foreground: started with "&" it does not touch the terminal
(a background read would get it stopped by the shell). --no-console: never read.

Example: mpota emulate --key priv.key --flash device.flash --no-console &
         mpota push firmware-ota.bin --to 127.0.0.2 --key priv.key

--chip esp32 emulates an ESP32 with MicroPython's OTA variant instead: both
app slots, otadata, set_boot()'s image check, ESP-IDF's bootloader with its
rollback and the deep-sleep trap, and the real agent, which pulls updates
from the server: mpota emulate --chip esp32 --mqtt mqtt://localhost:1883`,
    )
    .action(async (options: EmulateCommandOptions) => {
      rejectPortInAddress("--bind", options.bind);
      await emulateCommand(options, io, deps);
    });
}
