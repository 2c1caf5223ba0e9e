import { DEFAULT_MAIN_APP_OFFSET } from "../protocol/config-h.ts";
import type { PublicKeyInfo } from "../protocol/rsa-key.ts";
import { analyzeBootloader, type BootloaderAnalysis, isYaotaBootloader } from "./bootloader-image.ts";
import {
  ESP_IMAGE_V1_MAGIC,
  EspImageError,
  type EspImageV1,
  parseEspImage,
  strangeSegments,
} from "./esp-image.ts";
import { isEsp32AppImage } from "./esp32-app-image.ts";
import { type ChipChoice, ESP8266_CHIP_NAME } from "./esp32-chips.ts";
import { type Esp32Inspection, inspectEsp32App, inspectMergedEsp32 } from "./esp32-inspect.ts";
import { findMergedFirmware } from "./esp32-merged-firmware.ts";
import { PACKED_RAM_SIZE } from "./flash-layout.ts";
import { hex, sizeText } from "./format.ts";
import {
  analyzeMicroPythonImage,
  isMicroPythonImage,
  type MicroPythonImageAnalysis,
} from "./micropython-image.ts";
import { analyzeOtaFile, isOtaFile, type OtaFileAnalysis } from "./ota-file-analysis.ts";
import { describeUnknownFile, type UnknownFileDescription } from "./unknown-file.ts";

/** Identifies the JSON shape of {@link InspectReport}; bumped only on incompatible changes. */
export const INSPECT_FORMAT = "mpota-inspect/1";

export type FileKind =
  | "micropython"
  | "esp8266-app"
  | "yaota8266"
  | "ota-file"
  | "esp32-app"
  | "esp32-merged"
  | "unknown";

/**
 * Everything `mpota inspect` says about one file. Every field is always
 * present (null when it does not apply), so `--json` consumers can rely on
 * the shape; docs/inspect.md documents it.
 */
export interface InspectReport {
  format: typeof INSPECT_FORMAT;
  file: string;
  size: number;
  kind: FileKind;
  /** One line for people. */
  summary: string;
  /** Problems that would make flashing or pushing this file fail; inspect exits non-zero when there are any. */
  errors: string[];
  /** Things worth knowing that do not stop anything. */
  warnings: string[];
  /** Hints (for example, which option checks more). */
  notes: string[];
  /** MAIN_APP_OFFSET the analysis assumed. */
  appOffset: number;
  /** The key given with --key/--modulus/--config-h (its size only), or null. */
  key: { bits: number } | null;
  /** The esptool image at the start of the file (micropython, esp8266-app, yaota8266: boot8266's). */
  espImage: EspImageV1 | null;
  micropython: MicroPythonImageAnalysis | null;
  bootloader: Omit<BootloaderAnalysis, "warnings" | "errors" | "keyErrors"> | null;
  otaFile: OtaFileAnalysis | null;
  /** Kinds esp32-app and esp32-merged. */
  esp32: Esp32Inspection | null;
  unknown: UnknownFileDescription | null;
}

export interface InspectOptions {
  /** Name shown in the report. */
  file: string;
  key?: PublicKeyInfo;
  /** MAIN_APP_OFFSET to judge OTA builds against (default 0x3c000, or boot8266's own for a yaota8266.bin). */
  appOffset?: number;
  /** True when appOffset was given by the user (not the default). */
  appOffsetGiven?: boolean;
  /** The device's chip (--chip): an image for another chip is an error. */
  chip?: ChipChoice;
  /** The ESP32 app slot's size (default: the OTA variant's). */
  slotSize?: number;
}

const NOT_OTA =
  'A normal build crashes under yaota8266 with "Fatal exception (0)": use firmware-ota.bin from MicroPython\'s OTA build.';

/** Turns a MicroPython analysis into report lines; `prefix` names where it sits ("the firmware inside: "). */
function micropythonFindings(
  m: MicroPythonImageAnalysis,
  prefix: string,
  appOffset: number,
  strictOffset: boolean,
  errors: string[],
  warnings: string[],
): void {
  if (m.trailer.status !== "ok") errors.push(`${prefix}${m.trailer.message}`);
  if (m.build.kind === "normal") errors.push(`${prefix}${m.build.explanation} ${NOT_OTA}`);
  else if (m.build.kind === "unknown") warnings.push(`${prefix}${m.build.explanation}`);
  else if (m.build.otherAppOffset !== null) {
    (strictOffset && m.build.offsetEvidence === "strong" ? errors : warnings).push(
      `${prefix}${m.build.explanation} Flash it only to a yaota8266 built with MAIN_APP_OFFSET ${hex(m.build.otherAppOffset)}${strictOffset ? `, not ${hex(appOffset)}` : ""}.`,
    );
  }
  if (m.trailingBytes > 0) {
    warnings.push(`${prefix}${m.trailingBytes} bytes follow the MD5 trailer; nothing uses them.`);
  }
}

function buildWord(m: MicroPythonImageAnalysis): string {
  if (m.build.kind === "ota") return "OTA build";
  if (m.build.kind === "normal") return "normal (non-OTA) build";
  return "build of unknown kind";
}

function micropythonSummary(m: MicroPythonImageAnalysis): string {
  const version = m.version ? `MicroPython ${m.version.version}` : "MicroPython (version string not found)";
  const trailer = m.trailer.status === "ok" ? "MD5 trailer ok" : `MD5 trailer ${m.trailer.status}`;
  return `${version}, ${buildWord(m)}, ${sizeText(m.fileLength)}, ${trailer}`;
}

/**
 * Recognises a file by its first bytes (0xE9: an esptool v1 image, which may
 * be a MicroPython image or a yaota8266.bin; "yaota8266\x01": a canned .ota
 * file) and explains it. Pure: takes bytes, returns plain data.
 */
export function inspectFirmware(bytes: Uint8Array, options: InspectOptions): InspectReport {
  const report = inspectAnyFirmware(bytes, options);
  const chip = options.chip;
  if (chip !== undefined && chip !== ESP8266_CHIP_NAME && ESP8266_KINDS.has(report.kind)) {
    report.errors.push(
      `This is not an ESP32 app image (no app description at 0x20; it reads as an ESP8266 file), but the device is an ${chip.label}: use micropython.bin built for the ${chip.label} (published on micropython.org as the .app-bin file).`,
    );
  }
  return report;
}

const ESP8266_KINDS = new Set<FileKind>(["micropython", "esp8266-app", "yaota8266", "ota-file"]);

function inspectAnyFirmware(bytes: Uint8Array, options: InspectOptions): InspectReport {
  const errors: string[] = [];
  const warnings: string[] = [];
  const notes: string[] = [];
  const appOffset = options.appOffset ?? DEFAULT_MAIN_APP_OFFSET;
  const report: InspectReport = {
    format: INSPECT_FORMAT,
    file: options.file,
    size: bytes.length,
    kind: "unknown",
    summary: "",
    errors,
    warnings,
    notes,
    appOffset,
    key: options.key ? { bits: options.key.bits } : null,
    espImage: null,
    micropython: null,
    bootloader: null,
    otaFile: null,
    esp32: null,
    unknown: null,
  };
  const keyNotUsed = () => {
    if (options.key) {
      notes.push("A key says nothing about a firmware image: give it with a yaota8266.bin or a .ota file.");
    }
  };

  if (isOtaFile(bytes)) {
    const ota = analyzeOtaFile(bytes, { key: options.key, appOffset, source: options.file });
    report.kind = "ota-file";
    report.otaFile = ota;
    if (ota.integrity === "damaged") {
      errors.push(ota.damage as string);
      report.summary = "canned .ota update, damaged";
      return report;
    }
    const sig = ota.signatures;
    if (sig) {
      if (ota.signatureLength * 8 !== sig.keyBits) {
        errors.push(
          `The file was signed for a ${ota.signatureLength * 8}-bit key, the given key has ${sig.keyBits} bits: no datagram verifies, the device would drop them all. Push a file signed with the device's key.`,
        );
      } else if (sig.valid < sig.checked) {
        const first = sig.firstInvalid as { record: number; seq: number; offset: number };
        errors.push(
          `${sig.checked - sig.valid} of ${sig.checked} datagrams do not verify with the given key (the first is record ${first.record}, seq ${first.seq}, image offset ${first.offset}): the device would drop them silently and the update would stall. Push a file signed with the key the device's bootloader was built with.`,
        );
      }
    } else {
      notes.push("Give --key, --modulus or --config-h to check every signature against the device's key.");
    }
    const m = ota.image?.micropython;
    if (m)
      micropythonFindings(
        m,
        "The firmware inside: ",
        appOffset,
        options.appOffsetGiven === true,
        errors,
        warnings,
      );
    else
      errors.push(
        "The firmware inside is not a MicroPython image (no size word and MD5 trailer): boot8266 would never start it.",
      );
    const sigText = sig
      ? sig.valid === sig.checked
        ? `all ${sig.checked} signatures verify`
        : `${sig.checked - sig.valid} of ${sig.checked} signatures fail`
      : "signatures not checked";
    report.summary = `canned .ota update: ${ota.dataPackets} data datagrams of up to ${ota.blockSize} bytes carrying ${m ? micropythonSummary(m) : sizeText(ota.imageSize)}; checksum ok; ${sigText}`;
    return report;
  }

  const merged = findMergedFirmware(bytes);
  if (merged || isEsp32AppImage(bytes)) {
    const esp32Options = { file: options.file, chip: options.chip, slotSize: options.slotSize };
    const outcome = merged
      ? inspectMergedEsp32(merged, bytes.length, esp32Options)
      : inspectEsp32App(bytes, esp32Options);
    report.kind = merged ? "esp32-merged" : "esp32-app";
    report.esp32 = outcome.esp32;
    report.summary = outcome.summary;
    errors.push(...outcome.errors);
    warnings.push(...outcome.warnings);
    notes.push(...outcome.notes);
    keyNotUsed();
    return report;
  }

  if (bytes[0] === ESP_IMAGE_V1_MAGIC) {
    try {
      if (isYaotaBootloader(bytes)) {
        const {
          warnings: w,
          errors: e,
          keyErrors: k,
          ...bootloader
        } = analyzeBootloader(bytes, {
          key: options.key,
          appOffset: options.appOffsetGiven ? appOffset : undefined,
          source: options.file,
        });
        report.kind = "yaota8266";
        report.bootloader = bootloader;
        report.espImage = bootloader.boot8266.espImage;
        report.appOffset = options.appOffsetGiven
          ? appOffset
          : (bootloader.boot8266.mainAppOffset ?? appOffset);
        errors.push(...e, ...k);
        warnings.push(...w);
        if (
          options.appOffsetGiven &&
          bootloader.boot8266.mainAppOffset !== null &&
          bootloader.boot8266.mainAppOffset !== appOffset
        ) {
          errors.push(
            `boot8266's code holds MAIN_APP_OFFSET ${hex(bootloader.boot8266.mainAppOffset)}, not the ${hex(appOffset)} given: it would look for the app elsewhere.`,
          );
        }
        if (!options.key && !bootloader.exampleKey) {
          notes.push(
            "Give --key, --modulus or --config-h to check that this bootloader accepts updates signed with your key.",
          );
        }
        const app = bootloader.mainApp;
        if (app?.micropython) {
          micropythonFindings(
            app.micropython,
            "The app at MAIN_APP_OFFSET: ",
            report.appOffset,
            true,
            errors,
            warnings,
          );
        } else if (app) {
          errors.push(
            "The app at MAIN_APP_OFFSET has no MicroPython size word and MD5 trailer: boot8266 would never start it.",
          );
        }
        const b = bootloader.boot8266;
        const gpio =
          b.gpioMask === null
            ? "GPIO settings unreadable"
            : `GPIO mask ${hex(b.gpioMask)}, wait ${b.gpioWaitMs} ms`;
        const keyText = bootloader.key
          ? bootloader.key.found
            ? "holds the key's modulus"
            : "does NOT hold the key's modulus"
          : bootloader.exampleKey
            ? "built with the EXAMPLE key"
            : "key not checked";
        report.summary = `yaota8266 bootloader (boot8266 + ota-server${app ? " + app" : ""}), ${gpio}, ${keyText}`;
        return report;
      }
      if (isMicroPythonImage(bytes)) {
        const { espImage, micropython } = analyzeMicroPythonImage(bytes, { appOffset, source: options.file });
        report.kind = "micropython";
        report.espImage = espImage;
        report.micropython = micropython;
        micropythonFindings(micropython, "", appOffset, options.appOffsetGiven === true, errors, warnings);
        keyNotUsed();
        report.summary = micropythonSummary(micropython);
        return report;
      }
      const espImage = parseEspImage(bytes, 0, options.file);
      report.kind = "esp8266-app";
      report.espImage = espImage;
      if (strangeSegments(espImage).length > 0) {
        warnings.push(
          `Segments load at addresses outside ESP8266 memory (${strangeSegments(espImage)
            .map((s) => hex(s.loadAddress, 8))
            .join(", ")}): this may be an image for another chip (an ESP32 image also starts with 0xE9).`,
        );
      }
      errors.push(
        bytes.length < PACKED_RAM_SIZE
          ? `An ESP8266 app image of ${bytes.length} bytes, shorter than a MicroPython image (irom0 starts at 0x9000): boot8266 would never start it as the main app.`
          : "An ESP8266 app image without MicroPython's size word at 0x8ffc and MD5 trailer: boot8266 would never start it as the main app.",
      );
      keyNotUsed();
      report.summary = `ESP8266 app image (esptool v1, ${espImage.segmentCount} segments), not a MicroPython image`;
      return report;
    } catch (error) {
      if (!(error instanceof EspImageError)) throw error;
      errors.push(error.message);
    }
  }

  const unknown = describeUnknownFile(bytes);
  report.kind = "unknown";
  report.unknown = unknown;
  if (errors.length === 0) errors.push(`Not a firmware image I know. ${unknown.hint}`);
  report.summary = `not a firmware image I know: looks like ${unknown.looksLike}, ${sizeText(bytes.length)}${bytes.length > 0 ? `, starting ${unknown.firstBytes}` : ""}`;
  return report;
}
