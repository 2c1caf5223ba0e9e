import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { FileError } from "../errors.ts";
import type { BoardChip } from "./worker-protocol.ts";

/** The project's device/ folder: the agent a user copies to the board. */
export const DEVICE_DIR = fileURLToPath(new URL("../../device/", import.meta.url));

/** Agent files as they go on the board (path on the device -> path under device/). */
export const AGENT_FILES = ["mpota_agent.py", "mpota_cmd.py", "ota.py", "lib/umqtt/simple.py"] as const;

/**
 * The ESP32's: the pull instead of yaota8266's ota.py. umqtt.simple is frozen
 * into every ESP32 build; the simulated board has no frozen modules, so it
 * gets the file.
 */
export const ESP32_AGENT_FILES = [
  "mpota_agent.py",
  "mpota_cmd.py",
  "mpota_pull.py",
  "lib/umqtt/simple.py",
] as const;

/** A Pico W's (rp2): no firmware updater at all; mpota updates its app only. */
export const RP2_AGENT_FILES = [
  "mpota_agent.py",
  "mpota_cmd.py",
  "mpota_rp2.py",
  "lib/umqtt/simple.py",
] as const;

/**
 * A board that runs an app (docs/app-updates.md) also holds the loader, which
 * never changes, and the modules of an app update, which the agent imports
 * only while one runs.
 */
export const APP_FILES = [
  "mpota_loader.py",
  "mpota_app.py",
  "mpota_stage.py",
  "mpota_appget.py",
  "mpota_appjob.py",
  "mpota_http.py",
] as const;

/**
 * The update boot's (docs/app-updates.md "The update boot"): only a board
 * with APP_UPDATE_BOOT on loads it, by default an ESP8266; the ESP32 and the
 * Pico W update in place (device/README.md copies it to an ESP8266 only).
 */
export const UPDATE_BOOT_FILES = ["mpota_appboot.py"] as const;

/** The example main.py files under device/examples/. */
export const EXAMPLE_MAINS = {
  sleepy: "examples/sleepy_main.py",
  alwaysOn: "examples/always_on_main.py",
  /** The loader, then the agent (sleepy or always on by SLEEP). */
  app: "examples/app_main.py",
} as const;

export function readDeviceFile(path: string, dir: string = DEVICE_DIR): string {
  try {
    return readFileSync(join(dir, path), "utf8");
  } catch (error) {
    throw new FileError(
      `Cannot read the device agent file ${join(dir, path)} (${(error as Error).message}); the mpota package is incomplete: reinstall it.`,
      { cause: error },
    );
  }
}

/**
 * The unmodified agent files, keyed by their path on the device; with `apps`,
 * the app loader and updater too, and with `updateBoot` (default: on an
 * ESP8266) the update boot.
 */
export function readAgentFiles(
  dir: string = DEVICE_DIR,
  chip: BoardChip = "esp8266",
  apps = false,
  updateBoot = chip === "esp8266",
): Record<string, string> {
  const files: Record<string, string> = {};
  for (const path of chip === "esp32" ? ESP32_AGENT_FILES : chip === "rp2" ? RP2_AGENT_FILES : AGENT_FILES)
    files[path] = readDeviceFile(path, dir);
  if (apps) for (const path of APP_FILES) files[path] = readDeviceFile(path, dir);
  if (apps && updateBoot) for (const path of UPDATE_BOOT_FILES) files[path] = readDeviceFile(path, dir);
  return files;
}

export type PythonValue = string | number | boolean | null | readonly PythonValue[];

/** A Python literal for a config value (a list becomes a tuple). */
export function pythonLiteral(value: PythonValue): string {
  if (value === null) return "None";
  if (Array.isArray(value)) {
    const items = value.map((v: PythonValue) => pythonLiteral(v));
    return items.length === 1 ? `(${items[0]},)` : `(${items.join(", ")})`;
  }
  if (typeof value === "boolean") return value ? "True" : "False";
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new RangeError(`config value ${value} has no Python literal`);
    return String(value);
  }
  return JSON.stringify(value);
}

/** mpota_config.py with these settings, one `NAME = literal` line each. */
export function renderConfig(values: Record<string, PythonValue>): string {
  const lines = ["# mpota_config.py written by the mpota agent host"];
  for (const [name, value] of Object.entries(values)) {
    if (!/^[A-Z][A-Z0-9_]*$/.test(name))
      throw new RangeError(`config name ${name} is not an UPPER_CASE identifier`);
    lines.push(`${name} = ${pythonLiteral(value)}`);
  }
  return `${lines.join("\n")}\n`;
}
