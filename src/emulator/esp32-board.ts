import { EspErr } from "../firmware/esp-err.ts";
import { parseEsp32AppImage } from "../firmware/esp32-app-image.ts";
import { type Esp32BootResult, type Esp32ResetKind, runBootloader } from "./esp32-bootloader.ts";
import { bootableAppImage, verifyAppImage } from "./esp32-image-check.ts";
import {
  bootPartition,
  type Esp32Storage,
  markAppValid,
  nextUpdatePartition,
  otadataPartition,
  partitionErase,
  partitionRead,
  partitionWrite,
  readOtadata,
  SECTOR,
  setBootPartition,
} from "./esp32-ota-ops.ts";
import { type OtadataEntry, otadataCrc as otadataCrcOf, otaStateName } from "./esp32-otadata.ts";
import {
  ESP32_OTA_TABLE,
  type Esp32PartitionEntry,
  type Esp32PartitionTable,
} from "./esp32-partition-table.ts";
import { type Esp32Timing, eraseMs, NO_ESP32_DELAY, programMs, readMs } from "./esp32-timing.ts";
import { type Flash, MemoryFlash } from "./flash.ts";

export interface Esp32BoardOptions {
  /** Default the OTA variant's table (ESP32_OTA_TABLE); ESP32_FACTORY_TABLE for a board with one app slot. */
  table?: Esp32PartitionTable;
  /** Default a fresh (erased) flash of the table's size. */
  flash?: Flash;
  /** The chip id app images must carry (0: ESP32). */
  chipId?: number;
  /** What flash calls and a boot cost in time (default none: tests run at full speed). */
  timing?: Esp32Timing;
}

/** One otadata entry as people read it. */
export interface OtadataView {
  seq: number;
  state: string;
  /** Whether its CRC matches its seq. */
  crcOk: boolean;
  /** The OTA slot it selects, by label (null for an erased entry). */
  slot: string | null;
}

/**
 * An emulated ESP32 board: 4 MiB of NOR flash with a partition table,
 * otadata, ESP-IDF's bootloader (rollback, the deep-sleep fast boot) and the
 * partition/OTA calls `esp32.Partition` makes. It implements agent-host's
 * Esp32BoardPort, so a simulated device's Python runs on it.
 */
export class Esp32Board implements Esp32Storage {
  readonly flash: Flash;
  readonly table: Esp32PartitionTable;
  readonly chipId: number;
  readonly timing: Esp32Timing;
  private running: Esp32PartitionEntry | null = null;
  /** What the bootloader keeps in RTC memory for the deep-sleep fast boot; lost at power-off. */
  private lastBooted: Esp32PartitionEntry | null = null;

  constructor(options: Esp32BoardOptions = {}) {
    this.table = options.table ?? ESP32_OTA_TABLE;
    this.flash = options.flash ?? new MemoryFlash(this.table.flashSize);
    this.chipId = options.chipId ?? 0;
    this.timing = options.timing ?? NO_ESP32_DELAY;
  }

  get size(): number {
    return this.flash.size;
  }

  get boardName(): string {
    return this.table.boardName;
  }

  read(offset: number, length: number): Uint8Array {
    return this.flash.read(offset, length);
  }

  /** Writes an app image into a partition as `esptool write_flash` does (erasing the sectors first). */
  writeImage(label: string, image: Uint8Array): void {
    const p = this.partition(label);
    if (image.length > p.size) {
      throw new RangeError(`an image of ${image.length} bytes does not fit ${label} (${p.size} bytes)`);
    }
    const sectors = Math.ceil(image.length / SECTOR);
    for (let i = 0; i < sectors; i++) this.flash.eraseSector(p.address / SECTOR + i);
    this.flash.write(p.address, image);
  }

  /** Erases otadata as `esptool erase_region 0xd000 0x2000` (or erase_flash) leaves it. */
  eraseOtadata(): void {
    const p = otadataPartition(this);
    if (p) partitionErase(this, p, 0, p.size);
  }

  /** Both otadata entries decoded, or null on a table without otadata. */
  otadata(): [OtadataView, OtadataView] | null {
    const entries = readOtadata(this);
    if (!entries) return null;
    return [this.view(entries[0]), this.view(entries[1])];
  }

  /** The partition the app runs from (null before the first boot or when nothing booted). */
  get runningLabel(): string | null {
    return this.running?.label ?? null;
  }

  /** The app description's ELF SHA-256 (64 hex) of the image in `label`, or null when it holds none. */
  elfSha256(label: string): string | null {
    const p = this.partition(label);
    const head = this.flash.read(p.address, 0xd0);
    if (head[0] !== 0xe9 || new DataView(head.buffer).getUint32(0x20, true) !== 0xabcd5432) return null;
    return Buffer.from(head.subarray(0xb0, 0xd0)).toString("hex");
  }

  /** Why the image in `label` would not pass set_boot() (null: it would). */
  verify(label: string): string | null {
    const p = this.partition(label);
    return verifyAppImage(this.flash.read(p.address, p.size), this.chipId);
  }

  /** Why the bootloader would not load the image in `label` (null: it would). */
  bootable(label: string): string | null {
    const p = this.partition(label);
    return bootableAppImage(this.flash.read(p.address, p.size), this.chipId);
  }

  /** The chip resets: the bootloader picks the app (or none) and this becomes the running partition. */
  boot(kind: Esp32ResetKind): Esp32BootResult {
    if (kind === "power-on") this.lastBooted = null;
    const result = runBootloader(this, kind, this.lastBooted);
    this.running = result.partition;
    this.lastBooted = result.partition;
    return result;
  }

  /** The power goes: nothing runs, and RTC memory (the fast-boot partition) is lost. */
  powerOff(): void {
    this.running = null;
    this.lastBooted = null;
  }

  // --- Esp32BoardPort -------------------------------------------------------

  partitions(): readonly Esp32PartitionEntry[] {
    return this.table.entries;
  }

  bootPartition(): string | null {
    return bootPartition(this)?.label ?? null;
  }

  runningPartition(): string | null {
    return this.runningLabel;
  }

  nextUpdatePartition(from: string): string | null {
    const p = this.find(from);
    return p ? (nextUpdatePartition(this, p)?.label ?? null) : null;
  }

  partitionRead(label: string, offset: number, size: number): Uint8Array | number {
    const p = this.find(label);
    return p ? partitionRead(this, p, offset, size) : EspErr.NOT_FOUND;
  }

  partitionWrite(label: string, offset: number, data: Uint8Array): number {
    const p = this.find(label);
    return p ? partitionWrite(this, p, offset, data) : EspErr.NOT_FOUND;
  }

  partitionErase(label: string, offset: number, size: number): number {
    const p = this.find(label);
    return p ? partitionErase(this, p, offset, size) : EspErr.NOT_FOUND;
  }

  setBoot(label: string): number {
    const p = this.find(label);
    return p ? setBootPartition(this, p) : EspErr.INVALID_ARG;
  }

  markAppValid(): number {
    return markAppValid(this);
  }

  /**
   * How long a partition call takes on the modelled chip (its timing): an
   * erase per sector, a write per page, a read by its length, set_boot() by
   * the read of the whole image it verifies. Only time: the call's effect is
   * the same with any timing.
   */
  callMs(name: string, args: ReadonlyArray<string | number>): number {
    const t = this.timing;
    const p = this.find(String(args[0] ?? ""));
    if (!p) return 0;
    const offset = Number(args[1]);
    switch (name) {
      case "erase":
        return eraseMs(t, p.address + offset, Number(args[2]));
      case "write":
        return programMs(t, p.address + offset, String(args[2] ?? "").length / 2);
      case "read":
        return readMs(t, Number(args[2]));
      case "set_boot":
        return t.readBytesPerMs > 0 ? readMs(t, this.imageLength(p)) : 0;
      default:
        return 0;
    }
  }

  private imageLength(p: Esp32PartitionEntry): number {
    try {
      return parseEsp32AppImage(this.flash.read(p.address, p.size), p.label).imageLength;
    } catch {
      return 0; // not an image: set_boot() stops at the header
    }
  }

  private find(label: string): Esp32PartitionEntry | undefined {
    return this.table.entries.find((p) => p.label === label);
  }

  private partition(label: string): Esp32PartitionEntry {
    const p = this.find(label);
    if (!p) {
      throw new RangeError(
        `the ${this.table.name} table has no partition "${label}" (it has ${this.table.entries.map((e) => e.label).join(", ")})`,
      );
    }
    return p;
  }

  private view(e: OtadataEntry): OtadataView {
    const slots = this.table.entries.filter((p) => p.type === 0 && p.subtype >= 0x10 && p.subtype < 0x20);
    const erased = e.seq === 0xffffffff;
    return {
      seq: e.seq,
      state: otaStateName(e.state),
      crcOk: !erased && e.crc === otadataCrcOf(e.seq),
      slot: erased || slots.length === 0 ? null : (slots[((e.seq - 1) >>> 0) % slots.length]?.label ?? null),
    };
  }
}
