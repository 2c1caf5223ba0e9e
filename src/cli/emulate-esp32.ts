// `mpota emulate --chip esp32`: one emulated ESP32 (MicroPython's OTA variant) whose app is the real agent.
import { DEFAULT_DATA_DIR } from "../server/server-options.ts";
import { DEFAULT_SYNTHETIC_SIZE } from "../simulator/synthetic-firmware.ts";
import type { EmulateCommandOptions, EmulateDeps } from "./emulate-options.ts";
import type { CliIo } from "./io.ts";
import { simulateCommand } from "./simulate.ts";
import { DEFAULT_SIMULATOR_BROKER } from "./simulate-options.ts";

/**
 * An ESP32 pulls its updates over MQTT and HTTP instead of listening on UDP
 * as yaota8266 does, so it needs a broker and its agent: it is `mpota
 * simulate --devices 1 --esp32 1` (provisioned through the server's data
 * directory, board model with both slots, otadata, set_boot's check, the
 * rollback and the deep-sleep trap), run until a signal stops it.
 */
export async function emulateEsp32(
  options: EmulateCommandOptions,
  io: CliIo,
  deps: EmulateDeps,
): Promise<void> {
  await simulateCommand(
    {
      devices: 1,
      esp32: 1,
      ...(options.firmware !== undefined ? { esp32Firmware: options.firmware } : {}),
      sleep: options.sleep ?? 0,
      sleepyShare: 1,
      awakeMs: 0,
      link: "none",
      mqtt: options.mqtt ?? DEFAULT_SIMULATOR_BROKER,
      ...(options.mqttUsername !== undefined ? { mqttUsername: options.mqttUsername } : {}),
      ...(options.mqttPassword !== undefined ? { mqttPassword: options.mqttPassword } : {}),
      data: options.data ?? DEFAULT_DATA_DIR,
      provision: options.provision !== false,
      firmwareSize: DEFAULT_SYNTHETIC_SIZE,
      seed: options.seed,
      base: "mpota",
      idPrefix: options.id ?? "esp32",
      firstAddress: options.bind,
      staggerMs: 0,
      ...(options.json ? { json: true } : {}),
    },
    io,
    deps.stop ? { stop: deps.stop } : {},
  );
}
