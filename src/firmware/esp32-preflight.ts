import { ESP_IMAGE_V1_MAGIC } from "./esp-image.ts";
import {
  type Esp32AppImage,
  Esp32ImageError,
  isEsp32AppImage,
  parseEsp32AppImage,
} from "./esp32-app-image.ts";
import { type ChipChoice, ESP8266_CHIP_NAME } from "./esp32-chips.ts";
import { ESP32_OTA_LAYOUT } from "./esp32-layout.ts";
import { findMergedFirmware } from "./esp32-merged-firmware.ts";
import { hex, sizeText } from "./format.ts";
import { findMicroPythonVersion } from "./micropython-version.ts";
import type { Verdict } from "./preflight.ts";

/** Stable names of the ESP32 checks (the `check` field of a verdict). */
export type Esp32CheckId =
  | "file-kind"
  | "chip"
  | "segments"
  | "checksum"
  | "sha256"
  | "app-desc"
  | "slot-size"
  | "trailing-bytes";

export interface Esp32Verdict extends Omit<Verdict, "check"> {
  check: Esp32CheckId;
}

export interface Esp32PreflightOptions {
  /** The device's chip; without it the image's own chip is reported, not judged. */
  chip?: ChipChoice;
  /** The app slot's size in bytes (default: the OTA variant's 0x180000). */
  slotSize?: number;
  /** The file's name, for messages. */
  source?: string;
}

/** The outcome of {@link preflightEsp32}: plain data (the `check --json` shape, without its envelope). */
export interface Esp32PreflightResult {
  ok: boolean;
  /** Always false: no ESP32 refusal may be overridden (each one means the bootloader would not run it). */
  forced: false;
  input: "esp32-app";
  /** The file's length (what is written to the slot). */
  imageSize: number;
  /** The chip the image is built for ("ESP32-S3"), null when unreadable. */
  chip: string | null;
  /** The app description's ELF SHA-256: what the device reads from its running slot. */
  identity: string | null;
  idfVersion: string | null;
  /** The MicroPython release the banner string names ("v1.27.0"), when the image holds one. */
  micropython: string | null;
  slot: { layout: string; size: number; room: number };
  verdicts: Esp32Verdict[];
}

const APP_BIN_FIX = "Use micropython.bin from the build (published on micropython.org as the .app-bin file).";

function chipVerdict(image: Esp32AppImage, options: Esp32PreflightOptions, source: string) {
  const built = image.chip.label;
  if (!image.chip.known) {
    return {
      level: "refusal" as const,
      message: `${source} is built for ${built}, not a chip of the ESP32 family mpota knows.`,
      fix: "Build MicroPython for your board's chip (esp32, esp32s2, esp32s3, esp32c3 ...).",
    };
  }
  const wanted = options.chip;
  if (wanted === undefined) {
    return {
      level: "ok" as const,
      message: `built for ${built} (revisions ${image.minChipRevision} to ${image.maxChipRevision}); give --chip to check it against the device.`,
      fix: null,
    };
  }
  if (wanted === ESP8266_CHIP_NAME || wanted.id !== image.chip.id) {
    const device = wanted === ESP8266_CHIP_NAME ? "ESP8266" : wanted.label;
    return {
      level: "refusal" as const,
      message: `${source} is built for ${built}, but the device is an ${device}: its bootloader would refuse the image (set_boot() raises OSError(-5379)).`,
      fix: `Use the ${device} build of MicroPython.`,
    };
  }
  return {
    level: "ok" as const,
    message: `built for ${built} (revisions ${image.minChipRevision} to ${image.maxChipRevision}), the device's chip.`,
    fix: null,
  };
}

/** The app slot an image is measured against: the OTA variant's, or one of `slotSize` bytes. */
export function esp32Slot(slotSize: number | undefined, imageSize: number): Esp32PreflightResult["slot"] {
  const size = slotSize ?? ESP32_OTA_LAYOUT.slots[0].size;
  const layout =
    slotSize === undefined ? "ota_0/ota_1 of MicroPython's ESP32_GENERIC OTA variant" : "the size given";
  return { layout, size, room: size - imageSize };
}

/**
 * Decides whether a file may be written to an ESP32's other app slot and
 * booted: the checks ESP-IDF's bootloader and `set_boot()` make (chip id,
 * segments, checksum, appended SHA-256, size against the slot) and the app
 * description devices read their identity from. Pure; never throws for
 * bad bytes (a file that cannot be read is a `file-kind` refusal).
 */
export function preflightEsp32(bytes: Uint8Array, options: Esp32PreflightOptions = {}): Esp32PreflightResult {
  const source = options.source ?? "The image";
  const slot = esp32Slot(options.slotSize, bytes.length);
  const { size: slotSize, layout } = slot;
  const verdicts: Esp32Verdict[] = [];
  const add = (check: Esp32CheckId, level: Verdict["level"], message: string, fix: string | null) =>
    verdicts.push({ check, level, forceable: false, forced: false, message, fix });
  const finish = (image: Esp32AppImage | null): Esp32PreflightResult => ({
    ok: !verdicts.some((v) => v.level === "refusal"),
    forced: false,
    input: "esp32-app",
    imageSize: bytes.length,
    chip: image?.chip.label ?? null,
    identity: image?.appDescription?.elfSha256 ?? null,
    idfVersion: image?.appDescription?.idfVersion ?? null,
    micropython: image ? (findMicroPythonVersion(bytes)?.version ?? null) : null,
    slot,
    verdicts,
  });

  const noAppDescription = () => {
    // Without esp_app_desc_t the header's other fields say nothing (an ESP8266 image has no chip id).
    add(
      "file-kind",
      "refusal",
      `${source} has no app description (esp_app_desc_t, magic 0xABCD5432) at the start of its first segment: it is not an ESP-IDF app (an ESP8266 image, or a bootloader.bin?), and a device could never report it as its firmware.`,
      APP_BIN_FIX,
    );
    return finish(null);
  };
  if (bytes[0] === ESP_IMAGE_V1_MAGIC && !isEsp32AppImage(bytes) && !findMergedFirmware(bytes)) {
    return noAppDescription();
  }
  let image: Esp32AppImage;
  try {
    image = parseEsp32AppImage(bytes, source);
  } catch (error) {
    if (!(error instanceof Esp32ImageError)) throw error;
    add("file-kind", "refusal", error.message, /micropython\.bin/.test(error.message) ? null : APP_BIN_FIX);
    return finish(null);
  }
  const desc = image.appDescription;
  if (!desc) return noAppDescription();
  add("file-kind", "ok", `an ESP32 app image of ${image.segmentCount} segments.`, null);
  const chip = chipVerdict(image, options, source);
  add("chip", chip.level, chip.message, chip.fix);

  const names = [desc.projectName && `project ${desc.projectName}`, desc.version && `version ${desc.version}`]
    .filter(Boolean)
    .join(", ");
  add(
    "app-desc",
    "ok",
    `ELF SHA-256 ${desc.elfSha256}, ESP-IDF ${desc.idfVersion || "(not named)"}, built ${desc.date} ${desc.time}${names ? `, ${names}` : ""}.`,
    null,
  );

  const unaligned = image.segments.filter((s) => s.length % 4 !== 0);
  if (unaligned.length > 0) {
    add(
      "segments",
      "refusal",
      `segment${unaligned.length > 1 ? "s" : ""} ${unaligned.map((s) => `${s.index} (${s.length} bytes)`).join(", ")} ${unaligned.length > 1 ? "are" : "is"} not a multiple of 4 bytes long: the bootloader refuses such an image.`,
      "Build the image again with esptool elf2image; this one is damaged.",
    );
  } else add("segments", "ok", `${image.segmentCount} segments, each a multiple of 4 bytes.`, null);

  const c = image.checksum;
  if (c.ok) add("checksum", "ok", `checksum byte ${hex(c.computed, 2)} matches the segments.`, null);
  else
    add(
      "checksum",
      "refusal",
      `the checksum byte is ${hex(c.stored, 2)}, the segments give ${hex(c.computed, 2)}: the image was changed after it was built, and the bootloader refuses it.`,
      "Copy or download the image again.",
    );

  const h = image.hash;
  if (h.ok === true) add("sha256", "ok", `the appended SHA-256 ${h.computed} matches the image.`, null);
  else if (h.ok === false)
    add(
      "sha256",
      "refusal",
      `the appended SHA-256 is ${h.stored}, the image gives ${h.computed}: it was changed after it was built, and the bootloader refuses it.`,
      "Copy or download the image again.",
    );
  else
    add(
      "sha256",
      "warning",
      "no SHA-256 is appended (hash_appended is 0): the bootloader checks only the checksum byte.",
      "Build with esptool's default, which appends the SHA-256.",
    );

  if (bytes.length <= slotSize)
    add(
      "slot-size",
      "ok",
      `${sizeText(bytes.length)} in the ${sizeText(slotSize)} slot, ${sizeText(slotSize - bytes.length)} left.`,
      null,
    );
  else
    add(
      "slot-size",
      "refusal",
      `${sizeText(bytes.length)} is larger than the app slot by ${sizeText(bytes.length - slotSize)}: it cannot be written there. The slot (${layout}) holds ${sizeText(slotSize)}.`,
      "Build a smaller firmware (freeze fewer modules, leave out features), or move the board to a layout with larger app slots (a serial reflash).",
    );

  if (image.trailingBytes > 0)
    add(
      "trailing-bytes",
      "warning",
      `${image.trailingBytes} bytes follow the image (which ends at ${hex(image.imageLength)}); nothing loads them.`,
      null,
    );
  return finish(image);
}
