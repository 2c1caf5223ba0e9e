/**
 * The app side of ESP-IDF's partition and OTA API over the board's flash
 * (esp_partition.c, esp_ota_ops.c): what esp32.Partition calls. Each
 * function returns an esp_err_t where ESP-IDF does, never throws for bad
 * arguments, so the Python fake can raise what the port raises.
 */
import { EspErr } from "../firmware/esp-err.ts";
import { verifyAppImage } from "./esp32-image-check.ts";
import {
  activeEntry,
  decodeOtadataEntry,
  encodeOtadataEntry,
  isInvalidEntry,
  OTADATA_ENTRY_LENGTH,
  OTADATA_SECTOR,
  type OtadataEntry,
  OtaState,
  withSeq,
} from "./esp32-otadata.ts";
import {
  type Esp32PartitionEntry,
  type Esp32PartitionTable,
  findPartition,
  otaSlots,
  PartitionSubtype,
  PartitionType,
} from "./esp32-partition-table.ts";
import type { Flash } from "./flash.ts";

export const SECTOR = 0x1000;

/** The board's flash and table, what every call works on. */
export interface Esp32Storage {
  readonly flash: Flash;
  readonly table: Esp32PartitionTable;
  /** The chip id in an app image this chip runs (0: ESP32). */
  readonly chipId: number;
}

export function otadataPartition(s: Esp32Storage): Esp32PartitionEntry | undefined {
  return findPartition(s.table, PartitionType.DATA, PartitionSubtype.DATA_OTA);
}

/** read_otadata: both entries, or undefined when the table has no otadata partition. */
export function readOtadata(s: Esp32Storage): [OtadataEntry, OtadataEntry] | undefined {
  const p = otadataPartition(s);
  if (!p) return undefined;
  return [
    decodeOtadataEntry(s.flash.read(p.address, OTADATA_ENTRY_LENGTH)),
    decodeOtadataEntry(s.flash.read(p.address + OTADATA_SECTOR, OTADATA_ENTRY_LENGTH)),
  ];
}

/** Erases entry `index`'s sector and writes the entry (rewrite_ota_seq, the bootloader's write_otadata). */
export function writeOtadata(s: Esp32Storage, index: 0 | 1, entry: OtadataEntry): void {
  const p = otadataPartition(s);
  if (!p) return;
  const at = p.address + OTADATA_SECTOR * index;
  s.flash.eraseSector(at / SECTOR);
  s.flash.write(at, encodeOtadataEntry(entry));
}

function inRange(p: Esp32PartitionEntry, offset: number, size: number): number {
  if (!Number.isInteger(offset) || offset < 0 || offset > p.size) return EspErr.INVALID_ARG;
  if (!Number.isInteger(size) || size < 0 || offset + size > p.size) return EspErr.INVALID_SIZE;
  return EspErr.OK;
}

/** esp_partition_read */
export function partitionRead(
  s: Esp32Storage,
  p: Esp32PartitionEntry,
  offset: number,
  size: number,
): Uint8Array | number {
  const e = inRange(p, offset, size);
  return e === EspErr.OK ? s.flash.read(p.address + offset, size) : e;
}

/** esp_partition_write: NOR semantics (bits only clear), no erase. */
export function partitionWrite(
  s: Esp32Storage,
  p: Esp32PartitionEntry,
  offset: number,
  data: Uint8Array,
): number {
  const e = inRange(p, offset, data.length);
  if (e === EspErr.OK) s.flash.write(p.address + offset, data);
  return e;
}

/** esp_partition_erase_range: whole 4 KiB sectors only. */
export function partitionErase(
  s: Esp32Storage,
  p: Esp32PartitionEntry,
  offset: number,
  size: number,
): number {
  const e = inRange(p, offset, size);
  if (e !== EspErr.OK) return e;
  if (size % SECTOR !== 0) return EspErr.INVALID_SIZE;
  if (offset % SECTOR !== 0) return EspErr.INVALID_ARG;
  for (let at = p.address + offset; at < p.address + offset + size; at += SECTOR)
    s.flash.eraseSector(at / SECTOR);
  return EspErr.OK;
}

/** find_default_boot_partition: factory, else the first OTA slot. */
function defaultBootPartition(s: Esp32Storage): Esp32PartitionEntry | undefined {
  return findPartition(s.table, PartitionType.APP, PartitionSubtype.APP_FACTORY) ?? otaSlots(s.table)[0];
}

/** esp_ota_get_boot_partition: what otadata selects (undefined without otadata: Partition(BOOT) raises ENOENT). */
export function bootPartition(s: Esp32Storage): Esp32PartitionEntry | undefined {
  const entries = readOtadata(s);
  if (!entries) return undefined;
  const slots = otaSlots(s.table);
  if ((isInvalidEntry(entries[0]) && isInvalidEntry(entries[1])) || slots.length === 0) {
    return defaultBootPartition(s);
  }
  const active = activeEntry(entries);
  if (active === -1) return defaultBootPartition(s);
  return slots[((entries[active].seq - 1) >>> 0) % slots.length];
}

/** esp_ota_get_next_update_partition: the OTA slot after `from`, else the first; undefined without slots. */
export function nextUpdatePartition(
  s: Esp32Storage,
  from: Esp32PartitionEntry,
): Esp32PartitionEntry | undefined {
  const slots = otaSlots(s.table);
  const at = slots.findIndex((p) => p.label === from.label);
  return at >= 0 && at + 1 < slots.length ? slots[at + 1] : slots[0];
}

/** esp_ota_set_boot_partition, with rollback enabled (the new entry is NEW). */
export function setBootPartition(s: Esp32Storage, p: Esp32PartitionEntry): number {
  if (verifyAppImage(partitionBytes(s, p), s.chipId) !== null) return EspErr.OTA_VALIDATE_FAILED;
  if (p.type !== PartitionType.APP) return EspErr.INVALID_ARG;
  if (p.subtype === PartitionSubtype.APP_FACTORY) {
    const otadata = otadataPartition(s);
    return otadata ? partitionErase(s, otadata, 0, otadata.size) : EspErr.NOT_FOUND;
  }
  const entries = readOtadata(s);
  if (!entries) return EspErr.NOT_FOUND;
  const count = otaSlots(s.table).length;
  const id = p.subtype & 0x0f;
  if (id >= count) return EspErr.INVALID_ARG;
  const active = activeEntry(entries);
  if (active === -1) {
    writeOtadata(s, 0, withSeq(entries[0], id + 1, OtaState.NEW));
    return EspErr.OK;
  }
  // The smallest seq >= the active one that maps to slot `id` ((seq - 1) % count == id).
  const base = (id + 1) % count;
  let i = 0;
  while (entries[active].seq > base + i * count) i++;
  const next = active === 0 ? 1 : 0;
  writeOtadata(s, next, withSeq(entries[next], base + i * count, OtaState.NEW));
  return EspErr.OK;
}

/** esp_ota_mark_app_valid_cancel_rollback: the active entry becomes VALID (whatever slot runs). */
export function markAppValid(s: Esp32Storage): number {
  const entries = readOtadata(s);
  if (!entries) return EspErr.NOT_FOUND;
  const active = activeEntry(entries);
  if (active === -1 || otaSlots(s.table).length === 0) return EspErr.FAIL; // "Running firmware is factory"
  const entry = entries[active];
  if (entry.state !== OtaState.VALID) writeOtadata(s, active, withSeq(entry, entry.seq, OtaState.VALID));
  return EspErr.OK;
}

export function partitionBytes(s: Esp32Storage, p: Esp32PartitionEntry): Uint8Array {
  return s.flash.read(p.address, p.size);
}
