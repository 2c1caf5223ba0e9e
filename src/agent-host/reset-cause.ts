/**
 * `machine.reset_cause()` values of the ESP8266 port (the SDK's rst_info
 * reasons). 2 (exception) and 3 (soft watchdog) have no constant in
 * MicroPython but do occur.
 */
export const ResetCause = {
  PWRON_RESET: 0,
  WDT_RESET: 1,
  EXCEPTION_RESET: 2,
  SOFT_WDT_RESET: 3,
  SOFT_RESET: 4,
  DEEPSLEEP_RESET: 5,
  HARD_RESET: 6,
} as const;

export type ResetCauseValue = (typeof ResetCause)[keyof typeof ResetCause];

/** RTC user memory of the ESP8266 port: at most this many bytes (`ValueError` beyond). */
export const RTC_MEMORY_MAX = 492;

/** What `ota.start()` writes to RTC memory; boot8266 with ulno's patch then enters OTA mode. */
export const OTA_RTC_MAGIC = "yaotaota";

/** True when RTC memory holds the OTA magic as boot8266 checks it (length >= 8, starts with it). */
export function hasOtaMagic(rtc: Uint8Array): boolean {
  return rtc.length >= 8 && Buffer.from(rtc.subarray(0, 8)).toString("latin1") === OTA_RTC_MAGIC;
}
