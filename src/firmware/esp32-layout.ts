/** A region of an ESP32 partition layout. */
export interface Esp32Partition {
  label: string;
  offset: number;
  size: number;
}

/** A partition layout an ESP32 firmware is built for: what an OTA update can write. */
export interface Esp32Layout {
  name: string;
  /** Where it comes from, for people. */
  description: string;
  flashSize: number;
  otadata: Esp32Partition;
  /** The two app slots an update alternates between. */
  slots: readonly [Esp32Partition, Esp32Partition];
  /** The filesystem MicroPython registers at run time after the table. */
  filesystem: Esp32Partition;
}

/**
 * MicroPython's ESP32_GENERIC OTA variant (`BOARD_VARIANT=OTA`, since v1.22):
 * partitions-4MiB-ota.csv, and the "vfs" partition main.c adds from the end
 * of the table to the end of a 4 MiB flash.
 */
export const ESP32_OTA_LAYOUT: Esp32Layout = {
  name: "micropython-ota-4MiB",
  description: "MicroPython ESP32_GENERIC OTA variant (partitions-4MiB-ota.csv)",
  flashSize: 0x400000,
  otadata: { label: "otadata", offset: 0xd000, size: 0x2000 },
  slots: [
    { label: "ota_0", offset: 0x10000, size: 0x180000 },
    { label: "ota_1", offset: 0x190000, size: 0x180000 },
  ],
  filesystem: { label: "vfs", offset: 0x310000, size: 0xf0000 },
};
