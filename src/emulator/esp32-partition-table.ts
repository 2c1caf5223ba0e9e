import { ESP32_OTA_LAYOUT } from "../firmware/esp32-layout.ts";

/** esp_partition_type_t and the subtypes MicroPython's tables use (ESP-IDF esp_partition.h). */
export const PartitionType = { APP: 0x00, DATA: 0x01 } as const;
export const PartitionSubtype = {
  APP_FACTORY: 0x00,
  APP_OTA_0: 0x10,
  APP_OTA_1: 0x11,
  DATA_OTA: 0x00,
  DATA_PHY: 0x01,
  DATA_NVS: 0x02,
  DATA_FAT: 0x81,
  ANY: 0xff,
} as const;

/** One entry of the partition table, as `esp32.Partition.info()` reports it. */
export interface Esp32PartitionEntry {
  label: string;
  type: number;
  subtype: number;
  address: number;
  size: number;
  encrypted: boolean;
}

/** A board's partition table, with the "vfs" partition main.c registers after it. */
export interface Esp32PartitionTable {
  /** The csv it comes from. */
  name: string;
  flashSize: number;
  /** MICROPY_HW_BOARD_NAME of the build that uses it (os.uname().machine is "<board> with ESP32"). */
  boardName: string;
  entries: readonly Esp32PartitionEntry[];
}

const entry = (label: string, type: number, subtype: number, address: number, size: number) => ({
  label,
  type,
  subtype,
  address,
  size,
  encrypted: false,
});

const [ota0, ota1] = ESP32_OTA_LAYOUT.slots;

/**
 * ESP32_GENERIC's OTA variant: partitions-4MiB-ota.csv (nvs, otadata,
 * phy_init, ota_0, ota_1) and the "vfs" data partition main.c registers from
 * the end of the table to the end of the 4 MiB flash (subtype FAT, formatted
 * as LittleFS).
 */
export const ESP32_OTA_TABLE: Esp32PartitionTable = {
  name: "partitions-4MiB-ota.csv",
  flashSize: ESP32_OTA_LAYOUT.flashSize,
  boardName: "Generic ESP32 module with OTA",
  entries: [
    entry("nvs", PartitionType.DATA, PartitionSubtype.DATA_NVS, 0x9000, 0x4000),
    entry(
      "otadata",
      PartitionType.DATA,
      PartitionSubtype.DATA_OTA,
      ESP32_OTA_LAYOUT.otadata.offset,
      ESP32_OTA_LAYOUT.otadata.size,
    ),
    entry("phy_init", PartitionType.DATA, PartitionSubtype.DATA_PHY, 0xf000, 0x1000),
    entry(ota0.label, PartitionType.APP, PartitionSubtype.APP_OTA_0, ota0.offset, ota0.size),
    entry(ota1.label, PartitionType.APP, PartitionSubtype.APP_OTA_1, ota1.offset, ota1.size),
    entry(
      "vfs",
      PartitionType.DATA,
      PartitionSubtype.DATA_FAT,
      ESP32_OTA_LAYOUT.filesystem.offset,
      ESP32_OTA_LAYOUT.filesystem.size,
    ),
  ],
};

/**
 * Every other ESP32_GENERIC build: partitions-4MiBplus.csv, one `factory`
 * app and no otadata, so the board cannot update its firmware in place.
 */
export const ESP32_FACTORY_TABLE: Esp32PartitionTable = {
  name: "partitions-4MiBplus.csv",
  flashSize: 0x400000,
  boardName: "Generic ESP32 module",
  entries: [
    entry("nvs", PartitionType.DATA, PartitionSubtype.DATA_NVS, 0x9000, 0x6000),
    entry("phy_init", PartitionType.DATA, PartitionSubtype.DATA_PHY, 0xf000, 0x1000),
    entry("factory", PartitionType.APP, PartitionSubtype.APP_FACTORY, 0x10000, 0x1f0000),
    entry("vfs", PartitionType.DATA, PartitionSubtype.DATA_FAT, 0x200000, 0x200000),
  ],
};

/** esp_partition_find_first: the first entry of this type whose subtype and label match. */
export function findPartition(
  table: Esp32PartitionTable,
  type: number,
  subtype: number = PartitionSubtype.ANY,
  label?: string,
): Esp32PartitionEntry | undefined {
  return findPartitions(table, type, subtype, label)[0];
}

/** esp_partition_find, in table order (type 0xff matches any type, as ESP_PARTITION_TYPE_ANY). */
export function findPartitions(
  table: Esp32PartitionTable,
  type: number,
  subtype: number = PartitionSubtype.ANY,
  label?: string,
): Esp32PartitionEntry[] {
  return table.entries.filter(
    (p) =>
      (type === 0xff || p.type === type) &&
      (subtype === PartitionSubtype.ANY || p.subtype === subtype) &&
      (label === undefined || p.label === label),
  );
}

/** The OTA app slots in subtype order (ota_0, ota_1, ...): get_ota_partition_count()'s partitions. */
export function otaSlots(table: Esp32PartitionTable): Esp32PartitionEntry[] {
  const slots: Esp32PartitionEntry[] = [];
  for (let i = 0; i < 16; i++) {
    const p = findPartition(table, PartitionType.APP, PartitionSubtype.APP_OTA_0 + i);
    if (!p) break;
    slots.push(p);
  }
  return slots;
}
