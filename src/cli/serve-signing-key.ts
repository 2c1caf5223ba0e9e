// The signing key `mpota serve` loads, or why it runs without one.
import { existsSync } from "node:fs";
import type { SigningKey } from "../protocol/rsa-key.ts";
import type { CliIo } from "./io.ts";
import { DEFAULT_KEY_FILE, loadSigningKey } from "./key-options.ts";

/**
 * Without the key only the UDP push to yaota8266 is refused: app releases
 * are signed with the app key and the commands with the command key, and
 * ESP32 images and apps are fetched by the devices over the HTTP listener.
 * `http`: whether that listener runs (--no-http turns it off).
 */
export function loadServerKey(
  path: string | undefined,
  io: CliIo,
  http = true,
): { key: SigningKey | undefined; note: string } {
  if (path === undefined && !existsSync(DEFAULT_KEY_FILE)) {
    const fetched = http
      ? "app updates and ESP32 firmware updates do not need it (the devices fetch them over HTTP)"
      : "app updates and ESP32 firmware updates do not need it, but the devices fetch them over HTTP, which --no-http turns off";
    return {
      key: undefined,
      note: `no signing key (${DEFAULT_KEY_FILE} does not exist): ESP8266 firmware updates (the push to yaota8266) are refused until you restart with --key FILE (\`mpota keys new\` makes one); ${fetched}`,
    };
  }
  const file = path ?? DEFAULT_KEY_FILE;
  const key = loadSigningKey(file);
  if (key.bits <= 512) {
    io.err(
      `Note: ${file} is a ${key.bits}-bit key: anyone who factors it can sign firmware for your devices.\n`,
    );
  }
  return { key, note: `signing key ${file} (${key.bits}-bit)` };
}
