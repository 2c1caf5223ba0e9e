import type { Command } from "commander";
import { UsageError } from "../errors.ts";
import { findBoard } from "../firmware/boards.ts";
import type { ChipChoice } from "../firmware/esp32-chips.ts";
import { flashSizeText } from "../firmware/flash-layout.ts";
import { hex, sizeText } from "../firmware/format.ts";
import { readImageFileSync } from "../firmware/image-file.ts";
import { PreflightError, type PreflightResult, preflight, refusalMessage } from "../firmware/preflight.ts";
import { DEFAULT_MAIN_APP_OFFSET } from "../protocol/config-h.ts";
import { type Esp32CheckReport, isEsp32Check, runEsp32Check } from "./check-esp32.ts";
import { addChipOptions } from "./esp32-options.ts";
import { type CliIo, processIo } from "./io.ts";
import { parseFlashSize, parseIntegerOption } from "./key-options.ts";

/** Identifies the JSON shape `mpota check --json` prints; bumped only on incompatible changes. */
export const CHECK_FORMAT = "mpota-check/1";

export interface CheckCommandOptions {
  flashSize?: number;
  board?: string;
  appOffset?: number;
  chip?: ChipChoice;
  slotSize?: number;
  force?: boolean;
  json?: boolean;
}

/** The `check --json` document: the preflight result inside a small envelope. */
export interface CheckReport extends PreflightResult {
  format: typeof CHECK_FORMAT;
  file: string;
  force: boolean;
}

const LEVEL_WORD = { ok: "ok", warning: "warning", refusal: "REFUSED" } as const;

export interface FlashRegion {
  start: number;
  end: number;
  content: string;
}

/** The flash regions of a checked image, from 0 to the end of flash. */
export function layoutRegions(result: PreflightResult): FlashRegion[] {
  const l = result.layout;
  const fits = l.appEnd <= l.usableEnd;
  const regions: FlashRegion[] = [
    { start: 0, end: l.appOffset, content: "yaota8266 (boot8266 + ota-server)" },
    {
      start: l.appOffset,
      end: l.appEnd,
      // sizeText ends in its own parenthesis ("589,872 bytes (576.0 KiB)"): the warning follows a colon.
      content: `app, ${sizeText(result.imageSize)}${fits ? "" : l.appEnd > l.flashSize ? ": past the end of the flash!" : ": over the SDK's sectors!"}`,
    },
  ];
  if (l.firmwareRoom > 0) {
    regions.push({
      start: l.appEnd,
      end: l.appEnd + l.firmwareRoom,
      content: `free for larger builds, ${sizeText(l.firmwareRoom)}`,
    });
  }
  if (l.filesystemSize > 0) {
    regions.push({
      start: l.appRegionEnd,
      end: l.filesystemStart,
      content: "kept by MicroPython for native code",
    });
    regions.push({
      start: l.filesystemStart,
      end: l.usableEnd,
      content: `filesystem, ${sizeText(l.filesystemSize)}`,
    });
  } else if (fits && l.appEnd + l.firmwareRoom < l.usableEnd) {
    regions.push({ start: l.appEnd + l.firmwareRoom, end: l.usableEnd, content: "unused (no filesystem)" });
  }
  regions.push({
    start: l.usableEnd,
    end: l.flashSize,
    content: "SDK: RF calibration, PHY init data, system parameters",
  });
  return regions;
}

export function regionLines(regions: FlashRegion[]): string {
  return regions.map((r) => `  ${hex(r.start, 6)}-${hex(r.end, 6)}  ${r.content}`).join("\n");
}

export function renderCheckReport(report: CheckReport): string {
  const state = report.ok ? (report.forced ? "OK (forced)" : "OK") : "REFUSED";
  const head = `${report.file} on ${flashSizeText(report.layout.flashSize)} flash, MAIN_APP_OFFSET ${hex(report.layout.appOffset)}: ${state}`;
  const lines: string[] = [];
  for (const v of report.verdicts) {
    const word = v.forced ? "FORCED" : LEVEL_WORD[v.level];
    lines.push(`  ${word.padEnd(8)} ${v.check.padEnd(14)} ${v.message}`);
    if (v.fix && v.level !== "ok") lines.push(`  ${"".padEnd(8)} ${"".padEnd(14)} fix: ${v.fix}`);
  }
  const identity = report.identity
    ? `\nidentity ${report.identity}${report.version ? `, MicroPython ${report.version}` : ""}`
    : "";
  const layout = report.verdicts.some((v) => v.check === "flash-size" || v.check === "sdk-sectors")
    ? `\nflash layout\n${regionLines(layoutRegions(report))}\n`
    : "";
  return `${head}${identity}\n\n${lines.join("\n")}\n${layout}`;
}

function resolveFlashSize(options: CheckCommandOptions): number {
  if (options.flashSize !== undefined) return options.flashSize;
  if (options.board !== undefined) return findBoard(options.board).flashSize;
  throw new UsageError(
    "Give the device's flash size with --flash-size (512K, 1M, 4M ...) or a --board profile.",
  );
}

/** `mpota check`: prints the verdicts and throws PreflightError when the image is refused. */
export async function runCheck(
  file: string,
  options: CheckCommandOptions,
  io: CliIo = processIo,
): Promise<CheckReport | Esp32CheckReport> {
  const bytes = new Uint8Array(readImageFileSync(file, "Firmware file"));
  if (isEsp32Check(bytes, options.chip)) return runEsp32Check(file, bytes, options, io);
  if (options.slotSize !== undefined) {
    throw new UsageError(
      "--slot-size is for ESP32 images; for an ESP8266 give --flash-size (and --app-offset).",
    );
  }
  const flashSize = resolveFlashSize(options);
  const result = preflight(bytes, {
    flashSize,
    mainAppOffset: options.appOffset,
    force: options.force === true,
    source: file,
  });
  const report: CheckReport = { format: CHECK_FORMAT, file, force: options.force === true, ...result };
  io.out(options.json ? `${JSON.stringify(report, null, 2)}\n` : renderCheckReport(report));
  if (!result.ok) throw new PreflightError(refusalMessage(result, file), result);
  return report;
}

export function registerCheckCommand(program: Command, io: CliIo = processIo): Command {
  const command = program
    .command("check")
    .description("Preflight a firmware image (or .ota file) for a device: the checks sign and push make")
    .argument("<file>", "firmware-ota.bin, a canned .ota file, or an ESP32 micropython.bin")
    .option("--flash-size <size>", "the device's flash size: 512K, 1M, 2M, 4M ...", parseFlashSize)
    .option("--board <name>", "take the flash size from a board profile (see `mpota flash-plan --help`)")
    .option(
      "--app-offset <offset>",
      "MAIN_APP_OFFSET of the device's yaota8266",
      parseIntegerOption("--app-offset"),
      DEFAULT_MAIN_APP_OFFSET,
    );
  return addChipOptions(command)
    .option(
      "--force",
      "override the refusals that may be overridden (never a corrupt file or one that does not fit)",
    )
    .option("--json", "print the verdicts as JSON (shape: docs/inspect.md)")
    .addHelpText(
      "after",
      `
Refuses, with the cause and the fix:
  - a file that is not a MicroPython image, or whose MD5 trailer is wrong
    (boot8266 would never start it);
  - a size word above 800000 (boot8266's limit);
  - a normal (non-OTA) build, which crashes with "Fatal exception (0)";
  - an OTA build linked for another MAIN_APP_OFFSET;
  - an image that does not fit between MAIN_APP_OFFSET and the filesystem,
    or would reach the SDK's last 20 KiB of flash;
and reports the room left for the filesystem.
An ESP32 app image (micropython.bin, the .app-bin), or any file with
--chip esp32/esp32s3/..., is checked for the other OTA slot instead: refused
when it is a merged firmware.bin, built for another chip than --chip, damaged
(checksum, appended SHA-256), without an app description, or larger than
the slot (1.5 MiB in the OTA variant; --slot-size for another layout).
Exits 0 when the image may go, 10 when it is refused.

Examples:
  mpota check firmware-ota.bin --flash-size 1M
  mpota check update.ota --board sonoff-basic --json
  mpota check micropython.bin --chip esp32`,
    )
    .action(async (file: string, options: CheckCommandOptions) => {
      await runCheck(file, options, io);
    });
}
