import { type Esp32AppImage, parseEsp32AppImage } from "./esp32-app-image.ts";
import type { ChipChoice } from "./esp32-chips.ts";
import { type MergedFirmware, mergedFirmwareMessage } from "./esp32-merged-firmware.ts";
import { type Esp32PreflightResult, esp32Slot, preflightEsp32 } from "./esp32-preflight.ts";
import { sizeText } from "./format.ts";

/** What `inspect` says about an ESP32 file (the report's `esp32` field). */
export interface Esp32Inspection {
  /** The app image, null for a merged firmware.bin or an image that cannot be read. */
  image: Esp32AppImage | null;
  /** Set when the file is a merged firmware.bin (bootloader + partition table + app). */
  merged: MergedFirmware | null;
  /** The slot the image was measured against. */
  slot: Esp32PreflightResult["slot"];
}

export interface Esp32InspectOptions {
  file: string;
  chip?: ChipChoice;
  slotSize?: number;
}

export interface Esp32InspectOutcome {
  esp32: Esp32Inspection;
  summary: string;
  errors: string[];
  warnings: string[];
  notes: string[];
}

/** Explains a merged firmware.bin: what it is, and the file an OTA slot takes instead. */
export function inspectMergedEsp32(
  merged: MergedFirmware,
  fileSize: number,
  options: Esp32InspectOptions,
): Esp32InspectOutcome {
  return {
    esp32: { image: null, merged, slot: esp32Slot(options.slotSize, fileSize) },
    summary: `merged ESP32-family firmware.bin${merged.appChip ? ` for ${merged.appChip}` : ""} (bootloader + partition table + app), for the first flash over serial, not for an OTA slot`,
    errors: [mergedFirmwareMessage(merged, options.file)],
    warnings: [],
    notes: [],
  };
}

/**
 * Explains an ESP-IDF app image: the preflight's refusals become the
 * report's errors, its warnings its warnings. Pure.
 */
export function inspectEsp32App(bytes: Uint8Array, options: Esp32InspectOptions): Esp32InspectOutcome {
  const checks = preflightEsp32(bytes, {
    chip: options.chip,
    slotSize: options.slotSize,
    source: options.file,
  });
  const errors = checks.verdicts
    .filter((v) => v.level === "refusal")
    .map((v) => (v.fix ? `${v.message} ${v.fix}` : v.message));
  const warnings = checks.verdicts
    .filter((v) => v.level === "warning")
    .map((v) => (v.fix ? `${v.message} ${v.fix}` : v.message));
  let image: Esp32AppImage | null = null;
  try {
    image = parseEsp32AppImage(bytes, options.file);
  } catch {
    // The preflight above said why (its file-kind refusal is in errors).
  }
  const notes =
    options.chip === undefined
      ? ["Give --chip (esp32, esp32s3 ...) to check the image against the device's chip."]
      : [];
  const integrity =
    image === null
      ? "unreadable"
      : image.checksum.ok && image.hash.ok !== false
        ? `checksum${image.hash.ok ? " and SHA-256" : ""} ok`
        : "DAMAGED (checksum or SHA-256 mismatch)";
  const idf = image?.appDescription ? `, ESP-IDF ${image.appDescription.idfVersion || "(not named)"}` : "";
  return {
    esp32: { image, merged: null, slot: checks.slot },
    summary: `${checks.micropython ? `MicroPython ${checks.micropython}, ` : ""}${image?.chip.label ?? "ESP32"} app image${idf}, ${sizeText(bytes.length)}, ${integrity}`,
    errors,
    warnings,
    notes,
  };
}
