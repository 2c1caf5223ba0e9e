import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  randomBytes,
} from "node:crypto";
import {
  closeSync,
  fsyncSync,
  linkSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeSync,
} from "node:fs";
import { dirname, join, resolve } from "node:path";
import {
  COMMAND_KEY_EXPONENT,
  CommandKeyError,
  commandKeyId,
  MIN_COMMAND_KEY_BITS,
  publicModulus,
} from "../../protocol/command-signature.ts";

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
 * Writes a new key without ever replacing an existing one: the PEM goes to
 * a temporary file (mode 0600, synced), which is then hard-linked to the
 * final name. link() fails if the name exists, so two servers starting at
 * once on one data directory cannot each keep a key of their own (rename()
 * would let the second silently replace the key the first already uses).
 * Where the filesystem has no hard links, rename() is the fallback.
 * Returns false when another process created the key first.
 */
function publish(path: string, pem: string): boolean {
  mkdirSync(dirname(path), { recursive: true });
  const temp = `${path}.${randomBytes(4).toString("hex")}.tmp`;
  const fd = openSync(temp, "wx", 0o600);
  try {
    writeSync(fd, pem);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    try {
      linkSync(temp, path);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "EEXIST") return false;
      if (code !== "EPERM" && code !== "ENOTSUP" && code !== "ENOSYS" && code !== "EOPNOTSUPP") throw error;
      try {
        statSync(path);
        return false;
      } catch {
        renameSync(temp, path);
      }
    }
  } finally {
    rmSync(temp, { force: true });
  }
  syncDirectory(dirname(path));
  return true;
}

/** Makes new or renamed directory entries durable (a no-op where directories cannot be opened). */
export function syncDirectory(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, "r");
    fsyncSync(fd);
  } catch {
    // Not supported here (e.g. Windows): the entry is written with the directory's next flush.
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

function missing(path: string): boolean {
  try {
    statSync(path);
    return false;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "ENOENT";
  }
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
  if (!missing(path)) return readCommandKey(path);
  const { privateKey } = generateKeyPairSync("rsa", {
    modulusLength: MIN_COMMAND_KEY_BITS,
    publicExponent: COMMAND_KEY_EXPONENT,
  });
  const pem = privateKey.export({ type: "pkcs8", format: "pem" }).toString();
  if (!publish(path, pem)) return readCommandKey(path);
  return { ...describe(path, privateKey), created: true };
}
