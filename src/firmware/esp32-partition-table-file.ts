import { createHash } from "node:crypto";
import { Esp32ImageError } from "./esp32-app-image.ts";
import { hex } from "./format.ts";

/** ESP-IDF's partition table holds at most 0xC00 bytes: 95 entries and the MD5 entry. */
export const PARTITION_TABLE_LENGTH = 0xc00;
const ENTRY_LENGTH = 32;
/** esp_partition_type_t, and the subtypes an OTA layout needs (ESP-IDF esp_partition.h). */
const TYPE_APP = 0x00;
const TYPE_DATA = 0x01;
const SUBTYPE_OTA_DATA = 0x00;
const SUBTYPE_APP_FACTORY = 0x00;
const SUBTYPE_APP_OTA_0 = 0x10;

/** One 32-byte entry of a partition table as gen_esp32part.py writes it. */
export interface PartitionTableEntry {
  label: string;
  type: number;
  subtype: number;
  offset: number;
  size: number;
  flags: number;
}

export interface PartitionTableFile {
  entries: PartitionTableEntry[];
  /** "ok" when the MD5 entry (magic 0xEBEB) matches the entries before it, "absent" when there is none. */
  md5: "ok" | "absent";
  /** otadata + ota_0 + ota_1: what an update over the air needs. */
  ota: { otadata: PartitionTableEntry; slots: PartitionTableEntry[] } | null;
}

/** What an entry holds, in words ("app ota_1", "data nvs"). */
export function partitionKind(entry: PartitionTableEntry): string {
  if (entry.type === TYPE_APP) {
    if (entry.subtype === SUBTYPE_APP_FACTORY) return "app factory";
    if (entry.subtype >= SUBTYPE_APP_OTA_0 && entry.subtype < SUBTYPE_APP_OTA_0 + 16)
      return `app ota_${entry.subtype - SUBTYPE_APP_OTA_0}`;
    return `app ${hex(entry.subtype, 2)}`;
  }
  if (entry.type === TYPE_DATA) {
    const names: Record<number, string> = {
      0: "otadata",
      1: "phy",
      2: "nvs",
      129: "fat",
      130: "spiffs",
      131: "littlefs",
    };
    return `data ${names[entry.subtype] ?? hex(entry.subtype, 2)}`;
  }
  return `type ${hex(entry.type, 2)}/${hex(entry.subtype, 2)}`;
}

/**
 * Reads the partition table at `bytes` (flash 0x8000): entries until an
 * erased one (0xFFFF) or the MD5 entry, whose digest is checked. Throws
 * Esp32ImageError when an entry has another magic or the MD5 differs.
 */
export function parsePartitionTable(bytes: Uint8Array, source: string): PartitionTableFile {
  const entries: PartitionTableEntry[] = [];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let md5: PartitionTableFile["md5"] = "absent";
  for (let at = 0; at + ENTRY_LENGTH <= Math.min(bytes.length, PARTITION_TABLE_LENGTH); at += ENTRY_LENGTH) {
    const magic = view.getUint16(at, true);
    if (magic === 0xffff) break;
    if (magic === 0xebeb) {
      const stored = Buffer.from(bytes.subarray(at + 16, at + 32)).toString("hex");
      const computed = createHash("md5").update(bytes.subarray(0, at)).digest("hex");
      if (stored !== computed)
        throw new Esp32ImageError(
          `${source}: the partition table's MD5 is ${stored}, its entries give ${computed}: the table is damaged and the bootloader would refuse it. Download or build the file again.`,
        );
      md5 = "ok";
      break;
    }
    if (magic !== 0x50aa)
      throw new Esp32ImageError(
        `${source}: partition table entry ${at / ENTRY_LENGTH} has magic ${hex(magic, 4)}, not 0x50AA: the table is damaged or this is not a firmware.bin. Download or build the file again.`,
      );
    const label = Buffer.from(bytes.subarray(at + 12, at + 28))
      .toString("latin1")
      .replace(/\0.*$/s, "");
    entries.push({
      label,
      type: bytes[at + 2] as number,
      subtype: bytes[at + 3] as number,
      offset: view.getUint32(at + 4, true),
      size: view.getUint32(at + 8, true),
      flags: view.getUint32(at + 28, true),
    });
  }
  if (entries.length === 0)
    throw new Esp32ImageError(
      `${source}: the partition table at 0x8000 has no entries. Download or build the file again.`,
    );
  const otadata = entries.find((e) => e.type === TYPE_DATA && e.subtype === SUBTYPE_OTA_DATA);
  const slots: PartitionTableEntry[] = [];
  for (let i = 0; i < 16; i++) {
    const slot = entries.find((e) => e.type === TYPE_APP && e.subtype === SUBTYPE_APP_OTA_0 + i);
    if (!slot) break;
    slots.push(slot);
  }
  return { entries, md5, ota: otadata && slots.length >= 2 ? { otadata, slots } : null };
}
