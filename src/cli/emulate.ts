import { fstatSync } from "node:fs";
import { createInterface } from "node:readline";
import { isatty, ReadStream } from "node:tty";
import { type Command, Option } from "commander";
import { type AppIdentity, type DeviceLogEntry, EmulatedDevice, OTA_PORT } from "../emulator/device.ts";
import { type Flash, openFlash } from "../emulator/flash.ts";
import { DROP_MESSAGES } from "../emulator/receiver.ts";
import { MpotaError, UsageError } from "../errors.ts";
import { EXIT_CODES } from "../exit-codes.ts";
import { checkFlashSize, formatFlashSize } from "../firmware/flash-layout.ts";
import { RTC_MAGIC } from "../firmware/rtc-memory.ts";
import { type Clock, systemClock } from "../net/clock.ts";
import { LINK_PROFILES } from "../net/impairment.ts";
import { NodeUdpNetwork } from "../net/node-udp.ts";
import { seededRandom } from "../net/random.ts";
import type { UdpNetwork } from "../net/udp-channel.ts";
import { DEFAULT_SETTINGS, parseConfigH, type YaotaSettings } from "../protocol/config-h.ts";
import type { PublicKeyInfo } from "../protocol/rsa-key.ts";
import type { CliIo } from "./io.ts";
import {
  DEFAULT_KEY_FILE,
  loadPublicKey,
  parseFlashSize,
  parseIntegerOption,
  readUserFile,
} from "./key-options.ts";
import { inTerminalForeground } from "./terminal-foreground.ts";

/** The emulator could not take its UDP address. */
export class EmulatorBindError extends MpotaError {
  override readonly exitCode: number = EXIT_CODES.emulatorBind.code;
}

export interface EmulateCommandOptions {
  key?: string;
  modulus?: string;
  configH?: string;
  bind: string;
  port: number;
  flash?: string;
  flashSize: string;
  link: string;
  gpioMask?: number;
  gpioWaitMs?: number;
  pktWaitMs?: number;
  idleRebootMs?: number;
  baud?: number;
  appOffset?: number;
  boot: "ota" | "normal";
  rtcMagic: boolean;
  seed: number;
  progressEvery: number;
  json?: boolean;
  /** false (--no-console): never read commands from stdin. */
  console?: boolean;
}

/** What the command runs against; tests replace the stop signal and stdin. */
export interface EmulateDeps {
  /** Stops the emulator when aborted (SIGINT/SIGTERM do too). */
  stop?: AbortSignal;
  /** Command lines ("ota", "reset", "button", ...); default stdin when it is a pipe or file, or the terminal (see below). */
  stdin?: NodeJS.ReadableStream | null;
  /** Opens the terminal for reading (default: a new tty.ReadStream on fd 0); only called while in the foreground. */
  openTerminal?: () => NodeJS.ReadableStream & { destroy(): void };
  /** Whether the process is the terminal's foreground job (default: asks the OS; undefined: cannot tell). */
  foreground?: () => boolean | undefined;
  /** How often the foreground is checked while the console reads a terminal (default 500 ms). */
  foregroundPollMs?: number;
  network?: UdpNetwork;
  clock?: Clock;
}

const COMMANDS_HELP =
  'commands: "ota" (RTC magic + soft reset), "reset" (reset pin), "button" (GPIO change, within GPIO_WAIT_MS after "reset"), "deepsleep" (deep-sleep wake), "power" (power cycle), "status", "quit"';

function settingsFrom(options: EmulateCommandOptions): { key: PublicKeyInfo; settings: YaotaSettings } {
  let settings: YaotaSettings = { ...DEFAULT_SETTINGS };
  let key: PublicKeyInfo | undefined;
  if (options.configH !== undefined && options.key === undefined && options.modulus === undefined) {
    const parsed = parseConfigH(readUserFile(options.configH, "config.h").toString("utf8"), options.configH);
    key = parsed.key;
    settings = parsed.settings;
  } else {
    key = loadPublicKey({ key: options.key, modulus: options.modulus, configH: options.configH });
  }
  key ??= loadPublicKey({ key: DEFAULT_KEY_FILE }) as PublicKeyInfo;
  const overrides: Array<[keyof YaotaSettings, number | undefined]> = [
    ["gpioMask", options.gpioMask],
    ["gpioWaitMs", options.gpioWaitMs],
    ["pktWaitMs", options.pktWaitMs],
    ["idleRebootMs", options.idleRebootMs],
    ["baudRate", options.baud],
    ["mainAppOffset", options.appOffset],
  ];
  for (const [field, value] of overrides) if (value !== undefined) settings[field] = value;
  return { key, settings };
}

function checkOptions(options: EmulateCommandOptions, settings: YaotaSettings, flashSize: number): void {
  if (options.port > 65535) throw new UsageError(`--port ${options.port} is not a UDP port (0-65535).`);
  if (settings.mainAppOffset % 4096 !== 0 || settings.mainAppOffset >= flashSize) {
    throw new UsageError(
      `--app-offset 0x${settings.mainAppOffset.toString(16)} must be a multiple of 0x1000 inside the ${formatFlashSize(flashSize)} flash (yaota8266's default is 0x3c000).`,
    );
  }
  if (settings.gpioMask > 0xffffffff) throw new UsageError("--gpio-mask must fit in 32 bits.");
  if (options.progressEvery < 1) throw new UsageError("--progress-every must be at least 1 sector.");
}

function describeBindError(error: unknown, address: string, port: number): unknown {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === "EADDRINUSE") {
    return new EmulatorBindError(
      `UDP port ${port} on ${address} is already in use (another emulator or a real receiver?). Stop it, or pick another with --port or --bind.`,
      { cause: error },
    );
  }
  if (code === "EADDRNOTAVAIL" || code === "EINVAL") {
    return new EmulatorBindError(
      `Address ${address} is not configured on this machine. Use --bind 127.0.0.1, or add the alias (macOS: \`sudo ifconfig lo0 alias ${address} up\`).`,
      { cause: error },
    );
  }
  if (code === "EACCES") {
    return new EmulatorBindError(`Not allowed to bind ${address}:${port}. Use a port above 1023.`, {
      cause: error,
    });
  }
  return error;
}

function clockTime(): string {
  return new Date().toISOString().slice(11, 23);
}

/** Prints the device's log: timestamped lines, or one JSON object per line. */
class EmulatorLog {
  private repeated = 0;
  private last = "";
  /** "Unexpected offset" drops in this OTA session (shown once, then counted). */
  private unexpected = 0;

  constructor(
    private readonly io: CliIo,
    private readonly json: boolean,
  ) {}

  entry = (e: DeviceLogEntry): void => {
    if (this.json) {
      this.emit({ type: "log", source: e.source, message: e.message });
      return;
    }
    // Sector writes show up as progress lines instead.
    if (e.source === "ota-server" && e.message.startsWith("Writing ")) return;
    if (e.source === "ota-server" && e.message === DROP_MESSAGES["unexpected-offset"]) {
      // The real receiver logs every datagram that is ahead of the one it
      // expects; a pipelined sender has several in flight, so a healthy push
      // shows dozens. Explain the first, count the rest.
      if (this.unexpected++ === 0) {
        this.line(
          "ota-server: Unexpected offset: a datagram ahead of the one the receiver expects, dropped as the real receiver does. Normal while a pipelined sender (mpota push) keeps several in flight: it sends them again. Further ones are counted, not shown.",
        );
      }
      return;
    }
    this.line(e.source === "emulator" ? e.message : `${e.source}: ${e.message}`);
  };

  /** The "Unexpected offset" drops counted since the last call. */
  takeUnexpected(): number {
    const n = this.unexpected;
    this.unexpected = 0;
    return n;
  }

  line(text: string): void {
    if (text === this.last) {
      this.repeated++;
      return;
    }
    this.flush();
    this.last = text;
    this.io.out(`${clockTime()}  ${text}\n`);
  }

  emit(event: Record<string, unknown>): void {
    this.io.out(`${JSON.stringify({ time: new Date().toISOString(), ...event })}\n`);
  }

  flush(): void {
    if (this.repeated > 0)
      this.io.out(`${clockTime()}  (last message repeated ${this.repeated} more times)\n`);
    this.repeated = 0;
    this.last = "";
  }
}

/** Where the console's command lines come from: a stream (pipe, file, test), or the terminal. */
type ConsoleInput = { kind: "stream"; stream: NodeJS.ReadableStream } | { kind: "terminal" } | undefined;

function consoleInput(options: EmulateCommandOptions, deps: EmulateDeps): ConsoleInput {
  if (options.console === false) return undefined;
  if (deps.stdin !== undefined) return deps.stdin ? { kind: "stream", stream: deps.stdin } : undefined;
  if (deps.openTerminal || isatty(0)) return { kind: "terminal" };
  try {
    const stat = fstatSync(0);
    return stat.isFIFO() || stat.isFile() || stat.isSocket()
      ? { kind: "stream", stream: process.stdin }
      : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Reads commands from the terminal only while the emulator is the
 * terminal's foreground job. Started with `&` from an interactive shell, a
 * read would get it stopped by the shell (SIGTTIN, "Stopped (tty input)")
 * and the device would go silent; so in the background it keeps the
 * terminal closed, and opens it when brought back with `fg`.
 */
class TerminalConsole {
  private stream: (NodeJS.ReadableStream & { destroy(): void }) | undefined;
  private lines: ReturnType<typeof createInterface> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private saidBackground = false;

  constructor(
    private readonly open: () => NodeJS.ReadableStream & { destroy(): void },
    private readonly foreground: () => boolean | undefined,
    private readonly onLine: (line: string) => void,
    private readonly log: EmulatorLog,
  ) {}

  start(pollMs: number): void {
    this.check();
    this.timer = setInterval(() => this.check(), pollMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.detach();
  }

  private check(): void {
    // When the OS cannot tell, behave as a foreground program.
    const inForeground = this.foreground() !== false;
    if (inForeground && !this.lines) {
      if (this.saidBackground) this.log.line("in the foreground: reading commands from the terminal");
      this.saidBackground = false;
      this.stream = this.open();
      this.lines = createInterface({ input: this.stream, terminal: false });
      this.lines.on("line", this.onLine);
    } else if (!inForeground && !this.saidBackground) {
      this.detach();
      this.saidBackground = true;
      this.log.line(
        `running in the background: commands are not read from the terminal (fg brings the emulator back to type them); stop it with kill ${process.pid}`,
      );
    }
  }

  private detach(): void {
    this.lines?.close();
    this.lines = undefined;
    this.stream?.destroy();
    this.stream = undefined;
  }
}

/** Runs the emulator until stopped (signal, "quit", or deps.stop). */
export async function emulateCommand(
  options: EmulateCommandOptions,
  io: CliIo,
  deps: EmulateDeps = {},
): Promise<void> {
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
  });
  const cleanups: Array<() => void> = [];
  try {
    watchProgress(device, log, options, cleanups);
    const where = options.flash ? `flash file ${options.flash}` : "flash in memory";
    const describe = `${formatFlashSize(flashSize)} ${where}, link ${options.link}, BAUD_RATE ${settings.baudRate}, PKT_WAIT_MS ${settings.pktWaitMs}, IDLE_REBOOT_MS ${settings.idleRebootMs}, GPIO_MASK 0x${settings.gpioMask.toString(16)}, GPIO_WAIT_MS ${settings.gpioWaitMs}`;
    if (options.json)
      log.emit({ type: "start", flashSize, flash: options.flash ?? null, link: options.link, settings });
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

/** As if the app had run `machine.RTC().memory(b"yaotaota"); machine.reset()` (or, without the RTC patch, the button was pressed). */
function enterOta(device: EmulatedDevice, log: EmulatorLog, rtcMagic: boolean): void {
  if (!rtcMagic) {
    log.line("button pressed during the GPIO wait (this bootloader has no RTC magic)");
    device.reset("hard");
    device.pressButton();
    return;
  }
  log.line('RTC memory set to "yaotaota", soft reset');
  device.rtcMemory = RTC_MAGIC;
  device.reset("soft");
}

function watchProgress(
  device: EmulatedDevice,
  log: EmulatorLog,
  options: EmulateCommandOptions,
  cleanups: Array<() => void>,
) {
  let sectors = 0;
  let bytes = 0;
  let startedAt = 0;
  cleanups.push(
    device.events.on("state", (e) => {
      if (e.state === "ota") {
        log.takeUnexpected();
        sectors = 0;
        bytes = 0;
        startedAt = 0;
      }
    }),
    device.events.on("accepted", (e) => {
      if (startedAt === 0) startedAt = e.atMs;
      bytes = Math.max(bytes, e.offset + e.length);
    }),
    device.events.on("sectorWritten", (e) => {
      sectors++;
      if (sectors % options.progressEvery !== 0) return;
      const seconds = Math.max(0.001, (e.atMs - startedAt) / 1000);
      if (options.json) {
        log.emit({ type: "progress", sectors, bytes, address: e.address, seconds });
      } else {
        log.line(
          `received ${(bytes / 1024).toFixed(0)} KiB (${sectors} sectors, last at 0x${e.address.toString(16)}), ${(bytes / 1024 / seconds).toFixed(1)} KiB/s`,
        );
      }
    }),
    device.events.on("otaFinished", (e) => {
      const seconds = Math.max(0.001, (e.atMs - startedAt) / 1000);
      if (options.json) log.emit({ type: "finished", sectors, bytes, seconds, rexmits: e.rexmits });
      else {
        const unexpected = log.takeUnexpected();
        const ahead =
          unexpected > 0
            ? `, ${unexpected} datagrams ahead of the expected offset dropped ("Unexpected offset", normal for a pipelined sender)`
            : "";
        log.line(
          `update received: ${bytes} bytes, ${sectors} sectors written in ${seconds.toFixed(1)} s (${(bytes / 1024 / seconds).toFixed(1)} KiB/s), ${e.rexmits} duplicates${ahead}; rebooting`,
        );
      }
    }),
    device.events.on("appBoot", (app: AppIdentity) => {
      if (options.json) log.emit({ type: "app", md5: app.md5 ?? null, size: app.size, checked: app.checked });
    }),
  );
}

function runUntilStopped(
  device: EmulatedDevice,
  log: EmulatorLog,
  options: EmulateCommandOptions,
  deps: EmulateDeps,
  cleanups: Array<() => void>,
): Promise<void> {
  const rtcMagic = options.rtcMagic;
  return new Promise((resolve) => {
    const stop = () => resolve();
    const onSignal = () => {
      log.line("signal received, stopping");
      stop();
    };
    process.once("SIGINT", onSignal);
    process.once("SIGTERM", onSignal);
    cleanups.push(() => {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
    });
    if (deps.stop) {
      if (deps.stop.aborted) stop();
      deps.stop.addEventListener("abort", stop, { once: true });
      cleanups.push(() => deps.stop?.removeEventListener("abort", stop));
    }
    const onLine = (line: string) => {
      if (command(device, log, line.trim().toLowerCase(), rtcMagic) === "quit") stop();
    };
    const input = consoleInput(options, deps);
    if (input?.kind === "stream") {
      const lines = createInterface({ input: input.stream, terminal: false });
      lines.on("line", onLine);
      cleanups.push(() => lines.close());
    } else if (input?.kind === "terminal") {
      const terminal = new TerminalConsole(
        deps.openTerminal ?? (() => new ReadStream(0)),
        deps.foreground ?? (() => inTerminalForeground()),
        onLine,
        log,
      );
      terminal.start(deps.foregroundPollMs ?? 500);
      cleanups.push(() => terminal.stop());
    }
  });
}

function command(
  device: EmulatedDevice,
  log: EmulatorLog,
  line: string,
  rtcMagic: boolean,
): "quit" | undefined {
  switch (line) {
    case "":
      return undefined;
    case "ota":
      if (device.state === "off") log.line('the device is off; use "power"');
      else enterOta(device, log, rtcMagic);
      return undefined;
    case "reset":
      if (device.state !== "off") device.reset("hard");
      return undefined;
    case "deepsleep":
      if (device.state !== "off") device.reset("deepsleep");
      return undefined;
    case "button":
      if (!device.pressButton()) {
        log.line(
          `button: nothing happens: boot8266 watches the GPIOs only for GPIO_WAIT_MS (${device.settings.gpioWaitMs} ms) after a reset. Type "reset" first, then "button" within that time.`,
        );
      }
      return undefined;
    case "power":
      device.powerOff();
      log.line("power off; power on");
      void device.powerOn();
      return undefined;
    case "status": {
      const r = device.receiverState;
      log.line(
        `state ${device.state}${r ? `, expecting offset ${r.expectedOffset}, ${r.buffered} bytes buffered` : ""}${device.app?.md5 ? `, app ${device.app.md5}` : ""}, ${device.stats.sectorsWritten} sectors written`,
      );
      return undefined;
    }
    case "quit":
    case "exit":
      return "quit";
    default:
      log.line(`unknown command "${line}"; ${COMMANDS_HELP}`);
      return undefined;
  }
}

export function registerEmulateCommand(program: Command, io: CliIo, deps: EmulateDeps = {}): Command {
  return program
    .command("emulate")
    .description(
      "Run an emulated ESP8266 with yaota8266 (boot8266 + ota-server) on real UDP, to push updates to without hardware.",
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
         mpota push firmware-ota.bin --to 127.0.0.2 --key priv.key`,
    )
    .action(async (options: EmulateCommandOptions) => {
      await emulateCommand(options, io, deps);
    });
}
