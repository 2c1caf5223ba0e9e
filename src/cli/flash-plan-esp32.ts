import { Esp32ImageError, isEsp32AppImage } from "../firmware/esp32-app-image.ts";
import { type Esp32Chip, esp32ChipById } from "../firmware/esp32-chips.ts";
import {
  FIRST_APP_OFFSET,
  findMergedFirmware,
  PARTITION_TABLE_OFFSET,
} from "../firmware/esp32-merged-firmware.ts";
import {
  PARTITION_TABLE_LENGTH,
  type PartitionTableEntry,
  parsePartitionTable,
  partitionKind,
} from "../firmware/esp32-partition-table-file.ts";
import { type Esp32PreflightResult, preflightEsp32 } from "../firmware/esp32-preflight.ts";
import { hex, sizeBrief, sizeText } from "../firmware/format.ts";
import { FlashPlanError } from "../firmware/full-flash.ts";
import { readImageFileSync } from "../firmware/image-file.ts";
import { PreflightError, refusalMessage } from "../firmware/preflight.ts";
import type { CliIo } from "./io.ts";

/** Identifies the JSON shape `mpota flash-plan --chip esp32 --json` prints. */
export const ESP32_FLASH_PLAN_FORMAT = "mpota-flash-plan-esp32/1";

const OTA_VARIANT_FIX =
  "Flash the ESP32_GENERIC OTA variant (ESP32_GENERIC-OTA-<version>.bin on micropython.org, or BOARD_VARIANT=OTA), whose table has otadata, ota_0 and ota_1.";

/** The `flash-plan --chip esp32 --json` document. */
export interface Esp32FlashPlan {
  format: typeof ESP32_FLASH_PLAN_FORMAT;
  chip: string;
  firmware: { file: string; size: number; writeOffset: number };
  bootloaderOffset: number;
  partitionTable: {
    md5: "ok" | "absent";
    ota: boolean;
    entries: (PartitionTableEntry & { kind: string; holds: string | null })[];
  };
  app: Esp32PreflightResult;
  commands: { erase: string; write: string };
  warnings: string[];
}

/** Where ESP-IDF's second-stage bootloader sits: 0x1000 on the ESP32 and S2, 0x0 on the S3, C3 and later. */
export function bootloaderOffsetOf(chip: Esp32Chip): number {
  return chip.name === "esp32" || chip.name === "esp32s2" ? 0x1000 : 0x0;
}

function render(plan: Esp32FlashPlan): string {
  const out: string[] = [];
  const p = plan.partitionTable;
  out.push(
    `${plan.firmware.file}: merged firmware for ${plan.app.chip}, written at ${hex(plan.firmware.writeOffset)}; ${p.ota ? "OTA layout (otadata, ota_0, ota_1)" : "no OTA layout"}; partition table MD5 ${p.md5 === "ok" ? "matches" : "absent"}`,
  );
  out.push("");
  out.push("flash layout");
  const line = (start: number, size: number, what: string) =>
    `  ${hex(start, 6)}-${hex(start + size, 6)}  ${what}`;
  out.push(line(plan.bootloaderOffset, PARTITION_TABLE_OFFSET - plan.bootloaderOffset, "bootloader"));
  out.push(line(PARTITION_TABLE_OFFSET, PARTITION_TABLE_LENGTH, "partition table"));
  for (const e of p.entries)
    out.push(
      line(e.offset, e.size, `${e.label} (${e.kind}, ${sizeBrief(e.size)})${e.holds ? `: ${e.holds}` : ""}`),
    );
  out.push("");
  const a = plan.app;
  out.push(
    `app at ${hex(FIRST_APP_OFFSET)}: identity ${a.identity ?? "none"}${a.micropython ? `, MicroPython ${a.micropython}` : ""}${a.idfVersion ? `, ESP-IDF ${a.idfVersion}` : ""}`,
  );
  for (const v of a.verdicts) out.push(`  ${v.level.padEnd(8)} ${v.check.padEnd(14)} ${v.message}`);
  out.push("");
  out.push("First erase the chip (old filesystem, NVS and otadata go):");
  out.push(`  ${plan.commands.erase}`);
  out.push("then write the firmware:");
  out.push(`  ${plan.commands.write}`);
  out.push("");
  out.push(
    "Later updates over the air take only the app: micropython.bin from the same build (the .app-bin file on micropython.org), never this file.",
  );
  for (const w of plan.warnings) out.push(`warning: ${w}`);
  return `${out.join("\n")}\n`;
}

/**
 * `mpota flash-plan --chip esp32`: checks a merged firmware.bin (bootloader,
 * partition table, app) for the first serial flash and prints the layout
 * and the esptool commands. Refuses files that could not later be updated
 * over the air.
 */
export function runEsp32FlashPlan(
  options: { firmware: string; chip: Esp32Chip; port: string; baud: number; json?: boolean },
  io: CliIo,
): Esp32FlashPlan {
  const file = options.firmware;
  const chip = options.chip;
  const bytes = new Uint8Array(readImageFileSync(file, "Firmware file"));
  const merged = findMergedFirmware(bytes);
  if (!merged) {
    const appOnly = isEsp32AppImage(bytes);
    throw new Esp32ImageError(
      appOnly
        ? `${file} is an app image only (micropython.bin, the .app-bin file): that is what later updates over the air take. The first flash needs the merged firmware.bin (bootloader, partition table and app) of the same build: ESP32_GENERIC-OTA-<version>.bin on micropython.org.`
        : `${file} is not a merged ESP32 firmware.bin (bootloader at 0x1000 or 0x0, partition table at 0x8000, app at 0x10000). Use ESP32_GENERIC-OTA-<version>.bin from micropython.org, or firmware.bin from an OTA build.`,
    );
  }
  // findMergedFirmware tries a file starting at flash 0x0 first, then one starting at the bootloader (makeimg.py).
  const fileStart =
    bytes[PARTITION_TABLE_OFFSET] === 0xaa && bytes[PARTITION_TABLE_OFFSET + 1] === 0x50 ? 0 : 0x1000;
  const appChip = esp32ChipById(
    (bytes[FIRST_APP_OFFSET - fileStart + 12] as number) |
      ((bytes[FIRST_APP_OFFSET - fileStart + 13] as number) << 8),
  );
  const wantedBoot = bootloaderOffsetOf(chip);
  if (appChip.id !== chip.id || merged.bootloaderOffset !== wantedBoot) {
    throw new FlashPlanError(
      `${file} is built for ${appChip.label} (its bootloader sits at ${hex(merged.bootloaderOffset)}), but --chip says ${chip.label}, whose bootloader belongs at ${hex(wantedBoot)}: the chip would not boot it. Download the firmware for ${chip.label} (the board's page on micropython.org), or give the right --chip.`,
    );
  }
  const table = parsePartitionTable(
    bytes.subarray(
      PARTITION_TABLE_OFFSET - fileStart,
      PARTITION_TABLE_OFFSET - fileStart + PARTITION_TABLE_LENGTH,
    ),
    file,
  );
  if (!table.ota) {
    const apps = table.entries.filter((e) => e.type === 0).map((e) => `${e.label} at ${hex(e.offset)}`);
    throw new FlashPlanError(
      `${file} has no OTA layout: its partition table has ${apps.length > 0 ? `the app partition${apps.length > 1 ? "s" : ""} ${apps.join(", ")}` : "no app partition"} but not otadata and two OTA slots (ota_0, ota_1), so a board flashed with it cannot be updated over the air. ${OTA_VARIANT_FIX}`,
    );
  }
  const [ota0] = table.ota.slots as [PartitionTableEntry];
  if (ota0.offset !== FIRST_APP_OFFSET) {
    throw new FlashPlanError(
      `${file}'s partition table puts ota_0 at ${hex(ota0.offset)}, but the file's app sits at ${hex(FIRST_APP_OFFSET)}: the bootloader would find no app. ${OTA_VARIANT_FIX}`,
    );
  }
  const app = bytes.subarray(FIRST_APP_OFFSET - fileStart);
  const source = `${file}'s app at ${hex(FIRST_APP_OFFSET)}`;
  const result = preflightEsp32(app, { chip, slotSize: ota0.size, source });
  if (!result.ok) throw new PreflightError(refusalMessage(result, source), result);

  const end = (e: PartitionTableEntry) => e.offset + e.size;
  const warnings = result.verdicts.filter((v) => v.level === "warning").map((v) => v.message);
  const overlaps = table.entries.filter((e, i) =>
    table.entries.some((o, j) => j !== i && e.offset < end(o) && o.offset < end(e)),
  );
  if (overlaps.length > 0) warnings.push(`partitions ${overlaps.map((e) => e.label).join(", ")} overlap.`);
  const holds = (e: PartitionTableEntry): string | null => {
    if (e === ota0) return `this firmware's app, ${sizeText(app.length)}, booted first`;
    if (table.ota?.slots.includes(e)) return "empty (erased); the first update goes here";
    if (e === table.ota?.otadata) return "erased: the bootloader starts ota_0";
    return null;
  };
  const base = `esptool.py --chip ${chip.name} --port ${options.port}`;
  const plan: Esp32FlashPlan = {
    format: ESP32_FLASH_PLAN_FORMAT,
    chip: chip.name,
    firmware: { file, size: bytes.length, writeOffset: fileStart },
    bootloaderOffset: merged.bootloaderOffset,
    partitionTable: {
      md5: table.md5,
      ota: true,
      entries: table.entries.map((e) => ({ ...e, kind: partitionKind(e), holds: holds(e) })),
    },
    app: result,
    commands: {
      erase: `${base} erase_flash`,
      write: `${base} --baud ${options.baud} write_flash ${hex(fileStart)} ${file}`,
    },
    warnings,
  };
  io.out(options.json ? `${JSON.stringify(plan, null, 2)}\n` : render(plan));
  return plan;
}
