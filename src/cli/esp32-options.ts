import type { Command } from "commander";
import { UsageError } from "../errors.ts";
import { chipNames, parseChipName } from "../firmware/esp32-chips.ts";
import { ESP32_OTA_LAYOUT } from "../firmware/esp32-layout.ts";
import { sizeText } from "../firmware/format.ts";

/** The ESP32 slots are 4 KiB-aligned partitions inside at most 16 MiB of flash. */
const MAX_SLOT_SIZE = 16 * 1024 * 1024;

/** Parses `--slot-size`: bytes, or 0x hex, or with K/M (1536K). */
export function parseSlotSize(value: string): number {
  const m = /^(?:0x([0-9a-f]+)|(\d+)\s*([km]?))$/i.exec(value.trim());
  const n = !m
    ? Number.NaN
    : m[1] !== undefined
      ? Number.parseInt(m[1], 16)
      : Number(m[2]) * (m[3]?.toLowerCase() === "k" ? 1024 : m[3]?.toLowerCase() === "m" ? 1024 * 1024 : 1);
  if (!Number.isSafeInteger(n) || n < 4096 || n > MAX_SLOT_SIZE || n % 4096 !== 0) {
    throw new UsageError(
      `--slot-size must be the app partition's size from the partition table, a multiple of 4096 up to 16M (0x180000, 1536K), not "${value}".`,
    );
  }
  return n;
}

/** `--chip` and `--slot-size`, for the commands that judge an image for a device (inspect, check). */
export function addChipOptions(command: Command): Command {
  return command
    .option(
      "--chip <chip>",
      `the device's chip: ${chipNames().join(", ")} (an image for another chip is refused)`,
      parseChipName,
    )
    .option(
      "--slot-size <size>",
      `ESP32: the app slot's size (default ${sizeText(ESP32_OTA_LAYOUT.slots[0].size)}, the OTA variant's ota_0/ota_1)`,
      parseSlotSize,
    );
}
