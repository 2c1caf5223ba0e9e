/**
 * A stated cost model for the emulated ESP32's flash and boot, for the
 * bench (issue 20). Estimates from datasheets, not measurements of a board;
 * every figure can be changed. The default costs nothing, so tests run at
 * full speed.
 *
 * Flash figures are the "typical" column of the Winbond W25Q32JV datasheet
 * (rev. H, AC characteristics; a 4 MiB SPI NOR part of the kind ESP32-WROOM-32
 * modules carry): 4 KiB sector erase tSE 45 ms (max 400 ms), 256-byte page
 * program tPP 0.4 ms (max 3 ms). Reads at 40 MHz DIO (the ESP32 default)
 * move about 10 MB/s.
 */
export interface Esp32Timing {
  /** Erasing one 4 KiB sector. */
  sectorEraseMs: number;
  /** Programming one 256-byte page. */
  pageProgramMs: number;
  /** Flash read rate (bytes per ms): set_boot()'s esp_image_verify reads the whole image. */
  readBytesPerMs: number;
  /**
   * From a reset to the agent running with WiFi up: the bootloader loading
   * and checking the app (another read of the image), MicroPython's start,
   * WiFi association and DHCP. A model value (ESP32 station connects take
   * 1-3 s), not from a datasheet.
   */
  bootMs: number;
}

/** No delay at all: the default, so tests stay fast. */
export const NO_ESP32_DELAY: Esp32Timing = {
  sectorEraseMs: 0,
  pageProgramMs: 0,
  readBytesPerMs: 0,
  bootMs: 0,
};

/** The typical figures of the W25Q32JV datasheet and a 1.5 s boot with WiFi connect. */
export const ESP32_TYPICAL: Esp32Timing = {
  sectorEraseMs: 45,
  pageProgramMs: 0.4,
  readBytesPerMs: 10_000,
  bootMs: 1500,
};

const SECTOR = 4096;
const PAGE = 256;

/** The time to erase the sectors `length` bytes at `offset` touch. */
export function eraseMs(timing: Esp32Timing, offset: number, length: number): number {
  if (length <= 0) return 0;
  const first = Math.floor(offset / SECTOR);
  const last = Math.floor((offset + length - 1) / SECTOR);
  return (last - first + 1) * timing.sectorEraseMs;
}

/** The time to program `length` bytes at `offset` (every 256-byte page touched). */
export function programMs(timing: Esp32Timing, offset: number, length: number): number {
  if (length <= 0) return 0;
  const first = Math.floor(offset / PAGE);
  const last = Math.floor((offset + length - 1) / PAGE);
  return (last - first + 1) * timing.pageProgramMs;
}

/** The time to read `length` bytes. */
export function readMs(timing: Esp32Timing, length: number): number {
  return timing.readBytesPerMs > 0 ? length / timing.readBytesPerMs : 0;
}

/**
 * The flash's share of an update of `imageSize` bytes: every sector
 * erased and programmed, then set_boot()'s read of the whole image.
 */
export function esp32FlashFloorMs(imageSize: number, timing: Esp32Timing): number {
  const sectors = Math.ceil(imageSize / SECTOR);
  return sectors * timing.sectorEraseMs + programMs(timing, 0, sectors * SECTOR);
}
