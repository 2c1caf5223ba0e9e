import { readFileSync } from "node:fs";
import { FileError, UsageError } from "../errors.ts";
import { parseConfigH } from "../protocol/config-h.ts";
import {
  type PublicKeyInfo,
  parseModulusHex,
  parsePrivateKeyPem,
  parsePublicKeyPem,
  type SigningKey,
} from "../protocol/rsa-key.ts";

/** The default key file, as upstream's tools use it. */
export const DEFAULT_KEY_FILE = "./priv.key";

export function readUserFile(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT") {
      throw new FileError(
        `${what} ${path} does not exist. ${what === "Key file" ? "Create a key with `mpota keys new`, or pass --key FILE." : "Check the path."}`,
      );
    }
    if (code === "EISDIR") throw new FileError(`${what} ${path} is a directory, not a file.`);
    if (code === "EACCES") throw new FileError(`${what} ${path} cannot be read (permission denied).`);
    throw new FileError(`${what} ${path} cannot be read: ${(error as Error).message}`);
  }
}

export function loadSigningKey(path = DEFAULT_KEY_FILE): SigningKey {
  return parsePrivateKeyPem(readUserFile(path, "Key file"), path);
}

export interface PublicKeyOptions {
  key?: string;
  modulus?: string;
  configH?: string;
}

/** The device's public key from exactly one of --key, --modulus, --config-h; undefined when none is given. */
export function loadPublicKey(options: PublicKeyOptions): PublicKeyInfo | undefined {
  const given = [options.key, options.modulus, options.configH].filter((v) => v !== undefined);
  if (given.length > 1) throw new UsageError("Give only one of --key, --modulus and --config-h.");
  if (options.key !== undefined) return parsePublicKeyPem(readUserFile(options.key, "Key file"), options.key);
  if (options.modulus !== undefined) return parseModulusHex(options.modulus);
  if (options.configH !== undefined) {
    return parseConfigH(readUserFile(options.configH, "config.h").toString("utf8"), options.configH).key;
  }
  return undefined;
}

/** Parses integers given as decimal or 0x-hex on the command line. */
export function parseIntegerOption(name: string): (value: string) => number {
  return (value: string) => {
    const n = /^0x[0-9a-f]+$/i.test(value)
      ? Number.parseInt(value, 16)
      : /^\d+$/.test(value)
        ? Number(value)
        : Number.NaN;
    if (!Number.isSafeInteger(n))
      throw new UsageError(`${name} must be a whole number (decimal or 0x hex), not "${value}".`);
    return n;
  };
}

/** Parses flash sizes like 512K, 1M, 4M, 1048576. */
export function parseFlashSize(value: string): number {
  const m = /^(\d+)\s*([kKmM]?)(i?[bB])?$/.exec(value.trim());
  if (!m) throw new UsageError(`Flash size "${value}" is not a size; use 512K, 1M, 2M, 4M, 8M or 16M.`);
  const n =
    Number(m[1]) * (m[2]?.toLowerCase() === "k" ? 1024 : m[2]?.toLowerCase() === "m" ? 1024 * 1024 : 1);
  return n;
}
