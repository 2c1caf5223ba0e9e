import type { Command } from "commander";
import { DEFAULT_FLASH_SIZE } from "../firmware/flash-layout.ts";
import { readImageFileSync } from "../firmware/image-file.ts";
import { assertPreflight, type PreflightResult } from "../firmware/preflight.ts";
import type { CliIo } from "./io.ts";
import { parseFlashSize, parseIntegerOption } from "./key-options.ts";

export interface PreflightCliOptions {
  flashSize?: number;
  appOffset?: number;
  force?: boolean;
  /** commander's --no-preflight sets this to false. */
  preflight?: boolean;
}

/** Adds the options every command that checks firmware before sending or signing it shares. */
export function addPreflightOptions(command: Command): Command {
  return command
    .option(
      "--flash-size <size>",
      "the device's flash size for the fit check: 512K, 1M (default), 2M, 4M ...",
      parseFlashSize,
    )
    .option(
      "--app-offset <offset>",
      "MAIN_APP_OFFSET of the device's yaota8266 (default 0x3c000)",
      parseIntegerOption("--app-offset"),
    )
    .option("--no-preflight", "skip the firmware checks (for payloads that are not MicroPython builds)");
}

/**
 * Checks a firmware image or canned .ota before it is signed or sent: an
 * OTA build, an intact MD5 trailer, a fit in the device's flash. Refusals
 * throw PreflightError (what is wrong and what to do); warnings and refusals
 * that --force overrode are printed.
 */
export async function preflightFile(
  path: string,
  options: PreflightCliOptions,
  io: CliIo,
): Promise<PreflightResult | undefined> {
  if (options.preflight === false) {
    io.err("firmware checks skipped (--no-preflight)\n");
    return undefined;
  }
  const bytes = new Uint8Array(readImageFileSync(path));
  const result = assertPreflight(bytes, {
    flashSize: options.flashSize ?? DEFAULT_FLASH_SIZE,
    ...(options.appOffset !== undefined ? { mainAppOffset: options.appOffset } : {}),
    force: options.force === true,
    source: path,
  });
  for (const v of result.verdicts) {
    if (v.level === "warning") io.err(`warning: ${v.message}\n`);
    if (v.forced) io.err(`forced past a refusal: ${v.message}\n`);
  }
  return result;
}
