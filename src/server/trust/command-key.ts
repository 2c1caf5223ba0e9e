import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import {
  COMMAND_KEY_EXPONENT,
  CommandKeyError,
  commandKeyId,
  MIN_COMMAND_KEY_BITS,
  publicModulus,
} from "../../protocol/command-key-facts.ts";
import { readOrCreateSecretFile } from "../base/secret-file.ts";

/** The command key's file name in the data directory. */
export const COMMAND_KEY_FILE = "command-key.pem";

/** The server's command key: it signs every command published to a device (contract v2). */
export interface CommandKey {
  /** Signs with `signCommand(fields, privateKey)` (src/protocol/command-signature.ts). */
  privateKey: KeyObject;
  publicKey: KeyObject;
  /** The modulus as devices take it in `CMD_KEYS` and in a `keys` command: lowercase hex. */
  modulusHex: string;
  /** The key id commands carry in `kid` and devices report in their state's `keys`. */
  kid: string;
  /** The public key as SPKI PEM, for `openssl dgst -sha256 -verify`. */
  publicPem: string;
  /** Absolute path of the key file. */
  path: string;
  /** True when this call created the key (first start). */
  created: boolean;
  /** Set when the file can be read by other users than its owner: say it in the log. */
  warning?: string;
}

export function commandKeyPath(dataDir: string): string {
  return join(resolve(dataDir), COMMAND_KEY_FILE);
}

const LOST_KEY_ADVICE =
  "Devices trust only the keys in their CMD_KEYS (or the last keys command they took), so restore the file from a backup if you can. Only if it is lost for good: move it away, start mpota to create a new key, and put the new modulus (`mpota` prints it) into every device's mpota_config.py CMD_KEYS by hand.";

function describe(path: string, key: KeyObject): Omit<CommandKey, "created" | "warning"> {
  const publicKey = createPublicKey(key);
  let modulus: Buffer;
  try {
    modulus = publicModulus(key);
  } catch (error) {
    const reason = (error as Error).message.replace(/^The key /, "it ");
    throw new CommandKeyError(
      `The command key ${path} cannot sign device commands: ${reason} ${LOST_KEY_ADVICE}`,
      { cause: error },
    );
  }
  return {
    privateKey: key,
    publicKey,
    modulusHex: modulus.toString("hex"),
    kid: commandKeyId(modulus),
    publicPem: publicKey.export({ type: "spki", format: "pem" }).toString(),
    path,
  };
}

/** Reads and checks an existing command key file. */
export function readCommandKey(path: string): CommandKey {
  let text: string;
  let mode: number;
  try {
    mode = statSync(path).mode;
    text = readFileSync(path, "latin1");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why =
      code === "EACCES" || code === "EPERM"
        ? "permission denied: run mpota as the user that owns it, or give that user read access (chmod 600)"
        : code === "EISDIR"
          ? "it is a directory, not a key file"
          : (error as Error).message;
    throw new CommandKeyError(`The command key ${path} cannot be read (${why}).`, { cause: error });
  }
  if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text)) {
    const what = /-----BEGIN [A-Z ]*PUBLIC KEY-----/.test(text)
      ? "holds only a public key; the server needs the private key to sign commands"
      : "is not a PEM private key (no -----BEGIN PRIVATE KEY----- line); it is damaged or not a key";
    throw new CommandKeyError(`The command key ${path} ${what}. ${LOST_KEY_ADVICE}`);
  }
  if (/ENCRYPTED/.test(text)) {
    throw new CommandKeyError(
      `The command key ${path} is protected by a passphrase; the server signs without asking for one. Write it without the passphrase (\`openssl pkey -in ${path} -out ${path}.plain\`, then move it back in place with mode 600).`,
    );
  }
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: text, format: "pem" });
  } catch (error) {
    throw new CommandKeyError(
      `The command key ${path} looks like PEM but cannot be read as a private key (${(error as Error).message}); it is truncated or damaged. ${LOST_KEY_ADVICE}`,
      { cause: error },
    );
  }
  const warning =
    (mode & 0o077) !== 0
      ? `The command key ${path} can be read by other users (mode ${(mode & 0o777).toString(8)}); anyone who reads it can command every device: chmod 600 it.`
      : undefined;
  return { ...describe(path, key), created: false, ...(warning ? { warning } : {}) };
}

/**
 * The command key of `dataDir` (`<dataDir>/command-key.pem`), created on
 * first use: RSA 2048, e = 65537, PKCS#8 PEM, mode 0600. Throws
 * {@link CommandKeyError} with what to do for a file that cannot be read,
 * is damaged, or holds a key devices cannot check (not RSA, exponent not
 * 65537, fewer than 2048 bits, public only, passphrase-protected).
 */
export function loadCommandKey(dataDir: string): CommandKey {
  return loadOrCreateCommandKeyAt(commandKeyPath(dataDir));
}

/** The command key in `path`, created there (as {@link loadCommandKey} does) when there is none. */
export function loadOrCreateCommandKeyAt(path: string): CommandKey {
  return readOrCreateSecretFile(path, readCommandKey, () => {
    const { privateKey } = generateKeyPairSync("rsa", {
      modulusLength: MIN_COMMAND_KEY_BITS,
      publicExponent: COMMAND_KEY_EXPONENT,
    });
    const text = privateKey.export({ type: "pkcs8", format: "pem" }).toString();
    return { text, value: { ...describe(path, privateKey), created: true } };
  }).value;
}
