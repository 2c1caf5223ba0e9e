/** esp_err_t values of ESP-IDF that the ESP32 board model returns, with esp_err_to_name()'s names (shared by the emulator and the agent host). */
export const EspErr = {
  OK: 0,
  FAIL: -1,
  NO_MEM: 0x101,
  INVALID_ARG: 0x102,
  INVALID_STATE: 0x103,
  INVALID_SIZE: 0x104,
  NOT_FOUND: 0x105,
  OTA_VALIDATE_FAILED: 0x1503,
} as const;

export const ESP_ERR_NAMES: Readonly<Record<number, string>> = {
  [EspErr.FAIL]: "ESP_FAIL",
  [EspErr.NO_MEM]: "ESP_ERR_NO_MEM",
  [EspErr.INVALID_ARG]: "ESP_ERR_INVALID_ARG",
  [EspErr.INVALID_STATE]: "ESP_ERR_INVALID_STATE",
  [EspErr.INVALID_SIZE]: "ESP_ERR_INVALID_SIZE",
  [EspErr.NOT_FOUND]: "ESP_ERR_NOT_FOUND",
  [EspErr.OTA_VALIDATE_FAILED]: "ESP_ERR_OTA_VALIDATE_FAILED",
};
