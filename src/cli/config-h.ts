import { resolve } from "node:path";
import type { Command } from "commander";
import { deviceFloorMs, ROM_BAUD_RATE } from "../emulator/timing.ts";
import { UsageError } from "../errors.ts";
import { DEFAULT_SETTINGS, renderConfigH, type YaotaSettings } from "../protocol/config-h.ts";
import { SECTOR_SIZE } from "../protocol/datagram.ts";
import type { CliIo } from "./io.ts";
import { DEFAULT_KEY_FILE, loadPublicKey, parseIntegerOption } from "./key-options.ts";
import { writeFileAtomic } from "./write-file.ts";

/** The largest flash an ESP8266 module carries (16 MiB). */
const MAX_FLASH = 16 * 1024 * 1024;
/** Timers in the receiver and boot8266 are 32-bit millisecond counts. */
const MAX_MS = 0xffff_ffff;

interface ConfigHOptions {
  key: string;
  appOffset?: number;
  baud?: number;
  gpioMask?: number;
  gpioWaitMs?: number;
  pktWaitMs?: number;
  idleRebootMs?: number;
  output?: string;
  force?: boolean;
}

const hex = (n: number) => `0x${n.toString(16)}`;

/** Checks the settings make a config.h that builds and runs; the messages say which value to use instead. */
export function checkSettings(s: YaotaSettings): YaotaSettings {
  if (s.mainAppOffset < SECTOR_SIZE) {
    throw new UsageError(
      `--app-offset ${hex(s.mainAppOffset)} would overwrite boot8266, which occupies the first 4 KiB of flash; the app must start after yaota8266.bin. The usual value is ${hex(DEFAULT_SETTINGS.mainAppOffset)}.`,
    );
  }
  if (s.mainAppOffset % SECTOR_SIZE !== 0) {
    throw new UsageError(
      `--app-offset ${hex(s.mainAppOffset)} is not a multiple of 4 KiB (0x1000); flash is erased and written in 4 KiB sectors. The usual value is ${hex(DEFAULT_SETTINGS.mainAppOffset)}.`,
    );
  }
  if (s.mainAppOffset >= MAX_FLASH) {
    throw new UsageError(
      `--app-offset ${hex(s.mainAppOffset)} lies beyond 16 MiB, the largest ESP8266 flash. The usual value is ${hex(DEFAULT_SETTINGS.mainAppOffset)}.`,
    );
  }
  if (s.gpioMask > 0xffff) {
    throw new UsageError(
      `--gpio-mask ${hex(s.gpioMask)} has bits above GPIO15; the ESP8266 has GPIO0..GPIO15, so the mask is at most 0xffff (default ${hex(DEFAULT_SETTINGS.gpioMask)}; 0 enters OTA mode on every boot).`,
    );
  }
  const times: Array<[string, number, boolean]> = [
    ["--gpio-wait-ms", s.gpioWaitMs, false],
    ["--pkt-wait-ms", s.pktWaitMs, true],
    ["--idle-reboot-ms", s.idleRebootMs, true],
  ];
  for (const [name, value, positive] of times) {
    if (value > MAX_MS)
      throw new UsageError(`${name} ${value} is too large; it must fit in 32 bits (at most ${MAX_MS}).`);
    if (positive && value === 0) {
      throw new UsageError(
        `${name} must be more than 0 milliseconds; with 0 the receiver would give up at once. The default is ${name === "--pkt-wait-ms" ? DEFAULT_SETTINGS.pktWaitMs : DEFAULT_SETTINGS.idleRebootMs}.`,
      );
    }
  }
  return s;
}

async function configH(io: CliIo, options: ConfigHOptions): Promise<void> {
  const settings = checkSettings({
    mainAppOffset: options.appOffset ?? DEFAULT_SETTINGS.mainAppOffset,
    baudRate: options.baud ?? DEFAULT_SETTINGS.baudRate,
    gpioMask: options.gpioMask ?? DEFAULT_SETTINGS.gpioMask,
    gpioWaitMs: options.gpioWaitMs ?? DEFAULT_SETTINGS.gpioWaitMs,
    pktWaitMs: options.pktWaitMs ?? DEFAULT_SETTINGS.pktWaitMs,
    idleRebootMs: options.idleRebootMs ?? DEFAULT_SETTINGS.idleRebootMs,
  });
  const key = loadPublicKey({ key: resolve(options.key) });
  if (key === undefined) throw new Error("loadPublicKey returned nothing for --key");
  const text = renderConfigH(key, settings);
  io.err(baudRateCost(settings.baudRate));
  if (options.output === undefined) {
    io.out(text);
    return;
  }
  const output = resolve(options.output);
  await writeFileAtomic(output, text, { force: options.force === true, what: "config.h file" });
  io.out(
    `Wrote ${output} for a ${key.bits}-bit key, MAIN_APP_OFFSET ${hex(settings.mainAppOffset)}.\nCopy it to config.h at the root of the yaota8266 source tree, run make, and flash yaota8266.bin at 0x0.\n`,
  );
}

const UPDATE_BYTES = 600 * 1024;
const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

/**
 * What a BAUD_RATE costs per update: the receiver logs about 119 bytes per
 * datagram and waits for its UART, so the baud rate sets the floor of every
 * update (from the emulator's timing model).
 */
export function baudRateCost(baudRate: number): string {
  const floor = (baud: number, block: number) => deviceFloorMs(UPDATE_BYTES, block, { baudRate: baud });
  const shown = baudRate === 0 ? `0 (the ROM's ${ROM_BAUD_RATE})` : String(baudRate);
  const lines = [
    `BAUD_RATE ${shown}: the receiver needs at least ${seconds(floor(baudRate, 256))} for a 600 KiB update with 256-byte blocks (${seconds(floor(baudRate, 1024))} with --block 1024), because it logs every datagram to the UART.`,
  ];
  if (baudRate !== 921600) {
    lines.push(
      `With --baud 921600 it would be ${seconds(floor(921600, 256))} (${seconds(floor(921600, 1024))}); make sure your serial adapter can read that speed if you watch the log.`,
    );
  }
  return `${lines.join("\n")}\n`;
}

/** `mpota config-h`. */
export function registerConfigHCommand(program: Command, io: CliIo): void {
  const d = DEFAULT_SETTINGS;
  program
    .command("config-h")
    .description("Print or write a complete, commented config.h for building yaota8266 with your key")
    .option("--key <file>", "private or public key (PEM)", DEFAULT_KEY_FILE)
    .option(
      "--app-offset <addr>",
      `flash offset of the main app, 4 KiB aligned (default ${hex(d.mainAppOffset)})`,
      parseIntegerOption("--app-offset"),
    )
    .option(
      "--baud <n>",
      `serial log speed; 0 keeps the ROM default 74880 (default ${d.baudRate})`,
      parseIntegerOption("--baud"),
    )
    .option(
      "--gpio-mask <mask>",
      `GPIOs watched after reset; 0 enters OTA mode on every boot (default ${hex(d.gpioMask)})`,
      parseIntegerOption("--gpio-mask"),
    )
    .option(
      "--gpio-wait-ms <ms>",
      `how long boot8266 watches the GPIOs (default ${d.gpioWaitMs})`,
      parseIntegerOption("--gpio-wait-ms"),
    )
    .option(
      "--pkt-wait-ms <ms>",
      `receiver restarts when the next packet is this late (default ${d.pktWaitMs})`,
      parseIntegerOption("--pkt-wait-ms"),
    )
    .option(
      "--idle-reboot-ms <ms>",
      `reboot when no first packet arrives in this time (default ${d.idleRebootMs})`,
      parseIntegerOption("--idle-reboot-ms"),
    )
    .option("-o, --output <file>", "write to this file instead of printing")
    .option("--force", "replace the output file if it exists")
    .action(async (options: ConfigHOptions) => {
      await configH(io, options);
    });
}
