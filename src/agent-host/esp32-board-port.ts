/**
 * What a simulated ESP32's Python modules need from its board: the flash
 * (esp.flash_read) and ESP-IDF's partition and OTA calls behind
 * esp32.Partition. The emulator's Esp32Board is one; calls return an
 * esp_err_t (0 for ESP_OK) where ESP-IDF does.
 */
export interface Esp32PartitionInfo {
  label: string;
  type: number;
  subtype: number;
  address: number;
  size: number;
  encrypted: boolean;
}

export interface Esp32BoardPort {
  /** Flash size in bytes (esp.flash_size()). */
  readonly size: number;
  /** Raw flash (esp.flash_read). */
  read(offset: number, length: number): Uint8Array;
  /** MICROPY_HW_BOARD_NAME of the firmware's build: "Generic ESP32 module with OTA". */
  readonly boardName: string;
  /** The partition table, the run-time "vfs" partition included, in table order. */
  partitions(): readonly Esp32PartitionInfo[];
  /** esp_ota_get_boot_partition(): a label, or null (no otadata: ENOENT). */
  bootPartition(): string | null;
  /** esp_ota_get_running_partition() */
  runningPartition(): string | null;
  /** esp_ota_get_next_update_partition(from): a label, or null on a board without OTA slots. */
  nextUpdatePartition(from: string): string | null;
  partitionRead(label: string, offset: number, size: number): Uint8Array | number;
  partitionWrite(label: string, offset: number, data: Uint8Array): number;
  partitionErase(label: string, offset: number, size: number): number;
  /** esp_ota_set_boot_partition */
  setBoot(label: string): number;
  /** esp_ota_mark_app_valid_cancel_rollback */
  markAppValid(): number;
  /** Optional: how many ms the `esp32_<name>` call with these arguments takes on the modelled chip (the host waits that long before answering). */
  callMs?(name: string, args: ReadonlyArray<string | number>): number;
}
