import type { Command } from "commander";
import { MpotaError } from "../errors.ts";
import { EXIT_CODES } from "../exit-codes.ts";
import type { EspImageV1 } from "../firmware/esp-image.ts";
import type { ChipChoice } from "../firmware/esp32-chips.ts";
import { formatTable, hex, sizeText } from "../firmware/format.ts";
import { readImageFileSync } from "../firmware/image-file.ts";
import { type InspectReport, inspectFirmware } from "../firmware/inspect-file.ts";
import type { MicroPythonImageAnalysis } from "../firmware/micropython-image.ts";
import { parseConfigH, type YaotaSettings } from "../protocol/config-h.ts";
import { addChipOptions } from "./esp32-options.ts";
import { esp32Text } from "./esp32-text.ts";
import { type CliIo, processIo } from "./io.ts";
import { loadPublicKey, parseIntegerOption, readUserFile } from "./key-options.ts";

/** inspect found problems in the file; the report was printed before this is thrown. */
export class InspectFindingsError extends MpotaError {
  override readonly exitCode: number = EXIT_CODES.inspectFindings.code;
}

export interface InspectCommandOptions {
  key?: string;
  modulus?: string;
  configH?: string;
  appOffset?: number;
  chip?: ChipChoice;
  slotSize?: number;
  json?: boolean;
}

function espImageText(image: EspImageV1, title: string): string {
  const checksum = image.checksum.ok
    ? `${hex(image.checksum.computed, 2)}, ok`
    : `stored ${image.checksum.stored === null ? "none" : hex(image.checksum.stored, 2)}, computed ${hex(image.checksum.computed, 2)}: mismatch (only the ROM checks it, for the image at 0x0)`;
  const rows = [
    ["segment", "load address", "length", "region", "file offset"],
    ...image.segments.map((s) => [
      String(s.index),
      hex(s.loadAddress, 8),
      String(s.length),
      s.region,
      hex(s.fileOffset),
    ]),
  ];
  return [
    `${title}`,
    formatTable(
      [
        ["flash", `mode ${image.flashMode}, size ${image.flashSize}, frequency ${image.flashFrequency}`],
        ["entry", hex(image.entry, 8)],
        ["checksum", checksum],
      ],
      { indent: "  " },
    ).trimEnd(),
    formatTable(rows, { header: true, indent: "  " }).trimEnd(),
  ].join("\n");
}

function micropythonText(m: MicroPythonImageAnalysis, title: string): string {
  const version = m.version
    ? `${m.version.version} on ${m.version.buildDate}${m.version.machine ? ` (${m.version.machine})` : ""}`
    : "not found";
  const sizeWord =
    m.totalSize === null
      ? "missing (file too short)"
      : m.irom0Length === null
        ? `${hex(m.totalSize)} at 0x8ffc (not a valid size)`
        : `${hex(m.totalSize)} at 0x8ffc = 0x9000 + ${hex(m.irom0Length)} bytes of irom0 text`;
  const rows = [
    ["version", version],
    [
      "identity",
      m.identity ? `${m.identity} (the MD5 trailer; the device agent reports it)` : "none (no trailer)",
    ],
    ["size word", sizeWord],
    ["MD5 trailer", `${m.trailer.status}: ${m.trailer.message}`],
    ["build", m.build.explanation],
  ];
  return `${title}\n${formatTable(rows, { indent: "  " }).trimEnd()}`;
}

/** The report as people read it. */
export function renderInspectReport(report: InspectReport): string {
  const sections: string[] = [`${report.file}: ${report.summary}`];
  if (report.kind === "micropython" && report.micropython && report.espImage) {
    sections.push(micropythonText(report.micropython, "MicroPython image"));
    sections.push(espImageText(report.espImage, "esptool v1 image at 0x0"));
  } else if ((report.kind === "esp32-app" || report.kind === "esp32-merged") && report.esp32) {
    sections.push(...esp32Text(report.esp32));
  } else if (report.kind === "esp8266-app" && report.espImage) {
    sections.push(espImageText(report.espImage, "esptool v1 image at 0x0"));
  } else if (report.kind === "yaota8266" && report.bootloader) {
    const b = report.bootloader;
    sections.push(
      `parts\n${formatTable(
        [["part", "offset", "length"], ...b.parts.map((p) => [p.name, hex(p.offset), String(p.length)])],
        { header: true, indent: "  " },
      ).trimEnd()}`,
    );
    const boot = b.boot8266;
    const rows = [
      [
        "flash",
        `mode ${boot.espImage.flashMode}, size ${boot.espImage.flashSize} (esptool -fm/-fs set these when flashing)`,
      ],
      [
        "GPIO mask",
        boot.gpioMask === null
          ? "unreadable"
          : `${hex(boot.gpioMask)}${boot.gpioMask === 0 ? " (OTA mode on every boot)" : ` (GPIO ${boot.gpioPins.join(", ")})`} at ${hex(boot.paramOffset as number)}`,
      ],
      [
        "GPIO wait",
        boot.gpioWaitMs === null
          ? "unreadable"
          : `${boot.gpioWaitMs} ms at ${hex((boot.paramOffset as number) + 4)}`,
      ],
      [
        "MAIN_APP_OFFSET",
        boot.mainAppOffset === null
          ? "not found in boot8266's code"
          : `${hex(boot.mainAppOffset)} (read from boot8266's code)`,
      ],
    ];
    sections.push(`boot8266\n${formatTable(rows, { indent: "  " }).trimEnd()}`);
    const keyLine = b.key
      ? b.key.found
        ? `the ${b.key.bits}-bit modulus is at ${hex(b.key.offset as number)}: updates signed with this key are accepted`
        : `the ${b.key.bits}-bit modulus is NOT in this bootloader: updates signed with this key are dropped`
      : b.exampleKey
        ? "built with config.h.example's modulus (nobody but its author can sign updates)"
        : "not checked (give --key, --modulus or --config-h)";
    sections.push(`key\n  ${keyLine}`);
    if (b.mainApp?.micropython)
      sections.push(micropythonText(b.mainApp.micropython, `app at ${hex(b.mainApp.offset)}`));
  } else if (report.kind === "ota-file" && report.otaFile) {
    const o = report.otaFile;
    if (o.integrity === "ok") {
      const sig = o.signatures;
      const rows = [
        ["datagrams", `${o.datagrams} (${o.dataPackets} data + ${o.endPackets} end)`],
        ["block size", String(o.blockSize)],
        ["image size", sizeText(o.imageSize)],
        ["signature", `${o.signatureLength} bytes (${o.signatureLength * 8}-bit key)`],
        ["checksum", `SHA1 ${o.sha1} ok`],
        [
          "signatures",
          sig
            ? `${sig.valid} of ${sig.checked} verify with the ${sig.keyBits}-bit key`
            : "not checked (give --key, --modulus or --config-h)",
        ],
      ];
      sections.push(`canned .ota file\n${formatTable(rows, { indent: "  " }).trimEnd()}`);
      if (o.image?.micropython) sections.push(micropythonText(o.image.micropython, "firmware inside"));
    }
  } else if (report.unknown) {
    sections.push(
      `file\n${formatTable(
        [
          ["size", sizeText(report.size)],
          ["first bytes", report.unknown.firstBytes || "(none)"],
          ["looks like", report.unknown.looksLike],
        ],
        { indent: "  " },
      ).trimEnd()}`,
    );
  }
  const list = (title: string, items: string[]) =>
    items.length > 0 ? `${title}\n${items.map((i) => `  - ${i}`).join("\n")}` : undefined;
  for (const block of [
    list("errors", report.errors),
    list("warnings", report.warnings),
    list("notes", report.notes),
  ]) {
    if (block) sections.push(block);
  }
  return `${sections.join("\n\n")}\n`;
}

function compareSettings(report: InspectReport, settings: YaotaSettings, source: string): void {
  const boot = report.bootloader?.boot8266;
  if (!boot) return;
  if (boot.gpioMask !== null && boot.gpioMask !== settings.gpioMask) {
    report.warnings.push(
      `boot8266's gpio_mask is ${hex(boot.gpioMask)}, ${source} says ${hex(settings.gpioMask)}: the bootloader was built from another config.h, or its parameter area was changed in flash.`,
    );
  }
  if (boot.gpioWaitMs !== null && boot.gpioWaitMs !== settings.gpioWaitMs) {
    report.warnings.push(
      `boot8266's gpio_wait_ms is ${boot.gpioWaitMs}, ${source} says ${settings.gpioWaitMs}.`,
    );
  }
}

/** `mpota inspect`: reads the file, prints the report, and throws when it found problems. */
export async function runInspect(
  file: string,
  options: InspectCommandOptions,
  io: CliIo = processIo,
): Promise<InspectReport> {
  const bytes = new Uint8Array(readImageFileSync(file, "File"));
  const key = loadPublicKey(options);
  const settings = options.configH
    ? parseConfigH(readUserFile(options.configH, "config.h").toString("utf8"), options.configH).settings
    : undefined;
  const appOffset = options.appOffset ?? settings?.mainAppOffset;
  const report = inspectFirmware(bytes, {
    file,
    key,
    appOffset,
    appOffsetGiven: appOffset !== undefined,
    chip: options.chip,
    slotSize: options.slotSize,
  });
  if (settings && options.configH) compareSettings(report, settings, options.configH);
  io.out(options.json ? `${JSON.stringify(report, null, 2)}\n` : renderInspectReport(report));
  if (report.errors.length > 0) {
    throw new InspectFindingsError(
      `${file}: ${report.errors.length === 1 ? "1 problem" : `${report.errors.length} problems`} found. ${report.errors[0]}`,
    );
  }
  return report;
}

export function registerInspectCommand(program: Command, io: CliIo = processIo): Command {
  const command = program
    .command("inspect")
    .description(
      "Explain a firmware file: MicroPython image (ESP8266 or ESP32), yaota8266.bin, canned .ota file, or anything else",
    )
    .argument("<file>", "the file to inspect")
    .option("--key <file>", "PEM key (private or public) to check a bootloader or .ota file against")
    .option("--modulus <hex>", "the device's RSA modulus as hex, instead of --key")
    .option(
      "--config-h <file>",
      "the config.h yaota8266 was built with (modulus, MAIN_APP_OFFSET, GPIO settings)",
    )
    .option(
      "--app-offset <offset>",
      "MAIN_APP_OFFSET of the device's yaota8266 (default 0x3c000)",
      parseIntegerOption("--app-offset"),
    );
  return addChipOptions(command)
    .option("--json", "print the report as JSON (shape: docs/inspect.md)")
    .addHelpText(
      "after",
      `
Recognises a file by its first bytes and says what it is and whether it can work:
  - a MicroPython image: OTA or normal build, version, size word, MD5 trailer
    (checked as boot8266 checks it) and the firmware identity;
  - a yaota8266.bin: its parts, boot8266's GPIO settings, and with a key
    whether the bootloader holds its modulus (else every update is dropped);
  - a canned .ota file: datagrams, block size, image size, checksum, and with
    a key whether every signature verifies;
  - an ESP32 app image (micropython.bin, the .app-bin): chip, segments,
    checksum, appended SHA-256, the app description with its ELF SHA-256
    (the identity a device reads from its running slot), the fit in the app
    slot; a merged firmware.bin is explained and refused for OTA;
  - anything else: what it looks like.
Exits 0 when nothing is wrong, 11 when the report lists errors.

Examples:
  mpota inspect firmware-ota.bin
  mpota inspect yaota8266.bin --key priv.key
  mpota inspect update.ota --config-h config.h --json
  mpota inspect ESP32_GENERIC-OTA-v1.27.0.app-bin --chip esp32`,
    )
    .action(async (file: string, options: InspectCommandOptions) => {
      await runInspect(file, options, io);
    });
}
