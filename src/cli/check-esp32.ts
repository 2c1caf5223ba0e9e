import { isEsp32AppImage } from "../firmware/esp32-app-image.ts";
import type { ChipChoice } from "../firmware/esp32-chips.ts";
import { findMergedFirmware } from "../firmware/esp32-merged-firmware.ts";
import { type Esp32PreflightResult, preflightEsp32 } from "../firmware/esp32-preflight.ts";
import { sizeText } from "../firmware/format.ts";
import { PreflightError, refusalMessage } from "../firmware/preflight.ts";
import type { CliIo } from "./io.ts";

/** The `check --json` document for an ESP32 image. */
export interface Esp32CheckReport extends Esp32PreflightResult {
  format: "mpota-check/1";
  file: string;
  force: boolean;
}

const LEVEL_WORD = { ok: "ok", warning: "warning", refusal: "REFUSED" } as const;

/** Whether `check` judges the file as an ESP32 image: the chip asked for, or the file's own look. */
export function isEsp32Check(bytes: Uint8Array, chip: ChipChoice | undefined): boolean {
  if (chip !== undefined && chip !== "esp8266") return true;
  return isEsp32AppImage(bytes) || findMergedFirmware(bytes) !== null;
}

export function renderEsp32CheckReport(report: Esp32CheckReport, chip: ChipChoice | undefined): string {
  const device =
    chip === undefined ? "an ESP32-family chip" : chip === "esp8266" ? "an ESP8266" : `an ${chip.label}`;
  const head = `${report.file} for ${device}, app slot ${sizeText(report.slot.size)}, ${report.slot.layout}: ${report.ok ? "OK" : "REFUSED"}`;
  const identity = report.identity
    ? `\nidentity ${report.identity} (ELF SHA-256)${report.micropython ? `, MicroPython ${report.micropython}` : ""}${report.idfVersion ? `, ESP-IDF ${report.idfVersion}` : ""}`
    : "";
  const lines: string[] = [];
  for (const v of report.verdicts) {
    lines.push(`  ${LEVEL_WORD[v.level].padEnd(8)} ${v.check.padEnd(14)} ${v.message}`);
    if (v.fix && v.level !== "ok") lines.push(`  ${"".padEnd(8)} ${"".padEnd(14)} fix: ${v.fix}`);
  }
  return `${head}${identity}\n\n${lines.join("\n")}\n`;
}

/** `mpota check` for an ESP32 image: prints the verdicts, throws PreflightError when refused. */
export function runEsp32Check(
  file: string,
  bytes: Uint8Array,
  options: { chip?: ChipChoice; slotSize?: number; force?: boolean; json?: boolean },
  io: CliIo,
): Esp32CheckReport {
  const result = preflightEsp32(bytes, { chip: options.chip, slotSize: options.slotSize, source: file });
  const report: Esp32CheckReport = {
    format: "mpota-check/1",
    file,
    force: options.force === true,
    ...result,
  };
  io.out(
    options.json ? `${JSON.stringify(report, null, 2)}\n` : renderEsp32CheckReport(report, options.chip),
  );
  if (!result.ok) throw new PreflightError(refusalMessage(result, file), result);
  return report;
}
