// The emulated bootloader's key and settings from `mpota emulate`'s options, and their checks.
import { UsageError } from "../errors.ts";
import { formatFlashSize } from "../firmware/flash-layout.ts";
import { DEFAULT_SETTINGS, parseConfigH, type YaotaSettings } from "../protocol/config-h.ts";
import type { PublicKeyInfo } from "../protocol/rsa-key.ts";
import type { EmulateCommandOptions } from "./emulate-options.ts";
import { DEFAULT_KEY_FILE, loadPublicKey, readUserFile } from "./key-options.ts";

export function settingsFrom(options: EmulateCommandOptions): {
  key: PublicKeyInfo;
  settings: YaotaSettings;
} {
  let settings: YaotaSettings = { ...DEFAULT_SETTINGS };
  let key: PublicKeyInfo | undefined;
  if (options.configH !== undefined && options.key === undefined && options.modulus === undefined) {
    const parsed = parseConfigH(readUserFile(options.configH, "config.h").toString("utf8"), options.configH);
    key = parsed.key;
    settings = parsed.settings;
  } else {
    key = loadPublicKey({ key: options.key, modulus: options.modulus, configH: options.configH });
  }
  key ??= loadPublicKey({ key: DEFAULT_KEY_FILE }) as PublicKeyInfo;
  const overrides: Array<[keyof YaotaSettings, number | undefined]> = [
    ["gpioMask", options.gpioMask],
    ["gpioWaitMs", options.gpioWaitMs],
    ["pktWaitMs", options.pktWaitMs],
    ["idleRebootMs", options.idleRebootMs],
    ["baudRate", options.baud],
    ["mainAppOffset", options.appOffset],
  ];
  for (const [field, value] of overrides) if (value !== undefined) settings[field] = value;
  return { key, settings };
}

export function checkOptions(
  options: EmulateCommandOptions,
  settings: YaotaSettings,
  flashSize: number,
): void {
  if (options.port > 65535) throw new UsageError(`--port ${options.port} is not a UDP port (0-65535).`);
  if (settings.mainAppOffset % 4096 !== 0 || settings.mainAppOffset >= flashSize) {
    throw new UsageError(
      `--app-offset 0x${settings.mainAppOffset.toString(16)} must be a multiple of 0x1000 inside the ${formatFlashSize(flashSize)} flash (yaota8266's default is 0x3c000).`,
    );
  }
  if (settings.gpioMask > 0xffffffff) throw new UsageError("--gpio-mask must fit in 32 bits.");
  if (options.progressEvery < 1) throw new UsageError("--progress-every must be at least 1 sector.");
  const queue = options.receiveQueue;
  if (queue !== undefined && (queue < 1 || queue > 16))
    throw new UsageError(
      `--receive-queue must be from 1 to 16 (the spec's evidence gives 4 to 16; the model holds 7), not ${queue}.`,
    );
}
