import { basename } from "node:path";
import type { Command } from "commander";
import { FileError } from "../errors.ts";
import { formatTable, sizeText } from "../firmware/format.ts";
import { readImageFileSync } from "../firmware/image-file.ts";
import type { FirmwareView } from "../server/api/api.ts";
import { MAX_FIRMWARE_REQUEST_BYTES } from "../server/bridge/bridge.ts";
import type { StoredVerdict } from "../server/storage/storage.ts";
import {
  addBridgeOptions,
  type BridgeCommandOptions,
  printAnswer,
  printJson,
  relativeTime,
  withBridge,
} from "./devices.ts";
import type { CliIo } from "./io.ts";
import { parseFlashSize } from "./key-options.ts";
import { DEFAULT_TABLE_WIDTH, fitTable, tableWidth } from "./table-fit.ts";

interface FirmwareAddOptions extends BridgeCommandOptions {
  name: string;
  version: string;
  notes?: string;
  flash?: string;
  force?: boolean;
}

function verdictLines(verdicts: StoredVerdict[]): string {
  return verdicts
    .filter((v) => v.level !== "ok")
    .map((v) => `  ${v.forced ? "forced" : v.level}: ${v.message}\n`)
    .join("");
}

export function firmwareTable(list: FirmwareView[], now = Date.now(), width = DEFAULT_TABLE_WIDTH): string {
  if (list.length === 0)
    return "The store is empty. Add an image with `mpota firmware add FILE --name NAME --version VERSION`.\n";
  // FOR: the chip a firmware is built for (esp8266, esp32, esp32s3), or "app" for an app release.
  const rows = [["NAME", "VERSION", "FOR", "IDENTITY", "SIZE", "MICROPYTHON", "DEVICES", "ADDED", "NOTES"]];
  for (const f of list) {
    rows.push([
      f.name,
      f.version,
      f.target,
      f.id,
      String(f.size),
      f.micropython ?? "-",
      String(f.devices),
      relativeTime(f.addedAt, now),
      f.notes ? (f.notes.length > 40 ? `${f.notes.slice(0, 39)}…` : f.notes).replace(/\s+/g, " ") : "",
    ]);
  }
  // Name, version and identity are what `mpota update` takes: only the build and the notes are cut.
  return formatTable(
    fitTable(rows, width, [
      [8, "end"],
      [5, "end"],
    ]),
    { header: true },
  );
}

export async function firmwareAddCommand(
  file: string,
  options: FirmwareAddOptions,
  io: CliIo,
): Promise<FirmwareView> {
  const bytes = readImageFileSync(file, "Firmware");
  const encoded = Math.ceil(bytes.length / 3) * 4;
  if (encoded + 4096 > MAX_FIRMWARE_REQUEST_BYTES) {
    throw new FileError(
      `${file} is ${sizeText(bytes.length)}: far larger than any firmware boot8266 accepts (800,000 bytes) or an ESP32 OTA slot holds (1,572,864 bytes). Is it the right file?`,
    );
  }
  const flash = options.flash === undefined ? undefined : parseFlashSize(options.flash);
  const result = await withBridge(options, (bridge) =>
    bridge.request("firmware/add", {
      image: bytes.toString("base64"),
      name: options.name,
      version: options.version,
      filename: basename(file),
      ...(options.notes !== undefined ? { notes: options.notes } : {}),
      ...(flash !== undefined ? { flash } : {}),
      ...(options.force ? { force: true } : {}),
    }),
  );
  if (options.json) {
    printJson(io, result);
  } else {
    const f = result.firmware;
    io.out(
      `Added ${f.name} ${f.version}: ${sizeText(f.size)}, identity ${f.id}${f.micropython ? `, MicroPython ${f.micropython}` : ""}.\n${verdictLines(result.verdicts)}Update a device with \`mpota update DEVICE ${f.name}@${f.version}\`.\n`,
    );
  }
  return result.firmware;
}

export function registerFirmwareCommand(program: Command, io: CliIo): void {
  const firmware = program
    .command("firmware")
    .description("The running server's firmware store: add, list, remove images.");
  addBridgeOptions(
    firmware
      .command("add")
      .description("check an image (preflight) and add it to the store under a name and version")
      .argument(
        "<file>",
        "firmware-ota.bin from MicroPython's ESP8266 OTA build (or a canned .ota file), or an ESP32 micropython.bin (.app-bin)",
      ),
  )
    .requiredOption("--name <name>", "firmware line, e.g. sensor")
    .requiredOption("--version <version>", "version within the line, e.g. 1.4.2")
    .option("--notes <text>", "release notes")
    .option("--flash <size>", "flash size the checks assume: 1M (default), 2M, 4M, ...")
    .option("--force", "add even if checks refuse that may be overridden (a build-kind heuristic, ...)")
    .action(async (file: string, options: FirmwareAddOptions) => {
      await firmwareAddCommand(file, options, io);
    });
  addBridgeOptions(
    firmware.command("list", { isDefault: true }).description("list the store (the default)"),
  ).action(async (options: BridgeCommandOptions) => {
    const list = await withBridge(options, (bridge) => bridge.request("firmware/list", {}));
    printAnswer(io, options.json, list, () => firmwareTable(list, Date.now(), tableWidth(io)));
  });
  addBridgeOptions(
    firmware
      .command("remove")
      .description("remove an image no active job needs")
      .argument("<firmware>", "identity (or its first 6+ digits), name@version, or name"),
  ).action(async (ref: string, options: BridgeCommandOptions) => {
    const removed = await withBridge(options, (bridge) => bridge.request("firmware/remove", { id: ref }));
    printAnswer(
      io,
      options.json,
      removed,
      () => `Removed ${removed.name} ${removed.version} (${removed.id}).\n`,
    );
  });
}
