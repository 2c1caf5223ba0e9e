/**
 * What differs between the ports an {@link AgentDevice} runs, in numbers:
 * machine.unique_id()'s length, RTC user memory, and reset_cause() at a
 * power-on, after machine.reset() and after a deep sleep.
 */
import { RTC_MEMORY_MAX } from "../firmware/rtc-memory.ts";
import { ResetCause } from "./reset-cause.ts";
import type { BoardChip } from "./worker-protocol.ts";

export interface BoardPort {
  /** For error texts. */
  label: string;
  idLength: number;
  /** MICROPY_HW_RTC_USER_MEM_MAX; 0: no RTC memory. */
  rtcMax: number;
  powerOnCause: number;
  resetCause: number;
  wakeCause: number;
  /** Whether the device boots again by itself after a reset or a deep sleep (no bootloader run by the caller). */
  restartsItself: boolean;
}

export const BOARD_PORTS: Record<BoardChip, BoardPort> = {
  esp8266: {
    label: "an ESP8266",
    idLength: 4,
    rtcMax: RTC_MEMORY_MAX,
    powerOnCause: ResetCause.PWRON_RESET,
    resetCause: ResetCause.SOFT_RESET,
    wakeCause: ResetCause.DEEPSLEEP_RESET,
    restartsItself: true,
  },
  // ports/esp32/modmachine.c; its resets go through ESP-IDF's bootloader, which the simulator runs.
  esp32: {
    label: "an ESP32",
    idLength: 6,
    rtcMax: 2048,
    powerOnCause: 1,
    resetCause: 5,
    wakeCause: 4,
    restartsItself: false,
  },
  // ports/rp2/modmachine.c: pico_get_unique_board_id() is 8 bytes; machine.reset() is a
  // watchdog reboot and deepsleep() a lightsleep then that reset, so both come back as
  // WDT_RESET (3); machine_rtc.c has no user memory.
  rp2: {
    label: "a Pico W (rp2)",
    idLength: 8,
    rtcMax: 0,
    powerOnCause: 1,
    resetCause: 3,
    wakeCause: 3,
    restartsItself: true,
  },
};
