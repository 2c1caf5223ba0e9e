import { writeFileSync } from "node:fs";
import type { Command } from "commander";
import { FileError, UsageError } from "../errors.ts";
import { BOARDS, type BoardProfile, findBoard } from "../firmware/boards.ts";
import { analyzeBootloader, isYaotaBootloader } from "../firmware/bootloader-image.ts";
import { FLASH_MODES, type FlashMode } from "../firmware/esp-image.ts";
import { type ChipChoice, parseChipName } from "../firmware/esp32-chips.ts";
import { checkFlashSize, flashSizeText } from "../firmware/flash-layout.ts";
import { hex, sizeText } from "../firmware/format.ts";
import {
  buildFullFlashImage,
  type EsptoolCommands,
  esptoolCommands,
  FlashPlanError,
} from "../firmware/full-flash.ts";
import { readImageFileSync } from "../firmware/image-file.ts";
import { isMicroPythonImage } from "../firmware/micropython-image.ts";
import { assertPreflight, type Verdict } from "../firmware/preflight.ts";
import { DEFAULT_MAIN_APP_OFFSET, parseConfigH } from "../protocol/config-h.ts";
import { type FlashRegion, layoutRegions, regionLines } from "./check.ts";
import { runEsp32FlashPlan } from "./flash-plan-esp32.ts";
import { type CliIo, processIo } from "./io.ts";
import { loadPublicKey, parseFlashSize, parseIntegerOption, readUserFile } from "./key-options.ts";

/** Identifies the JSON shape `mpota flash-plan --json` prints; bumped only on incompatible changes. */
export const FLASH_PLAN_FORMAT = "mpota-flash-plan/1";

export interface FlashPlanCommandOptions {
  /** Required for the ESP8266; an ESP32's merged firmware.bin holds its own. */
  bootloader?: string;
  chip?: ChipChoice;
  firmware: string;
  board?: string;
  flashSize?: number;
  flashMode?: FlashMode;
  appOffset?: number;
  output?: string;
  overwrite?: boolean;
  port: string;
  baud: number;
  key?: string;
  modulus?: string;
  configH?: string;
  force?: boolean;
  json?: boolean;
}

/** The `flash-plan --json` document. */
export interface FlashPlan {
  format: typeof FLASH_PLAN_FORMAT;
  board: { id: string; name: string; enterFlashMode: string; note: string | null } | null;
  flashSize: number;
  flashMode: FlashMode;
  appOffset: number;
  bootloader: {
    file: string;
    size: number;
    gpioMask: number | null;
    gpioWaitMs: number | null;
    /** null when no key was given. */
    keyFound: boolean | null;
  };
  firmware: { file: string; size: number; identity: string | null; version: string | null };
  /** The merged image written with -o (null without -o). */
  output: { file: string; size: number } | null;
  /** Flash regions, `[start, end, what]`. */
  layout: FlashRegion[];
  checks: Verdict[];
  commands: EsptoolCommands;
  warnings: string[];
}

function parseFlashMode(value: string): FlashMode {
  const mode = value.toLowerCase() as FlashMode;
  if (!FLASH_MODES.includes(mode)) {
    throw new UsageError(
      `Flash mode "${value}" is not one esptool knows; use qio, qout, dio or dout (dout works on every chip).`,
    );
  }
  return mode;
}

function render(plan: FlashPlan): string {
  const out: string[] = [];
  const board = plan.board ? `${plan.board.name}: ` : "";
  out.push(
    `${board}${flashSizeText(plan.flashSize)} flash, mode ${plan.flashMode}, MAIN_APP_OFFSET ${hex(plan.appOffset)}`,
  );
  out.push("");
  out.push("flash layout");
  out.push(regionLines(plan.layout));
  out.push("");
  out.push(
    `firmware ${plan.firmware.file}: identity ${plan.firmware.identity ?? "none"}${plan.firmware.version ? `, MicroPython ${plan.firmware.version}` : ""}`,
  );
  const b = plan.bootloader;
  out.push(
    `bootloader ${b.file}: GPIO mask ${b.gpioMask === null ? "?" : hex(b.gpioMask)}, wait ${b.gpioWaitMs ?? "?"} ms, key ${b.keyFound === null ? "not checked" : b.keyFound ? "matches" : "does NOT match"}`,
  );
  if (plan.output) out.push(`wrote ${plan.output.file}: ${sizeText(plan.output.size)}`);
  out.push("");
  if (plan.board) out.push(`Enter flash mode: ${plan.board.enterFlashMode}`);
  if (plan.board?.note) out.push(`Note: ${plan.board.note}`);
  if (plan.board) out.push("");
  out.push("First erase the chip (old filesystem and SDK settings go):");
  out.push(`  ${plan.commands.erase}`);
  if (plan.commands.merged) {
    out.push("then write the merged image:");
    out.push(`  ${plan.commands.merged}`);
    out.push("or the two parts:");
  } else {
    out.push("then write the two parts (-o FILE also writes one merged image):");
  }
  out.push(`  ${plan.commands.parts}`);
  for (const w of plan.warnings) out.push(`warning: ${w}`);
  return `${out.join("\n")}\n`;
}

/** `mpota flash-plan`: checks both files, writes the merged image when asked, prints the esptool commands. */
export async function runFlashPlan(
  options: FlashPlanCommandOptions,
  io: CliIo = processIo,
): Promise<FlashPlan> {
  if (options.bootloader === undefined) {
    throw new UsageError(
      "Give --bootloader yaota8266.bin for an ESP8266, or --chip esp32 (or another ESP32-family chip) for a merged firmware.bin.",
    );
  }
  const board: BoardProfile | undefined = options.board !== undefined ? findBoard(options.board) : undefined;
  const flashSizeGiven = options.flashSize ?? board?.flashSize;
  if (flashSizeGiven === undefined) {
    throw new UsageError(
      `Give --board (${BOARDS.map((b) => b.id).join(", ")}) or --flash-size; \`esptool.py flash_id\` prints the chip's size.`,
    );
  }
  const flashSize = checkFlashSize(flashSizeGiven);
  const flashMode = options.flashMode ?? board?.flashMode ?? "dout";
  const force = options.force === true;
  const warnings: string[] = [];

  const bootBytes = new Uint8Array(readImageFileSync(options.bootloader, "Bootloader file"));
  const appBytes = new Uint8Array(readImageFileSync(options.firmware, "Firmware file"));
  if (!isYaotaBootloader(bootBytes)) {
    const swapped = isMicroPythonImage(bootBytes) && isYaotaBootloader(appBytes);
    throw new FlashPlanError(
      swapped
        ? `${options.bootloader} is a MicroPython image and ${options.firmware} is the bootloader: swap --bootloader and --firmware.`
        : `${options.bootloader} is not a yaota8266.bin (boot8266 in the first sector, the ota-server at 0x1000). Run \`mpota inspect ${options.bootloader}\` to see what it is; yaota8266's make writes yaota8266.bin.`,
    );
  }
  const key = loadPublicKey(options);
  const settings = options.configH
    ? parseConfigH(readUserFile(options.configH, "config.h").toString("utf8"), options.configH).settings
    : undefined;
  const boot = analyzeBootloader(bootBytes, { key, source: options.bootloader });
  const compiledOffset = boot.boot8266.mainAppOffset;
  const appOffset = options.appOffset ?? settings?.mainAppOffset ?? compiledOffset ?? DEFAULT_MAIN_APP_OFFSET;
  if (compiledOffset !== null && compiledOffset !== appOffset) {
    const message = `boot8266 in ${options.bootloader} looks for the app at ${hex(compiledOffset)} (read from its code), not at ${hex(appOffset)}: the app would never start.`;
    if (!force) throw new FlashPlanError(`${message} Drop --app-offset, or pass --force if you are sure.`);
    warnings.push(message);
  }
  if (compiledOffset === null && options.appOffset === undefined && !settings) {
    warnings.push(
      `MAIN_APP_OFFSET not found in boot8266's code; assuming ${hex(appOffset)}. Pass --app-offset or --config-h if your build differs.`,
    );
  }
  if (boot.errors.length > 0) throw new FlashPlanError(`${options.bootloader}: ${boot.errors.join(" ")}`);
  if (boot.keyErrors.length > 0) {
    if (!force)
      throw new FlashPlanError(
        `${options.bootloader}: ${boot.keyErrors.join(" ")} Pass --force to flash it anyway.`,
      );
    warnings.push(...boot.keyErrors);
  }
  warnings.push(...boot.warnings);

  const result = assertPreflight(appBytes, {
    flashSize,
    mainAppOffset: appOffset,
    force,
    source: options.firmware,
  });
  for (const v of result.verdicts) if (v.forced || v.level === "warning") warnings.push(v.message);

  let output: FlashPlan["output"] = null;
  if (options.output) {
    const merged = buildFullFlashImage({
      bootloader: bootBytes,
      firmware: appBytes,
      appOffset,
      flashSize,
      flashMode,
    });
    try {
      writeFileSync(options.output, merged, { flag: options.overwrite ? "w" : "wx" });
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "EEXIST")
        throw new FileError(`${options.output} exists already; pass --overwrite to replace it.`);
      throw new FileError(`Cannot write ${options.output}: ${(error as Error).message}`);
    }
    output = { file: options.output, size: merged.length };
  } else if (bootBytes.length > appOffset) {
    // Checked by buildFullFlashImage with -o; without it esptool would write both parts over each other.
    buildFullFlashImage({ bootloader: bootBytes, firmware: appBytes, appOffset, flashSize });
  }

  const plan: FlashPlan = {
    format: FLASH_PLAN_FORMAT,
    board: board
      ? { id: board.id, name: board.name, enterFlashMode: board.enterFlashMode, note: board.note }
      : null,
    flashSize,
    flashMode,
    appOffset,
    bootloader: {
      file: options.bootloader,
      size: bootBytes.length,
      gpioMask: boot.boot8266.gpioMask,
      gpioWaitMs: boot.boot8266.gpioWaitMs,
      keyFound: boot.key ? boot.key.found : null,
    },
    firmware: {
      file: options.firmware,
      size: appBytes.length,
      identity: result.identity,
      version: result.version,
    },
    output,
    layout: layoutRegions(result),
    checks: result.verdicts,
    commands: esptoolCommands({
      port: options.port,
      baud: options.baud,
      flashMode,
      flashSize,
      appOffset,
      bootloaderFile: options.bootloader,
      firmwareFile: options.firmware,
      mergedFile: options.output,
    }),
    warnings,
  };
  io.out(options.json ? `${JSON.stringify(plan, null, 2)}\n` : render(plan));
  return plan;
}

export function registerFlashPlanCommand(program: Command, io: CliIo = processIo): Command {
  return program
    .command("flash-plan")
    .description("Plan the first serial flash: one merged image and the exact esptool commands")
    .option("--bootloader <file>", "ESP8266: yaota8266.bin (boot8266 + ota-server), written at 0x0")
    .requiredOption(
      "--firmware <file>",
      "ESP8266: firmware-ota.bin, written at MAIN_APP_OFFSET; ESP32: the OTA variant's merged firmware.bin",
    )
    .option("--chip <chip>", "esp8266 (default) or an ESP32-family chip: esp32, esp32s3 ...", parseChipName)
    .option("--board <name>", `board profile: ${BOARDS.map((b) => b.id).join(", ")}`)
    .option("--flash-size <size>", "flash size (overrides the board's): 512K, 1M, 2M, 4M ...", parseFlashSize)
    .option(
      "--flash-mode <mode>",
      "qio, qout, dio or dout (overrides the board's; default dout)",
      parseFlashMode,
    )
    .option(
      "--app-offset <offset>",
      "MAIN_APP_OFFSET (default: read from boot8266, else 0x3c000)",
      parseIntegerOption("--app-offset"),
    )
    .option("-o, --output <file>", "write the merged full-flash image here")
    .option("--overwrite", "replace the -o file if it exists")
    .option("--port <port>", "serial port for the printed commands", "/dev/ttyUSB0")
    .option("--baud <rate>", "baud rate for the printed commands", parseIntegerOption("--baud"), 460800)
    .option("--key <file>", "check that the bootloader holds this key's modulus")
    .option("--modulus <hex>", "the same with the modulus as hex")
    .option("--config-h <file>", "the config.h yaota8266 was built with (modulus and MAIN_APP_OFFSET)")
    .option("--force", "go ahead despite refusals that may be overridden")
    .option("--json", "print the plan as JSON (shape: docs/inspect.md)")
    .addHelpText(
      "after",
      `
Checks the bootloader (a yaota8266.bin, with your key's modulus when --key is
given) and the firmware (as \`mpota check\` does), then prints the esptool
commands with the flash mode and size the board needs. With -o it also writes
one merged image: the bootloader at 0x0, 0xFF up to MAIN_APP_OFFSET, the app.

Boards:
${BOARDS.map((b) => `  ${b.id.padEnd(14)} ${flashSizeText(b.flashSize).padEnd(8)} ${b.flashMode.padEnd(5)} ${b.name}`).join("\n")}

ESP32 (--chip esp32): checks MicroPython's merged firmware.bin (bootloader,
partition table with otadata, ota_0 and ota_1, and the app at 0x10000) and
prints its layout and the esptool commands.

Examples:
  mpota flash-plan --chip esp32 --firmware ESP32_GENERIC-OTA-v1.27.0.bin
  mpota flash-plan --bootloader yaota8266.bin --firmware firmware-ota.bin \\
    --board sonoff-basic --key priv.key -o full.bin`,
    )
    .action(async (options: FlashPlanCommandOptions) => {
      const chip = options.chip;
      if (chip !== undefined && chip !== "esp8266") {
        runEsp32FlashPlan(
          { firmware: options.firmware, chip, port: options.port, baud: options.baud, json: options.json },
          io,
        );
        return;
      }
      await runFlashPlan(options, io);
    });
}
