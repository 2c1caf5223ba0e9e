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
