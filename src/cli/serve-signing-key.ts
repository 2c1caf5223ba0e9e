// The signing key `mpota serve` loads, or why it runs without one.
import { existsSync } from "node:fs";
import type { SigningKey } from "../protocol/rsa-key.ts";
import type { CliIo } from "./io.ts";
import { DEFAULT_KEY_FILE, loadSigningKey } from "./key-options.ts";

export function loadServerKey(
  path: string | undefined,
  io: CliIo,
): { key: SigningKey | undefined; note: string } {
  if (path === undefined && !existsSync(DEFAULT_KEY_FILE)) {
    return {
      key: undefined,
      note: `no signing key (${DEFAULT_KEY_FILE} does not exist): devices are registered, but updates are refused until you restart with --key FILE (\`mpota keys new\` makes one)`,
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
