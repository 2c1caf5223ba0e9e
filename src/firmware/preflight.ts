import { MpotaError } from "../errors.ts";
import { EXIT_CODES } from "../exit-codes.ts";
import { DEFAULT_MAIN_APP_OFFSET } from "../protocol/config-h.ts";
import { OtaFileError } from "../protocol/ota-file.ts";
import { isYaotaBootloader } from "./bootloader-image.ts";
import { type BuildKind, NORMAL_IROM0_BASE } from "./build-kind.ts";
import { ESP_IMAGE_V1_MAGIC, EspImageError, tryParseEspImage } from "./esp-image.ts";
import type { Esp32PreflightResult } from "./esp32-preflight.ts";
import {
  checkAppOffset,
  checkFlashSize,
  type FlashLayout,
  flashLayout,
  flashSizeText,
  IROM0_WINDOW_END,
} from "./flash-layout.ts";
import { hex, sizeText } from "./format.ts";
import {
  analyzeMicroPythonImage,
  isMicroPythonImage,
  type MicroPythonImageAnalysis,
} from "./micropython-image.ts";
import { imageFromOtaFile, isOtaFile } from "./ota-file-analysis.ts";
import { describeUnknownFile } from "./unknown-file.ts";

/**
 * A firmware image must not go to the device as it is. The message lists
 * every refusal with its cause and fix; `result` holds the full verdicts.
 */
export class PreflightError extends MpotaError {
  override readonly exitCode: number = EXIT_CODES.firmwareRefused.code;

  constructor(
    message: string,
    readonly result: PreflightResult | Esp32PreflightResult,
  ) {
    super(message);
  }
}

/** Stable names of the checks (the `check` field of a verdict). */
export type CheckId =
  | "file-kind"
  | "md5-trailer"
  | "size-limit"
  | "build-kind"
  | "app-offset"
  | "flash-size"
  | "sdk-sectors"
  | "irom0-window"
  | "filesystem"
  | "trailing-bytes";

export type VerdictLevel = "ok" | "warning" | "refusal";

export interface Verdict {
  check: CheckId;
  level: VerdictLevel;
  /** Whether --force may override this refusal (never for a corrupt file or one that cannot fit). */
  forceable: boolean;
  /** A refusal that --force overrode. */
  forced: boolean;
  /** What was found, and what it means for the device. */
  message: string;
  /** What to do about it (null for "ok"). */
  fix: string | null;
}

export interface PreflightOptions {
  /** Flash size of the device in bytes (1 MiB for Sonoff and ESP-01S, 4 MiB for NodeMCU and D1 mini). */
  flashSize: number;
  /** MAIN_APP_OFFSET of the device's yaota8266 (default 0x3c000). */
  mainAppOffset?: number;
  /** Override the refusals that may be overridden. */
  force?: boolean;
  /** The file's name, for messages. */
  source?: string;
}

/** The outcome of {@link preflight}. Plain data (the `check --json` shape, without its envelope). */
export interface PreflightResult {
  /** True when nothing refuses (refusals overridden by force do not count). */
  ok: boolean;
  /** True when force overrode at least one refusal. */
  forced: boolean;
  /** "ota-file" when a canned .ota file was given: its firmware was unpacked and checked. */
  input: "image" | "ota-file";
  /** The image's length (the bytes the receiver writes). */
  imageSize: number;
  identity: string | null;
  version: string | null;
  build: BuildKind | null;
  layout: FlashLayout & {
    /** MAIN_APP_OFFSET + image length: the first byte after what the app occupies. */
    appEnd: number;
    /** Bytes left between the app's end and the end of the OTA build's code region or of usable flash (room for larger builds). */
    firmwareRoom: number;
  };
  verdicts: Verdict[];
}

const BUILD_OTA_FIX =
  "Build MicroPython's OTA variant (`make BOARD=ESP8266_GENERIC BOARD_VARIANT=OTA` in MicroPython 1.20 to 1.26, which links with esp8266_ota.ld) and use the firmware-ota.bin it writes.";

/**
 * Decides whether an image may be flashed or pushed to a yaota8266 device
 * with `flashSize` bytes of flash: the checks boot8266 makes (size word, MD5
 * trailer), the link address (an OTA build for this MAIN_APP_OFFSET), and
 * the flash layout (app between MAIN_APP_OFFSET and the filesystem, SDK
 * sectors untouched). Pure: no files, no output. A canned .ota file is
 * unpacked and its firmware checked.
 */
export function preflight(bytes: Uint8Array, options: PreflightOptions): PreflightResult {
  const flashSize = checkFlashSize(options.flashSize);
  const appOffset = checkAppOffset(options.mainAppOffset ?? DEFAULT_MAIN_APP_OFFSET);
  const force = options.force === true;
  const source = options.source ?? "The image";
  const verdicts: Verdict[] = [];
  const add = (
    check: CheckId,
    level: VerdictLevel,
    message: string,
    fix: string | null,
    forceable = false,
  ) => {
    verdicts.push({
      check,
      level,
      forceable,
      forced: level === "refusal" && forceable && force,
      message,
      fix,
    });
  };
  const baseLayout = flashLayout(flashSize, appOffset);
  // A larger build may grow to the end of the OTA build's code region, or of the usable flash if that comes first.
  const growthLimit = Math.min(baseLayout.appRegionEnd, baseLayout.usableEnd);
  const finish = (image: Uint8Array, input: "image" | "ota-file", micro: MicroPythonImageAnalysis | null) => {
    const appEnd = appOffset + image.length;
    const refused = verdicts.some((v) => v.level === "refusal" && !v.forced);
    return {
      ok: !refused,
      forced: verdicts.some((v) => v.forced),
      input,
      imageSize: image.length,
      identity: micro?.identity ?? null,
      version: micro?.version?.version ?? null,
      build: micro?.build.kind ?? null,
      layout: { ...baseLayout, appEnd, firmwareRoom: Math.max(0, growthLimit - appEnd) },
      verdicts,
    };
  };

  // What is this file?
  let image = bytes;
  let input: "image" | "ota-file" = "image";
  if (isOtaFile(bytes)) {
    try {
      image = imageFromOtaFile(bytes, source);
      input = "ota-file";
      add(
        "file-kind",
        "ok",
        `${source} is a canned .ota update; the firmware it carries, ${sizeText(image.length)}, is checked below.`,
        null,
      );
    } catch (error) {
      if (!(error instanceof OtaFileError)) throw error;
      add(
        "file-kind",
        "refusal",
        error.message,
        "Sign the firmware again (`mpota sign`) or copy the file again.",
      );
      return finish(new Uint8Array(0), "ota-file", null);
    }
  }
  if (!isMicroPythonImage(image)) {
    if (input === "image" && isYaotaBootloader(image)) {
      add(
        "file-kind",
        "refusal",
        `${source} is a yaota8266 bootloader (boot8266 + ota-server), not an app: the receiver would write it at MAIN_APP_OFFSET where boot8266 expects MicroPython.`,
        "Flash the bootloader once by serial at 0x0 (`mpota flash-plan` prints the commands); sign and push the MicroPython OTA build, firmware-ota.bin.",
      );
    } else if (image[0] === ESP_IMAGE_V1_MAGIC && tryParseEspImage(image)) {
      add(
        "file-kind",
        "refusal",
        `${source} is an ESP8266 app image without MicroPython's size word at 0x8ffc and MD5 trailer, so boot8266 would refuse to start it and stay in OTA mode.`,
        "Use the firmware-ota.bin that MicroPython's build (makeimg.py) writes, not the esptool output of another project.",
      );
    } else if (image[0] === ESP_IMAGE_V1_MAGIC) {
      let reason = "its esptool header cannot be read";
      try {
        analyzeMicroPythonImage(image);
      } catch (error) {
        if (error instanceof EspImageError) reason = error.message;
      }
      add("file-kind", "refusal", `${source} is damaged: ${reason}`, "Build or download the firmware again.");
    } else {
      const what = describeUnknownFile(image);
      add(
        "file-kind",
        "refusal",
        `${source} is not a firmware image I know (it looks like ${what.looksLike}; first bytes ${what.firstBytes || "none"}). ${what.hint}`,
        "Use firmware-ota.bin from MicroPython's OTA build, or a .ota file made by `mpota sign`.",
      );
    }
    return finish(image, input, null);
  }

  const { micropython: micro } = analyzeMicroPythonImage(image, { appOffset });
  const t = micro.trailer;
  if (t.status === "too-large") {
    add(
      "size-limit",
      "refusal",
      t.message,
      "Make the build smaller (fewer frozen modules) so that the size word stays at or below 800000 bytes.",
    );
  } else if (t.status === "ok") {
    add("md5-trailer", "ok", `${t.message} Firmware identity: ${micro.identity}.`, null);
  } else {
    add(
      "md5-trailer",
      "refusal",
      t.message,
      "The file is corrupt or was changed after the build: build it again or copy it again. Never edit a built image (only its first 4 bytes may change).",
    );
  }

  const b = micro.build;
  if (b.kind === "normal") {
    add(
      "build-kind",
      "refusal",
      `This is a normal MicroPython build, not an OTA build: ${b.explanation.replace(/^Normal \(non-OTA\) build: /, "")} Under yaota8266, flash ${hex(NORMAL_IROM0_BASE - 0x40200000)} holds the ota-server, so the app would crash at its first flash-resident call with "Fatal exception (0)".`,
      `${BUILD_OTA_FIX} --force overrides this check if you are sure it is wrong (it is a heuristic).`,
      true,
    );
  } else if (b.kind === "unknown") {
    add(
      "build-kind",
      "warning",
      b.explanation,
      'Make sure this is firmware-ota.bin from MicroPython\'s OTA build; a normal build crashes with "Fatal exception (0)" under yaota8266.',
    );
  } else {
    add("build-kind", "ok", b.explanation, null);
    if (b.otherAppOffset !== null && b.offsetEvidence === "weak") {
      add(
        "app-offset",
        "warning",
        `The image may be linked for MAIN_APP_OFFSET ${hex(b.otherAppOffset)} rather than ${hex(appOffset)}, but the evidence is weak (${b.references.outsideOtaRange} of ${b.references.all} irom0 references point outside the range its code would occupy at ${hex(appOffset)}).`,
        `If the app crashes after the update, check MAIN_APP_OFFSET in the bootloader's config.h and the irom0 address in MicroPython's esp8266_ota.ld (${hex(b.expectedIrom0Base)}).`,
      );
    } else if (b.otherAppOffset !== null) {
      add(
        "app-offset",
        "refusal",
        `The image seems linked for MAIN_APP_OFFSET ${hex(b.otherAppOffset)} (irom0 at ${hex(b.irom0LinkBase as number)}), but this device's yaota8266 puts the app at ${hex(appOffset)}: its code would run from the wrong flash address and crash.`,
        `If the bootloader was built with MAIN_APP_OFFSET ${hex(b.otherAppOffset)}, pass --app-offset ${hex(b.otherAppOffset)}; otherwise build MicroPython with irom0 at ${hex(b.expectedIrom0Base)} (esp8266_ota.ld). --force overrides this heuristic.`,
        true,
      );
    } else {
      add(
        "app-offset",
        "ok",
        `Linked for MAIN_APP_OFFSET ${hex(appOffset)} (irom0 at ${hex(b.expectedIrom0Base)}).`,
        null,
      );
    }
  }

  const appEnd = appOffset + image.length;
  const layout = baseLayout;
  const size = flashSizeText(flashSize);
  if (appEnd > flashSize) {
    add(
      "flash-size",
      "refusal",
      `The app needs flash from ${hex(appOffset)} to ${hex(appEnd)}, but the device has only ${size} (up to ${hex(flashSize)}): it cannot fit.`,
      flashSize < 1024 * 1024
        ? "MicroPython's OTA build needs at least 1 MiB of flash: use a board with 1 MiB or more (an ESP-01S rather than an old 512 KiB ESP-01), or fit a larger flash chip."
        : "Use a device with more flash, or make the build smaller.",
    );
  } else if (appEnd > layout.usableEnd) {
    add(
      "sdk-sectors",
      "refusal",
      `The app would reach ${hex(appEnd)}, into the SDK's RF calibration, PHY init and system parameter sectors (${hex(layout.usableEnd)}-${hex(flashSize)} on ${size}): WiFi and the SDK's boot would break.`,
      "Make the build smaller or use a device with more flash.",
    );
  } else if (appEnd > IROM0_WINDOW_END) {
    add(
      "irom0-window",
      "refusal",
      `The app would reach ${hex(appEnd)}, past the first 1 MiB of flash, the only part the ESP8266 maps for code (0x40200000-0x40300000): code beyond it cannot run.`,
      "Make the build smaller; a larger flash does not help.",
    );
  } else {
    add(
      "flash-size",
      "ok",
      `The app occupies ${hex(appOffset)}-${hex(appEnd)} of ${size}: ${sizeText(image.length)}; ${sizeText(Math.max(0, growthLimit - appEnd))} are left for larger builds before ${hex(growthLimit)}.`,
      null,
    );
  }

  if (layout.filesystemSize === 0) {
    add(
      "filesystem",
      "refusal",
      flashSize < 1024 * 1024
        ? `MicroPython makes no filesystem on flash smaller than 1 MiB (this device has ${size}): there would be no place for boot.py, main.py or the device agent.`
        : `There is no room for MicroPython's filesystem: it would start at ${hex(layout.filesystemStart)}, at or after the SDK's sectors at ${hex(layout.usableEnd)}.`,
      "Use a device with 1 MiB of flash or more. --force goes ahead if the device needs only frozen code.",
      true,
    );
  } else if (appEnd > layout.filesystemStart) {
    add(
      "filesystem",
      "refusal",
      `The app would reach ${hex(appEnd)}, past ${hex(layout.filesystemStart)} where a standard OTA build's filesystem starts: flashing it (and every later update) overwrites the first filesystem blocks and the files on the device are lost.`,
      "Make the build smaller (fewer frozen modules). If your build uses its own linker script that moves the filesystem, --force goes ahead.",
      true,
    );
  } else {
    if (appEnd > layout.appRegionEnd) {
      add(
        "filesystem",
        "warning",
        `The app ends at ${hex(appEnd)}, in the sector after the OTA build's code region (${hex(layout.appRegionEnd)}) that MicroPython keeps for native code; \`esp.set_native_code_location\` could overwrite it.`,
        "Do not point native code at that sector.",
      );
    }
    add(
      "filesystem",
      "ok",
      `Room left for the filesystem: ${sizeText(layout.filesystemSize)} at ${hex(layout.filesystemStart)}-${hex(layout.usableEnd)}, as MicroPython's flashbdev.py lays it out for the OTA build; the last 20 KiB stay with the SDK.`,
      null,
    );
  }

  if (micro.trailingBytes > 0) {
    add(
      "trailing-bytes",
      "warning",
      `The file has ${micro.trailingBytes} bytes after its MD5 trailer; they are written to flash too but nothing uses them.`,
      "Use the image exactly as makeimg.py wrote it.",
    );
  }
  return finish(image, input, micro);
}

/** Formats the refusals of a result as the text of a {@link PreflightError}. */
export function refusalMessage(result: PreflightResult | Esp32PreflightResult, source = "The image"): string {
  const refusals = result.verdicts.filter((v) => v.level === "refusal" && !v.forced);
  const lines = refusals.map((v) => `- ${v.message}${v.fix ? ` Fix: ${v.fix}` : ""}`);
  const forceable = refusals.every((v) => v.forceable);
  const tail = forceable
    ? "Pass --force to go ahead anyway."
    : refusals.some((v) => v.forceable)
      ? "--force cannot override all of these: the file is corrupt or does not fit the device."
      : "--force cannot override this.";
  return `${source} must not go to this device:\n${lines.join("\n")}\n${tail}`;
}

/**
 * Runs {@link preflight} and throws {@link PreflightError} when the image is
 * refused. For `sign` and `push`: call it before anything is signed or sent.
 */
export function assertPreflight(bytes: Uint8Array, options: PreflightOptions): PreflightResult {
  const result = preflight(bytes, options);
  if (!result.ok) throw new PreflightError(refusalMessage(result, options.source), result);
  return result;
}
