import { UsageError } from "../errors.ts";
import { hex } from "./format.ts";

/** A chip of the ESP32 family as an app image's extended header names it (ESP-IDF's esp_chip_id_t). */
export interface Esp32Chip {
  /** The header's `chip_id`. */
  id: number;
  /** esptool's `--chip` word: "esp32s3". */
  name: string;
  /** As people write it: "ESP32-S3". */
  label: string;
}

/** The chip ids ESP-IDF v5.5 defines for the targets MicroPython builds or may build. */
export const ESP32_CHIPS: readonly Esp32Chip[] = [
  { id: 0x0000, name: "esp32", label: "ESP32" },
  { id: 0x0002, name: "esp32s2", label: "ESP32-S2" },
  { id: 0x0005, name: "esp32c3", label: "ESP32-C3" },
  { id: 0x0009, name: "esp32s3", label: "ESP32-S3" },
  { id: 0x000c, name: "esp32c2", label: "ESP32-C2" },
  { id: 0x000d, name: "esp32c6", label: "ESP32-C6" },
  { id: 0x0010, name: "esp32h2", label: "ESP32-H2" },
];

/** The ESP8266 is no ESP32, but `--chip esp8266` names it the same way. */
export const ESP8266_CHIP_NAME = "esp8266";

/** The chip with header id `id`, or a placeholder that names the number. */
export function esp32ChipById(id: number): Esp32Chip & { known: boolean } {
  const chip = ESP32_CHIPS.find((c) => c.id === id);
  if (chip) return { ...chip, known: true };
  return { id, name: `unknown-${id}`, label: `an unknown chip (id ${hex(id, 4)})`, known: false };
}

/** The chip names `--chip` takes (the ESP32 family and the ESP8266). */
export function chipNames(): string[] {
  return [ESP8266_CHIP_NAME, ...ESP32_CHIPS.map((c) => c.name)];
}

/**
 * Reads a `--chip` value as esptool spells it, also with a dash or in
 * capitals ("ESP32-S3"). Returns "esp8266" or an ESP32-family chip; throws
 * UsageError naming the choices otherwise.
 */
export function parseChipName(value: string): ChipChoice {
  const word = value.toLowerCase().replace(/[-_ ]/g, "");
  if (word === ESP8266_CHIP_NAME) return ESP8266_CHIP_NAME;
  const chip = ESP32_CHIPS.find((c) => c.name === word);
  if (chip) return chip;
  throw new UsageError(`Unknown chip "${value}": give one of ${chipNames().join(", ")}.`);
}

/** What `--chip` names: a chip of the ESP32 family, or the ESP8266. */
export type ChipChoice = Esp32Chip | typeof ESP8266_CHIP_NAME;
