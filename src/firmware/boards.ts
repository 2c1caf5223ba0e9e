import { UsageError } from "../errors.ts";
import type { FlashMode } from "./esp-image.ts";

/** `--board` names a board mpota has no profile for. */
export class UnknownBoardError extends UsageError {}

/** What it takes to flash one kind of board. */
export interface BoardProfile {
  /** The `--board` value. */
  id: string;
  name: string;
  flashSize: number;
  flashMode: FlashMode;
  /** How to put the board into its ROM's serial flash mode, in one line. */
  enterFlashMode: string;
  /** Anything else worth knowing before flashing, or null. */
  note: string | null;
  /** Other names `--board` accepts. */
  aliases: readonly string[];
}

const KiB = 1024;
const MiB = 1024 * KiB;

/**
 * Board profiles. Flash modes: Sonoff devices need `dout` (the seed article:
 * with other modes write_flash seems to succeed but the device prints
 * garbage); ESP-01S modules often carry PUYA flash that also wants `dout`;
 * ESP-12 based boards (NodeMCU, D1 mini) run `dio`. `dout` is the slowest
 * mode and works on every chip, so it is the safe choice when unsure.
 */
export const BOARDS: readonly BoardProfile[] = [
  {
    id: "sonoff-basic",
    name: "Sonoff Basic",
    flashSize: 1 * MiB,
    flashMode: "dout",
    enterFlashMode:
      "Unplug mains; wire 3.3V, GND, TX, RX to the header; hold the button (GPIO0) while connecting 3.3V, release after a second.",
    note: "Never connect the serial adapter while the device is on mains.",
    aliases: ["sonoff", "sonoff basic r2"],
  },
  {
    id: "sonoff-s20",
    name: "Sonoff S20",
    flashSize: 1 * MiB,
    flashMode: "dout",
    enterFlashMode:
      "Open the case off mains; solder or clip 3.3V, GND, TX, RX to the board's pads; hold the button (GPIO0) while connecting 3.3V.",
    note: "Never connect the serial adapter while the device is on mains.",
    aliases: ["s20"],
  },
  {
    id: "sonoff-th",
    name: "Sonoff TH10/TH16",
    flashSize: 1 * MiB,
    flashMode: "dout",
    enterFlashMode:
      "Unplug mains; wire the 4-pin header (3.3V, RX, TX, GND); hold the button (GPIO0) while connecting 3.3V.",
    note: "Never connect the serial adapter while the device is on mains.",
    aliases: ["sonoff th10", "sonoff th16", "th16", "th10"],
  },
  {
    id: "esp-01",
    name: "ESP-01 (blue, 512 KiB)",
    flashSize: 512 * KiB,
    flashMode: "dout",
    enterFlashMode:
      "Tie GPIO0 to GND and CH_PD to 3.3V, then power up or pull RST low briefly; free GPIO0 to run.",
    note: "Most blue ESP-01 modules have 512 KiB of flash: too small for MicroPython's OTA build. Check with `esptool.py flash_id`; if it reports 1MB, use --board esp-01s.",
    aliases: ["esp01 512k"],
  },
  {
    id: "esp-01s",
    name: "ESP-01S (black, 1 MiB)",
    flashSize: 1 * MiB,
    flashMode: "dout",
    enterFlashMode:
      "Tie GPIO0 to GND (CH_PD is pulled up on the module), then power up or pull RST low briefly.",
    note: "Many ESP-01S carry PUYA flash: use dout. A USB adapter without 3.3V headroom may flash fine but fail to run the app.",
    aliases: ["esp01 1m"],
  },
  {
    id: "nodemcu",
    name: "NodeMCU (ESP-12E/F)",
    flashSize: 4 * MiB,
    flashMode: "dio",
    enterFlashMode: "Automatic over USB (esptool toggles DTR/RTS); otherwise hold FLASH and press RST.",
    note: null,
    aliases: ["nodemcu v2", "nodemcu v3", "esp-12e", "esp-12f"],
  },
  {
    id: "wemos-d1-mini",
    name: "Wemos/LOLIN D1 mini",
    flashSize: 4 * MiB,
    flashMode: "dio",
    enterFlashMode:
      "Automatic over USB (esptool toggles DTR/RTS); otherwise hold D3 (GPIO0) to GND and press RST.",
    note: "The D1 mini lite has 1 MiB (ESP8285): use --board generic-1m with --flash-mode dout for it.",
    aliases: ["d1 mini", "d1mini", "lolin d1 mini"],
  },
  {
    id: "generic-1m",
    name: "Generic ESP8266, 1 MiB flash",
    flashSize: 1 * MiB,
    flashMode: "dout",
    enterFlashMode: "Hold GPIO0 low while the chip resets (power up or RST pulse); GPIO2 high, GPIO15 low.",
    note: "dout works on every flash chip; --flash-mode dio or qio is faster where the chip supports it.",
    aliases: ["generic 1 MiB", "1m"],
  },
  {
    id: "generic-4m",
    name: "Generic ESP8266, 4 MiB flash (ESP-12)",
    flashSize: 4 * MiB,
    flashMode: "dio",
    enterFlashMode: "Hold GPIO0 low while the chip resets (power up or RST pulse); GPIO2 high, GPIO15 low.",
    note: "If the device prints garbage after flashing, flash again with --flash-mode dout.",
    aliases: ["generic 4 MiB", "4m", "esp-12"],
  },
];

function normalize(name: string): string {
  return name.toLowerCase().replace(/[^a-z0-9]/g, "");
}

/** Finds a profile by id or name, ignoring case, spaces and punctuation ("Sonoff Basic", "sonoff-basic", "esp01s"). */
export function findBoard(name: string): BoardProfile {
  const wanted = normalize(name);
  const board = BOARDS.find((b) => [b.id, b.name, ...b.aliases].some((n) => normalize(n) === wanted));
  if (!board) {
    throw new UnknownBoardError(
      `No board profile named "${name}". Known boards: ${BOARDS.map((b) => b.id).join(", ")}. For another board give --flash-size and --flash-mode instead.`,
    );
  }
  return board;
}
