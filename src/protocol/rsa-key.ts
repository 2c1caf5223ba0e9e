import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from "node:crypto";
import { MpotaError } from "../errors.ts";
import { EXIT_CODES } from "../exit-codes.ts";
import { rsaNumbers } from "./rsa-numbers.ts";

/** A key file could not be used: missing, malformed, or not a yaota8266 key. */
export class KeyError extends MpotaError {
  override readonly exitCode: number = EXIT_CODES.key.code;
}

/** yaota8266's receiver hard-codes the public exponent 3. */
export const YAOTA_EXPONENT = 3n;

export const SUPPORTED_KEY_BITS = [512, 1024, 2048] as const;
export type KeyBits = (typeof SUPPORTED_KEY_BITS)[number];

/** The public half as the device sees it: the modulus, big-endian, without a leading zero byte. */
export interface PublicKeyInfo {
  modulus: Uint8Array;
  bits: number;
}

export interface SigningKey extends PublicKeyInfo {
  privateKey: KeyObject;
}

export function modulusToBigInt(modulus: Uint8Array): bigint {
  return BigInt(`0x${Buffer.from(modulus).toString("hex") || "0"}`);
}

function checkRsaKey(key: KeyObject, source: string): PublicKeyInfo {
  if (key.asymmetricKeyType !== "rsa") {
    throw new KeyError(
      `${source} holds a ${key.asymmetricKeyType ?? "non-RSA"} key; yaota8266 needs an RSA key with exponent 3. Create one with \`mpota keys new\`.`,
    );
  }
  const numbers = rsaNumbers(key);
  const e = modulusToBigInt(numbers.e);
  if (e !== YAOTA_EXPONENT) {
    throw new KeyError(
      `${source} has public exponent ${e}, but the yaota8266 receiver only verifies exponent 3, so every packet signed with it would be dropped. Create a suitable key with \`mpota keys new\` (or \`openssl genrsa -3 512\`).`,
    );
  }
  let modulus = numbers.n;
  while (modulus.length > 0 && modulus[0] === 0) modulus = modulus.subarray(1);
  if (modulus.length < 64) {
    throw new KeyError(
      `${source} is a ${modulus.length * 8}-bit key; a yaota8266 signature needs at least 512 bits. Create a key with \`mpota keys new\`.`,
    );
  }
  return { modulus: new Uint8Array(modulus), bits: modulus.length * 8 };
}

function describePemFailure(text: string, source: string, error: unknown): KeyError {
  if (/ENCRYPTED/.test(text)) {
    return new KeyError(
      `${source} is protected by a passphrase; mpota needs an unencrypted key. Remove the passphrase with \`openssl rsa -in ${source} -out priv.key\`.`,
      { cause: error },
    );
  }
  if (!/-----BEGIN [A-Z ]+-----/.test(text)) {
    return new KeyError(
      `${source} is not a PEM key file (no "-----BEGIN ...-----" line). Point --key at the priv.key made by \`mpota keys new\` or upstream's gen_keys.sh.`,
      { cause: error },
    );
  }
  return new KeyError(
    `${source} looks like PEM but could not be read as an RSA key (${(error as Error).message}). The file may be truncated or damaged; create a new key with \`mpota keys new\` if you have no intact copy.`,
    { cause: error },
  );
}

/** Reads a PEM private key (PKCS#1 "RSA PRIVATE KEY" or PKCS#8 "PRIVATE KEY") and checks it suits yaota8266. */
export function parsePrivateKeyPem(pem: string | Uint8Array, source = "the key file"): SigningKey {
  const text = typeof pem === "string" ? pem : Buffer.from(pem).toString("latin1");
  if (/-----BEGIN (RSA )?PUBLIC KEY-----/.test(text) && !/PRIVATE KEY/.test(text)) {
    throw new KeyError(
      `${source} holds only a public key; signing needs the private key (priv.key). A canned .ota file can be pushed without it.`,
    );
  }
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey({ key: text, format: "pem" });
  } catch (error) {
    throw describePemFailure(text, source, error);
  }
  return { ...checkRsaKey(privateKey, source), privateKey };
}

/** Reads the public half from a PEM public key, or from a private key file. */
export function parsePublicKeyPem(pem: string | Uint8Array, source = "the key file"): PublicKeyInfo {
  const text = typeof pem === "string" ? pem : Buffer.from(pem).toString("latin1");
  let key: KeyObject;
  try {
    key = /PRIVATE KEY/.test(text) ? createPublicKey(createPrivateKey(text)) : createPublicKey(text);
  } catch (error) {
    throw describePemFailure(text, source, error);
  }
  return checkRsaKey(key, source);
}

/** Parses a modulus given as hex (colons, spaces and a 0x prefix allowed). */
export function parseModulusHex(hex: string): PublicKeyInfo {
  const clean = hex.trim().replace(/^0x/i, "").replace(/[:\s]/g, "");
  if (clean.length === 0 || !/^[0-9a-fA-F]+$/.test(clean) || clean.length % 2 !== 0) {
    throw new KeyError(
      "The modulus must be an even number of hex digits (as printed by `mpota keys modulus --hex`), optionally with colons.",
    );
  }
  let modulus = Buffer.from(clean, "hex");
  while (modulus.length > 0 && modulus[0] === 0) modulus = modulus.subarray(1);
  if (modulus.length < 64) {
    throw new KeyError(`The modulus has ${modulus.length * 8} bits; yaota8266 keys have at least 512.`);
  }
  return { modulus: new Uint8Array(modulus), bits: modulus.length * 8 };
}

export interface GeneratedKeyPair {
  privatePem: string;
  publicPem: string;
  key: SigningKey;
}

/** A new RSA key pair with exponent 3. The private key is PKCS#1 PEM, as `openssl genrsa -3` writes. */
export function generateKeyPair(bits: KeyBits): GeneratedKeyPair {
  const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: bits, publicExponent: 3 });
  const privatePem = privateKey.export({ type: "pkcs1", format: "pem" }).toString();
  const publicPem = publicKey.export({ type: "spki", format: "pem" }).toString();
  return { privatePem, publicPem, key: parsePrivateKeyPem(privatePem, "the new key") };
}

export function sameModulus(a: PublicKeyInfo, b: PublicKeyInfo): boolean {
  return Buffer.from(a.modulus).equals(Buffer.from(b.modulus));
}
