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
  rmSync,
  statSync,
  writeSync,
} from "node:fs";
import { dirname, join, resolve } from "node:path";
import { commandKeyId } from "../protocol/command-key-facts.ts";
import { rsaNumbers } from "../protocol/rsa-numbers.ts";
import { AppKeyError } from "./app-errors.ts";

/** The app key's file name in the data directory (when no --key names another). */
export const APP_KEY_FILE = "app-key.pem";
/** The device's verifier is square-and-multiply for this exponent (as for command keys). */
export const APP_KEY_EXPONENT = 65537;
export const MIN_APP_KEY_BITS = 2048;
export const MAX_APP_KEY_BITS = 4096;

/** The key that signs app releases (RSA, e = 65537, RSASSA-PKCS1-v1_5 with SHA-256). */
export interface AppKey {
  privateKey: KeyObject;
  /** Unsigned big-endian, no leading zero byte: what boards hold in APP_KEYS. */
  modulusHex: string;
  kid: string;
  path: string;
  created: boolean;
  /** Set when other users can read the file. */
  warning?: string;
}

export function defaultAppKeyPath(dataDir: string): string {
  return join(resolve(dataDir), APP_KEY_FILE);
}

/** The modulus of an RSA key that boards can check app signatures with; throws AppKeyError saying why not. */
export function appKeyModulus(key: KeyObject, what: string): Buffer {
  if (key.asymmetricKeyType !== "rsa") {
    throw new AppKeyError(
      `${what} is a ${key.asymmetricKeyType ?? "secret"} key; app releases are signed with RSA (exponent 65537, 2048 to 4096 bits), which boards check in pure MicroPython.`,
    );
  }
  const numbers = rsaNumbers(key);
  let modulus = numbers.n;
  while (modulus.length > 1 && modulus[0] === 0) modulus = modulus.subarray(1);
  const e = numbers.e.toString("hex");
  if (e.length === 0 || BigInt(`0x${e}`) !== BigInt(APP_KEY_EXPONENT)) {
    throw new AppKeyError(
      `${what} has public exponent ${e.length === 0 ? 0 : BigInt(`0x${e}`)}; boards check app signatures with exponent 65537 only. Use a key made by mpota or \`openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048\`.`,
    );
  }
  const bits = modulus.length * 8;
  if (bits < MIN_APP_KEY_BITS || bits > MAX_APP_KEY_BITS) {
    throw new AppKeyError(
      `${what} is a ${bits}-bit RSA key; app keys have ${MIN_APP_KEY_BITS} to ${MAX_APP_KEY_BITS} bits.`,
    );
  }
  return modulus;
}

function readKey(path: string): AppKey {
  let text: string;
  let mode: number;
  try {
    mode = statSync(path).mode;
    text = readFileSync(path, "latin1");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why =
      code === "ENOENT"
        ? "no such file; name the key that signed the releases with --key, or add a release first to make one"
        : code === "EACCES" || code === "EPERM"
          ? "permission denied"
          : code === "EISDIR"
            ? "it is a folder"
            : (error as Error).message;
    throw new AppKeyError(`The app key ${path} cannot be read (${why}).`, { cause: error });
  }
  if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text) || /ENCRYPTED/.test(text)) {
    throw new AppKeyError(
      `The app key ${path} is not an unencrypted PEM private key; signing a release needs the private key (without a passphrase).`,
    );
  }
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: text, format: "pem" });
  } catch (error) {
    throw new AppKeyError(
      `The app key ${path} cannot be read as a private key: it is truncated or damaged.`,
      {
        cause: error,
      },
    );
  }
  const modulus = appKeyModulus(key, `The app key ${path}`);
  const warning =
    (mode & 0o077) !== 0
      ? `the app key ${path} can be read by other users (mode ${(mode & 0o777).toString(8)}); whoever reads it can sign apps every board runs: chmod 600 it.`
      : undefined;
  return {
    privateKey: key,
    modulusHex: modulus.toString("hex"),
    kid: commandKeyId(modulus),
    path,
    created: false,
    ...(warning ? { warning } : {}),
  };
}

/** Writes a new key file without ever replacing one (temp file, then link(), which fails if the name exists). */
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
    linkSync(temp, path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw error;
  } finally {
    rmSync(temp, { force: true });
  }
}

/**
 * The app key at `path`. With `create`, a missing file becomes a new key
 * (RSA 2048, e = 65537, PKCS#8 PEM, mode 0600); without it, a missing file
 * is an AppKeyError.
 */
export function loadAppKey(path: string, options: { create: boolean }): AppKey {
  const absolute = resolve(path);
  let exists = true;
  try {
    statSync(absolute);
  } catch {
    exists = false;
  }
  if (exists || !options.create) return readKey(absolute);
  const { privateKey } = generateKeyPairSync("rsa", {
    modulusLength: MIN_APP_KEY_BITS,
    publicExponent: APP_KEY_EXPONENT,
  });
  let written: boolean;
  try {
    written = publish(absolute, privateKey.export({ type: "pkcs8", format: "pem" }).toString());
  } catch (error) {
    throw new AppKeyError(`Cannot create the app key ${absolute}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  if (!written) return readKey(absolute);
  const modulus = appKeyModulus(privateKey, "The new app key");
  return {
    privateKey,
    modulusHex: modulus.toString("hex"),
    kid: commandKeyId(modulus),
    path: absolute,
    created: true,
  };
}

/** The public half as SPKI PEM (for `openssl dgst -sha256 -verify`). */
export function appPublicPem(key: AppKey): string {
  return createPublicKey(key.privateKey).export({ type: "spki", format: "pem" }).toString();
}
