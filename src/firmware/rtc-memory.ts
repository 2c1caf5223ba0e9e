/**
 * The ESP8266's RTC user memory as boot8266 and MicroPython's
 * `machine.RTC().memory()` use it: one definition for the emulated
 * bootloader, the simulated agent and the CLI.
 */

/** RTC user memory MicroPython can use (`ValueError` beyond). */
export const RTC_MEMORY_MAX = 492;

/**
 * What `ota.start()` writes with `machine.RTC().memory(b"yaotaota")` before a
 * reset: boot8266 with ulno's RTC patch then enters OTA mode.
 */
export const RTC_MAGIC: Uint8Array = new Uint8Array(Buffer.from("yaotaota", "latin1"));

/** True when RTC memory holds the magic as boot8266 checks it (at least 8 bytes, starting with it). */
export function hasRtcMagic(rtc: Uint8Array | undefined): boolean {
  return rtc !== undefined && rtc.length >= RTC_MAGIC.length && RTC_MAGIC.every((b, i) => rtc[i] === b);
}
