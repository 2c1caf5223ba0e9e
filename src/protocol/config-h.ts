import { MpotaError } from "../errors.ts";
import { EXIT_CODES } from "../exit-codes.ts";
import { type PublicKeyInfo, parseModulusHex } from "./rsa-key.ts";

export class ConfigHError extends MpotaError {
  override readonly exitCode: number = EXIT_CODES.configH.code;
}

/** The modulus as the C string literal for `#define MODULUS`: `\xNN` escapes, big-endian, no leading zero. */
export function modulusCString(key: PublicKeyInfo): string {
  return Array.from(key.modulus, (b) => `\\x${b.toString(16).padStart(2, "0")}`).join("");
}

export interface YaotaSettings {
  /** Where the main app lives; the receiver writes updates there. */
  mainAppOffset: number;
  /** UART speed of the bootloader and receiver logs; 0 keeps the ROM default (74880). */
  baudRate: number;
  /** How long the receiver waits for the next packet before restarting reception. */
  pktWaitMs: number;
  /** Reboot when no first packet arrives within this time. */
  idleRebootMs: number;
  /** GPIO inputs watched after reset; 0 means always enter OTA mode. */
  gpioMask: number;
  /** How long boot8266 watches the GPIOs for a change. */
  gpioWaitMs: number;
}

/** yaota8266's default MAIN_APP_OFFSET (config.h.example): boot8266 + ota-server end here. */
export const DEFAULT_MAIN_APP_OFFSET = 0x3c000;

export const DEFAULT_SETTINGS: YaotaSettings = {
  mainAppOffset: DEFAULT_MAIN_APP_OFFSET,
  baudRate: 115200,
  pktWaitMs: 10000,
  idleRebootMs: 60000,
  gpioMask: 0xf035,
  gpioWaitMs: 3000,
};

const hex = (n: number) => `0x${n.toString(16)}`;

/** A complete, commented config.h for building yaota8266, with the modulus filled in. */
export function renderConfigH(key: PublicKeyInfo, settings: YaotaSettings = DEFAULT_SETTINGS): string {
  const s = settings;
  return `// yaota8266 configuration, written by mpota.
// Copy this file to config.h at the root of the yaota8266 source tree, then run make.
// The RSA modulus below belongs to your own key: only updates signed with the
// matching private key will be accepted by devices built with this file.

// Offset of the main application in flash (the MicroPython "OTA build").
// It must equal the size of yaota8266.bin (boot8266 + ota-server, aligned);
// the default fits upstream's build. Flash firmware-ota.bin at this offset.
#define MAIN_APP_OFFSET ${hex(s.mainAppOffset)}

// Baud rate of the serial log. 0 leaves the ROM default of 74880.
// The receiver prints about 119 bytes per packet and waits for the UART,
// so this setting bounds update speed: 921600 makes updates about 2.5 times
// faster than 115200 (see mpota's README).
#define BAUD_RATE ${s.baudRate}

// Modulus of the RSA public key used to verify every OTA packet
// (${key.bits} bits; the public exponent is hard-coded to 3).
#define MODULUS "${modulusCString(key)}"

// How long to wait for the next expected packet before assuming the transfer
// is broken and restarting reception from the beginning (milliseconds).
#define PKT_WAIT_MS ${s.pktWaitMs}

// If no first OTA packet arrives within this time, reboot (milliseconds).
// This keeps a device from staying in OTA mode when it entered it by accident.
#define IDLE_REBOOT_MS ${s.idleRebootMs}

// The two parameters below are also stored in the boot sector (at offset 0xf00)
// and can be changed there without rebuilding.

// GPIO inputs watched after reset; any change enters OTA mode. 0 enters OTA
// mode on every boot. The default ignores UART0 and the flash's QSPI pins.
#define GPIO_MASK ${hex(s.gpioMask)}

// How long boot8266 watches the GPIOs for a change (milliseconds).
#define GPIO_WAIT_MS ${s.gpioWaitMs}
`;
}

function parseCNumber(text: string, name: string, source: string): number {
  const value = Number(text.replace(/[uUlL]+$/, ""));
  if (!Number.isFinite(value) || value < 0) {
    throw new ConfigHError(
      `${source}: ${name} is "${text}", not a number. Fix the #define or regenerate the file with \`mpota config-h\`.`,
    );
  }
  return value;
}

/** Reads the modulus and settings back from a yaota8266 config.h. */
export function parseConfigH(
  text: string,
  source = "config.h",
): { key: PublicKeyInfo; settings: YaotaSettings } {
  const modulusMatch = /^\s*#define\s+MODULUS\s+((?:"[^"]*"\s*)+)/m.exec(text);
  if (!modulusMatch) {
    throw new ConfigHError(
      `${source} has no "#define MODULUS" line, so mpota cannot tell which key the device accepts. Use the config.h the bootloader was built with, or write one with \`mpota config-h\`.`,
    );
  }
  const literal = Array.from((modulusMatch[1] as string).matchAll(/"([^"]*)"/g), (m) => m[1]).join("");
  if (!/^(\\x[0-9a-fA-F]{2})+$/.test(literal)) {
    throw new ConfigHError(
      `${source}: MODULUS must be a string of \\xNN escapes (as \`mpota keys modulus\` prints); found "${literal.slice(0, 40)}...".`,
    );
  }
  const key = parseModulusHex(literal.replace(/\\x/g, ""));
  const settings: YaotaSettings = { ...DEFAULT_SETTINGS };
  const defines: Array<[keyof YaotaSettings, string]> = [
    ["mainAppOffset", "MAIN_APP_OFFSET"],
    ["baudRate", "BAUD_RATE"],
    ["pktWaitMs", "PKT_WAIT_MS"],
    ["idleRebootMs", "IDLE_REBOOT_MS"],
    ["gpioMask", "GPIO_MASK"],
    ["gpioWaitMs", "GPIO_WAIT_MS"],
  ];
  for (const [field, name] of defines) {
    const m = new RegExp(`^\\s*#define\\s+${name}\\s+(\\S+)`, "m").exec(text);
    if (m) settings[field] = parseCNumber(m[1] as string, name, source);
  }
  return { key, settings };
}
