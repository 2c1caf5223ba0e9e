/**
 * ESP-IDF's second-stage bootloader as MicroPython's ESP32 builds configure
 * it (CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE and
 * CONFIG_BOOTLOADER_SKIP_VALIDATE_IN_DEEP_SLEEP since v1.21), following
 * bootloader_utility.c: which app it loads at a reset, and what it writes to
 * otadata on the way.
 */
import { bootableAppImage } from "./esp32-image-check.ts";
import { type Esp32Storage, partitionBytes, readOtadata, writeOtadata } from "./esp32-ota-ops.ts";
import { activeEntry, isInvalidEntry, OtaState, otadataCrc } from "./esp32-otadata.ts";
import {
  type Esp32PartitionEntry,
  findPartition,
  otaSlots,
  PartitionSubtype,
  PartitionType,
} from "./esp32-partition-table.ts";

/** What reset the chip: the bootloader reads otadata at every one except a deep-sleep wake. */
export type Esp32ResetKind = "power-on" | "software" | "panic" | "watchdog" | "deepsleep";

/** machine.reset_cause() the app then reads (modmachine.c): esp_restart and a panic are HARD_RESET. */
export const ESP32_RESET_CAUSE: Readonly<Record<Esp32ResetKind, number>> = {
  "power-on": 1,
  software: 2,
  panic: 2,
  watchdog: 3,
  deepsleep: 4,
};

export interface Esp32BootResult {
  /** The app partition loaded, or null: nothing bootable (the chip resets again and again). */
  partition: Esp32PartitionEntry | null;
  /** A deep-sleep wake that booted the partition of the last boot without reading otadata. */
  fastBoot: boolean;
  /** What the bootloader logs, in ESP-IDF's words. */
  log: string[];
}

const FACTORY_INDEX = -1;
const hex = (n: number) => `0x${n.toString(16)}`;

function partitionAt(s: Esp32Storage, index: number): Esp32PartitionEntry | undefined {
  if (index === FACTORY_INDEX) return findPartition(s.table, PartitionType.APP, PartitionSubtype.APP_FACTORY);
  return otaSlots(s.table)[index];
}

/** bootloader_utility_get_selected_boot_partition, and whether otadata held its initial (erased) contents. */
function selectBootIndex(s: Esp32Storage, log: string[]): { index: number; initial: boolean } {
  const entries = readOtadata(s);
  if (!entries) return { index: FACTORY_INDEX, initial: false };
  for (const i of [0, 1] as const) {
    const e = entries[i];
    if (e.state === OtaState.PENDING_VERIFY) {
      // Booted last time and never confirmed: the app did not make it.
      log.push(`otadata[${i}] (seq ${e.seq}) was still PENDING_VERIFY: marked ABORTED`);
      entries[i] = { ...e, state: OtaState.ABORTED };
      writeOtadata(s, i, entries[i]);
    }
  }
  const slots = otaSlots(s.table);
  const factory = partitionAt(s, FACTORY_INDEX);
  if ((isInvalidEntry(entries[0]) && isInvalidEntry(entries[1])) || slots.length === 0) {
    if (factory) {
      log.push("Defaulting to factory image");
      return { index: FACTORY_INDEX, initial: false };
    }
    log.push("No factory image, trying OTA 0");
    const empty = (e: (typeof entries)[0]) => e.seq === 0xffffffff || e.crc !== otadataCrc(e.seq);
    return { index: 0, initial: empty(entries[0]) && empty(entries[1]) };
  }
  const active = activeEntry(entries);
  if (active === -1) {
    log.push(
      factory
        ? "ota data partition invalid, falling back to factory"
        : "ota data partition invalid and no factory, will try all partitions",
    );
    return { index: FACTORY_INDEX, initial: false };
  }
  const entry = entries[active];
  const index = ((entry.seq - 1) >>> 0) % slots.length;
  if (entry.state === OtaState.NEW) {
    log.push(`otadata[${active}] (seq ${entry.seq}) is NEW: marked PENDING_VERIFY`);
    writeOtadata(s, active, { ...entry, state: OtaState.PENDING_VERIFY });
  }
  return { index, initial: false };
}

/** Tries one partition; on success writes the initial otadata entry as set_actual_ota_seq does. */
function tryLoad(
  s: Esp32Storage,
  index: number,
  initial: boolean,
  log: string[],
): Esp32PartitionEntry | null {
  const p = partitionAt(s, index);
  if (!p) return null;
  const verdict = bootableAppImage(partitionBytes(s, p), s.chipId);
  if (verdict !== null) {
    log.push(
      `Software will try the next app partition: ${p.label} at ${hex(p.address)} is not bootable (${verdict})`,
    );
    return null;
  }
  if (index > FACTORY_INDEX && initial) {
    const seq = index + 1;
    writeOtadata(s, 0, {
      seq,
      label: new Uint8Array(20).fill(0xff),
      state: OtaState.VALID,
      crc: otadataCrc(seq),
    });
    log.push(`Set actual ota_seq=${seq} in otadata[0]`);
  }
  log.push(`Loaded app from partition at offset ${hex(p.address)} (${p.label})`);
  return p;
}

/**
 * One boot. `lastBooted` is the partition the bootloader loaded last time,
 * which it keeps in RTC memory: a deep-sleep wake boots it again at once,
 * without reading otadata, so a set_boot() followed by deepsleep() runs the
 * old app (the deep-sleep trap).
 */
export function runBootloader(
  s: Esp32Storage,
  kind: Esp32ResetKind,
  lastBooted: Esp32PartitionEntry | null,
): Esp32BootResult {
  const log: string[] = [];
  if (kind === "deepsleep" && lastBooted) {
    // bootloader_load_image_no_verify: loads it unchecked, so only an unreadable header stops it.
    if (s.flash.read(lastBooted.address, 1)[0] === 0xe9) {
      log.push(`Fast booting app from partition at offset ${hex(lastBooted.address)} (${lastBooted.label})`);
      return { partition: lastBooted, fastBoot: true, log };
    }
    log.push("Fast booting is not successful");
    log.push("Try to load an app as usual with all validations");
  }
  const { index, initial } = selectBootIndex(s, log);
  const count = otaSlots(s.table).length;
  // As bootloader_utility_load_boot_image: back from the chosen slot to factory, then forward.
  for (let i = index; i >= FACTORY_INDEX; i--) {
    const p = tryLoad(s, i, initial, log);
    if (p) return { partition: p, fastBoot: false, log };
  }
  for (let i = index + 1; i < count; i++) {
    const p = tryLoad(s, i, initial, log);
    if (p) return { partition: p, fastBoot: false, log };
  }
  log.push("No bootable app partitions in the partition table");
  return { partition: null, fastBoot: false, log };
}
