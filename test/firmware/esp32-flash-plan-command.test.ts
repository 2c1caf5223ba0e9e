import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { after, describe, test } from "node:test";
import { registerFlashPlanCommand } from "../../src/cli/flash-plan.ts";
import { UsageError } from "../../src/errors.ts";
import { Esp32ImageError } from "../../src/firmware/esp32-app-image.ts";
import { FlashPlanError } from "../../src/firmware/full-flash.ts";
import { PreflightError } from "../../src/firmware/preflight.ts";
import { buildEsp32AppImage, buildMergedFirmware, esp32Identity } from "../support/esp32-image.ts";
import { runCommand, tempFiles } from "./cli-harness.ts";

type Row = [type: number, subtype: number, offset: number, size: number, label: string];
const OTA_ROWS: Row[] = [
  [1, 0x02, 0x9000, 0x4000, "nvs"],
  [1, 0x00, 0xd000, 0x2000, "otadata"],
  [1, 0x01, 0xf000, 0x1000, "phy_init"],
  [0, 0x10, 0x10000, 0x180000, "ota_0"],
  [0, 0x11, 0x190000, 0x180000, "ota_1"],
];
const FACTORY_ROWS: Row[] = [
  [1, 0x02, 0x9000, 0x6000, "nvs"],
  [1, 0x01, 0xf000, 0x1000, "phy_init"],
  [0, 0x00, 0x10000, 0x1f0000, "factory"],
];

/** A partition table as gen_esp32part.py writes it: 32-byte entries, then the MD5 entry, then 0xFF. */
function partitionTable(rows: Row[], md5: "good" | "bad" | "none" = "good"): Uint8Array {
  const table = new Uint8Array(0xc00).fill(0xff);
  const view = new DataView(table.buffer);
  rows.forEach(([type, subtype, offset, size, label], i) => {
    const at = i * 32;
    view.setUint16(at, 0x50aa, true);
    table[at + 2] = type;
    table[at + 3] = subtype;
    view.setUint32(at + 4, offset, true);
    view.setUint32(at + 8, size, true);
    table.fill(0, at + 12, at + 28);
    table.set(Buffer.from(label, "latin1"), at + 12);
    view.setUint32(at + 28, 0, true);
  });
  if (md5 !== "none") {
    const at = rows.length * 32;
    table[at] = 0xeb;
    table[at + 1] = 0xeb;
    const digest = createHash("md5").update(table.subarray(0, at)).digest();
    if (md5 === "bad") digest[0] = (digest[0] as number) ^ 1;
    table.set(digest, at + 16);
  }
  return table;
}

/** MicroPython's firmware.bin: the merged flash from the bootloader's offset on (0x1000 on the ESP32). */
function firmwareBin(
  app: Uint8Array,
  rows: Row[],
  md5: "good" | "bad" | "none" = "good",
  bootloaderOffset = 0x1000,
) {
  const flash = buildMergedFirmware(app, bootloaderOffset);
  flash.set(partitionTable(rows, md5), 0x8000);
  return flash.subarray(bootloaderOffset);
}

const app = buildEsp32AppImage({ size: 200 * 1024, seed: 7, banner: "v1.27.0 on 2025-12-09" });
const s3App = buildEsp32AppImage({ size: 200 * 1024, seed: 8, chipId: 9 });
const damaged = Uint8Array.from(app);
damaged[0x2000] = (damaged[0x2000] as number) ^ 0xff;
const files = tempFiles({
  "ESP32_GENERIC-OTA.bin": firmwareBin(app, OTA_ROWS),
  "no-md5.bin": firmwareBin(app, OTA_ROWS, "none"),
  "bad-md5.bin": firmwareBin(app, OTA_ROWS, "bad"),
  "ESP32_GENERIC.bin": firmwareBin(app, FACTORY_ROWS),
  "ESP32_GENERIC_S3-OTA.bin": firmwareBin(s3App, OTA_ROWS, "good", 0),
  "damaged.bin": firmwareBin(damaged, OTA_ROWS),
  "micropython.bin": app,
});
after(() => files.remove());
const f = files.path;
const plan = (...args: string[]) => runCommand(registerFlashPlanCommand, ["flash-plan", ...args]);

describe("mpota flash-plan --chip esp32", () => {
  test("the OTA variant's firmware.bin: layout, what each slot holds, the app's checks and the esptool commands", async () => {
    const file = f("ESP32_GENERIC-OTA.bin");
    const r = await plan("--chip", "esp32", "--firmware", file);
    assert.equal(r.code, 0, String(r.error));
    const lines = r.stdout.split("\n");
    assert.equal(
      lines[0],
      `${file}: merged firmware for ESP32, written at 0x1000; OTA layout (otadata, ota_0, ota_1); partition table MD5 matches`,
    );
    const out = r.stdout;
    assert.ok(out.includes("\n  0x001000-0x008000  bootloader\n"));
    assert.ok(out.includes("\n  0x008000-0x008c00  partition table\n"));
    assert.ok(
      out.includes(
        "\n  0x00d000-0x00f000  otadata (data otadata, 8.0 KiB, 8,192 bytes): erased: the bootloader starts ota_0\n",
      ),
    );
    assert.ok(
      out.includes(
        "\n  0x010000-0x190000  ota_0 (app ota_0, 1.50 MiB, 1,572,864 bytes): this firmware's app, 204,800 bytes (200.0 KiB), booted first\n",
      ),
    );
    assert.ok(
      out.includes(
        "\n  0x190000-0x310000  ota_1 (app ota_1, 1.50 MiB, 1,572,864 bytes): empty (erased); the first update goes here\n",
      ),
    );
    assert.ok(out.includes(`\napp at 0x10000: identity ${esp32Identity({ seed: 7 })}, MicroPython v1.27.0`));
    assert.match(out, /\n {2}ok {7}chip {11}built for ESP32 .*the device's chip\.\n/);
    assert.match(out, /\n {2}ok {7}sha256 /);
    assert.ok(out.includes("\n  esptool.py --chip esp32 --port /dev/ttyUSB0 erase_flash\n"));
    assert.ok(
      out.includes(
        `\n  esptool.py --chip esp32 --port /dev/ttyUSB0 --baud 460800 write_flash 0x1000 ${file}\n`,
      ),
    );
    assert.ok(
      out.includes(
        "take only the app: micropython.bin from the same build (the .app-bin file on micropython.org)",
      ),
    );
  });

  test("--json: the table's entries, the app's verdicts and the commands", async () => {
    const r = await plan(
      "--chip",
      "ESP32",
      "--firmware",
      f("no-md5.bin"),
      "--json",
      "--port",
      "COM3",
      "--baud",
      "921600",
    );
    assert.equal(r.code, 0, String(r.error));
    const doc = JSON.parse(r.stdout);
    assert.equal(doc.format, "mpota-flash-plan-esp32/1");
    assert.equal(doc.firmware.writeOffset, 0x1000);
    assert.equal(doc.partitionTable.md5, "absent");
    assert.deepEqual(
      doc.partitionTable.entries.map((e: { label: string; kind: string }) => `${e.label}=${e.kind}`),
      ["nvs=data nvs", "otadata=data otadata", "phy_init=data phy", "ota_0=app ota_0", "ota_1=app ota_1"],
    );
    assert.equal(doc.app.ok, true);
    assert.equal(doc.app.slot.size, 0x180000);
    assert.equal(
      doc.commands.write,
      `esptool.py --chip esp32 --port COM3 --baud 921600 write_flash 0x1000 ${f("no-md5.bin")}`,
    );
  });

  test("a table without two OTA slots is refused (12): the board could not be updated over the air", async () => {
    const r = await plan("--chip", "esp32", "--firmware", f("ESP32_GENERIC.bin"));
    assert.equal(r.code, 12);
    assert.ok(r.error instanceof FlashPlanError);
    assert.equal(r.stdout, "");
    assert.equal(
      r.error.message,
      `${f("ESP32_GENERIC.bin")} has no OTA layout: its partition table has the app partition factory at 0x10000 but not otadata and two OTA slots (ota_0, ota_1), so a board flashed with it cannot be updated over the air. Flash the ESP32_GENERIC OTA variant (ESP32_GENERIC-OTA-<version>.bin on micropython.org, or BOARD_VARIANT=OTA), whose table has otadata, ota_0 and ota_1.`,
    );
  });

  test("a file for another chip is refused (12), in both directions", async () => {
    const s3 = await plan("--chip", "esp32", "--firmware", f("ESP32_GENERIC_S3-OTA.bin"));
    assert.equal(s3.code, 12);
    assert.match(
      String((s3.error as Error).message),
      /is built for ESP32-S3 \(its bootloader sits at 0x0\), but --chip says ESP32, whose bootloader belongs at 0x1000: the chip would not boot it\./,
    );
    const wrong = await plan("--chip", "esp32s3", "--firmware", f("ESP32_GENERIC-OTA.bin"));
    assert.equal(wrong.code, 12);
    assert.match(
      String((wrong.error as Error).message),
      /is built for ESP32 \(its bootloader sits at 0x1000\), but --chip says ESP32-S3, whose bootloader belongs at 0x0/,
    );
  });

  test("an S3 firmware.bin starts at 0x0 and is written there", async () => {
    const r = await plan("--chip", "esp32s3", "--firmware", f("ESP32_GENERIC_S3-OTA.bin"));
    assert.equal(r.code, 0, String(r.error));
    assert.ok(r.stdout.includes(`write_flash 0x0 ${f("ESP32_GENERIC_S3-OTA.bin")}\n`));
    assert.ok(r.stdout.includes("\n  0x000000-0x008000  bootloader\n"));
  });

  test("a partition table whose MD5 differs is refused (14)", async () => {
    const r = await plan("--chip", "esp32", "--firmware", f("bad-md5.bin"));
    assert.equal(r.code, 14);
    assert.ok(r.error instanceof Esp32ImageError);
    assert.match(
      r.error.message,
      /the partition table's MD5 is [0-9a-f]{32}, its entries give [0-9a-f]{32}: the table is damaged/,
    );
  });

  test("a damaged app is refused by the app checks (10)", async () => {
    const r = await plan("--chip", "esp32", "--firmware", f("damaged.bin"));
    assert.equal(r.code, 10);
    assert.ok(r.error instanceof PreflightError);
    assert.match(
      r.error.message,
      /'s app at 0x10000 must not go to this device:\n- the checksum byte is 0x[0-9a-f]{2}, the segments give/,
    );
  });

  test("micropython.bin alone is refused (14) and named as the file for later updates", async () => {
    const r = await plan("--chip", "esp32", "--firmware", f("micropython.bin"));
    assert.equal(r.code, 14);
    assert.match(
      String((r.error as Error).message),
      /is an app image only \(micropython\.bin, the \.app-bin file\): that is what later updates over the air take\. The first flash needs the merged firmware\.bin/,
    );
  });

  test("without --chip the ESP8266 plan still needs --bootloader (2)", async () => {
    const r = await plan("--firmware", f("ESP32_GENERIC-OTA.bin"));
    assert.equal(r.code, 2);
    assert.ok(r.error instanceof UsageError);
    assert.match(r.error.message, /Give --bootloader yaota8266\.bin for an ESP8266, or --chip esp32/);
  });
});
