import { createHash, createPublicKey, type KeyObject } from "node:crypto";
import { MpotaError } from "../errors.ts";
import { EXIT_CODES } from "../exit-codes.ts";
import { rsaNumbers } from "./rsa-numbers.ts";

// What a command key is: RSA with exponent 65537, 2048 to 4096 bits, named
// by its `kid`; the moduli devices trust are written in lowercase hex.

/** The public exponent every command key has: the device's square-and-multiply is built for it. */
export const COMMAND_KEY_EXPONENT = 65537;
/** Smallest and largest command keys, in bits (new keys are 2048). */
export const MIN_COMMAND_KEY_BITS = 2048;
export const MAX_COMMAND_KEY_BITS = 4096;

/** A key cannot sign or check commands (not RSA, exponent not 65537, wrong size, unreadable file). */
export class CommandKeyError extends MpotaError {
  override readonly exitCode: number = EXIT_CODES.commandKey.code;
}

const MODULUS_HEX = /^[0-9a-f]+$/;

/** Why `hex` is not a command key modulus, or undefined when it is one. */
export function modulusHexProblem(hex: unknown): string | undefined {
  if (typeof hex !== "string" || !MODULUS_HEX.test(hex)) return "lowercase hex digits";
  if (hex.length % 2 !== 0) return "whole bytes (an even number of hex digits)";
  if (hex.startsWith("00")) return "without a leading zero byte";
  const bits = hex.length * 4;
  if (bits < MIN_COMMAND_KEY_BITS || bits > MAX_COMMAND_KEY_BITS) {
    return `a ${MIN_COMMAND_KEY_BITS}- to ${MAX_COMMAND_KEY_BITS}-bit modulus, not ${bits} bits`;
  }
  return undefined;
}

function stripLeadingZeros(bytes: Buffer): Buffer {
  let i = 0;
  while (i < bytes.length - 1 && bytes[i] === 0) i++;
  return bytes.subarray(i);
}

function modulusBytes(modulus: Uint8Array | string): Buffer {
  if (typeof modulus !== "string") return stripLeadingZeros(Buffer.from(modulus));
  const problem = modulusHexProblem(modulus);
  if (problem) throw new CommandKeyError(`A command key modulus must be ${problem}.`);
  return Buffer.from(modulus, "hex");
}

/**
 * The key id `kid`: hex of the first 4 bytes of SHA-256 of the modulus as
 * unsigned big-endian bytes without a leading zero byte (`openssl rsa -pubin
 * -modulus -noout`, lowercased, then `xxd -r -p | sha256sum | cut -c1-8`).
 */
export function commandKeyId(modulus: Uint8Array | string): string {
  return createHash("sha256").update(modulusBytes(modulus)).digest().subarray(0, 4).toString("hex");
}

export interface RsaFacts {
  modulus: Buffer;
  exponent: bigint;
}

export function rsaFacts(key: KeyObject, what: string): RsaFacts {
  if (key.asymmetricKeyType !== "rsa") {
    throw new CommandKeyError(
      `${what} is a ${key.asymmetricKeyType ?? "secret"} key; commands are signed with RSA (PKCS#1 v1.5, SHA-256, exponent 65537).`,
    );
  }
  const numbers = rsaNumbers(key);
  const modulus = stripLeadingZeros(numbers.n);
  const e = numbers.e;
  const exponent = e.length === 0 ? 0n : BigInt(`0x${e.toString("hex")}`);
  if (exponent !== BigInt(COMMAND_KEY_EXPONENT)) {
    throw new CommandKeyError(
      `${what} has public exponent ${exponent}; devices verify commands with exponent 65537 only. Use a key made by mpota (or \`openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048\`).`,
    );
  }
  const bits = modulus.length * 8;
  if (bits < MIN_COMMAND_KEY_BITS || bits > MAX_COMMAND_KEY_BITS) {
    throw new CommandKeyError(
      `${what} is a ${bits}-bit RSA key; command keys have ${MIN_COMMAND_KEY_BITS} to ${MAX_COMMAND_KEY_BITS} bits.`,
    );
  }
  return { modulus, exponent };
}

/** The public modulus of a command key: unsigned big-endian bytes without a leading zero byte. */
export function publicModulus(key: KeyObject): Buffer {
  return rsaFacts(key, "The key").modulus;
}

/** The modulus as devices take it in `CMD_KEYS` and in a `keys` command: lowercase hex. */
export function publicModulusHex(key: KeyObject): string {
  return publicModulus(key).toString("hex");
}

/** A public key object for a modulus in hex (exponent 65537), e.g. one a device reported trusting. */
export function commandPublicKey(modulusHex: string): KeyObject {
  const n = modulusBytes(modulusHex);
  return createPublicKey({ key: { kty: "RSA", n: n.toString("base64url"), e: "AQAB" }, format: "jwk" });
}
