import { constants, createHash, privateEncrypt } from "node:crypto";
import { modulusToBigInt, type PublicKeyInfo, type SigningKey, YAOTA_EXPONENT } from "./rsa-key.ts";

/** 16 bytes of 0x01: the unused AES key that precedes the SHA1 in every signed payload. */
export const AES_KEY_FILLER = new Uint8Array(16).fill(1);
/** What the receiver expects after unpadding: 16-byte AES key + 20-byte SHA1. */
export const SIGNED_PAYLOAD_LENGTH = 36;

export function sha1(data: Uint8Array): Uint8Array {
  return new Uint8Array(createHash("sha1").update(data).digest());
}

/**
 * Signs a packet body as yaota8266's client does: the raw RSA private
 * operation over the PKCS#1 v1.5 type-1 block `00 01 FF.. 00 || K || SHA1(body)`.
 * Deterministic: the same key and body give the same bytes.
 */
export function signBody(key: SigningKey, body: Uint8Array): Uint8Array {
  const payload = new Uint8Array(SIGNED_PAYLOAD_LENGTH);
  payload.set(AES_KEY_FILLER, 0);
  payload.set(sha1(body), 16);
  return new Uint8Array(
    privateEncrypt({ key: key.privateKey, padding: constants.RSA_PKCS1_PADDING }, payload),
  );
}

function modPow(base: bigint, exponent: bigint, modulus: bigint): bigint {
  let result = 1n;
  let b = base % modulus;
  let e = exponent;
  while (e > 0n) {
    if (e & 1n) result = (result * b) % modulus;
    b = (b * b) % modulus;
    e >>= 1n;
  }
  return result;
}

function toFixedBytes(value: bigint, length: number): Uint8Array {
  const hex = value.toString(16).padStart(length * 2, "0");
  return new Uint8Array(Buffer.from(hex.slice(-length * 2), "hex"));
}

/** The public RSA operation (exponent 3), as the receiver computes it. */
export function rsaPublic(key: PublicKeyInfo, signature: Uint8Array): Uint8Array {
  const n = modulusToBigInt(key.modulus);
  const s = BigInt(`0x${Buffer.from(signature).toString("hex") || "0"}`);
  return toFixedBytes(modPow(s, YAOTA_EXPONENT, n), key.modulus.length);
}

/**
 * Unpads a decrypted signature block exactly as the receiver's axTLS
 * `RSA_decrypt(..., is_decryption=0)` does: `00 01`, then 0xFF bytes (at
 * least 8), then one separator byte whose value is not checked. Returns the
 * payload, or undefined where axTLS fails.
 */
export function unpadLikeReceiver(block: Uint8Array): Uint8Array | undefined {
  const size = block.length;
  let i = 0;
  if (block[i++] !== 0) return undefined;
  if (block[i++] !== 1) return undefined;
  let padCount = 0;
  while (block[i++] === 0xff && i < size) padCount++;
  if (i === size || padCount < 8) return undefined;
  return block.subarray(i);
}

/**
 * Checks a signature over `body` the way the unmodified receiver does: the
 * unpadded payload must be exactly 36 bytes and end with SHA1(body).
 */
export function verifyBody(key: PublicKeyInfo, body: Uint8Array, signature: Uint8Array): boolean {
  if (signature.length !== key.modulus.length) return false;
  const payload = unpadLikeReceiver(rsaPublic(key, signature));
  if (!payload || payload.length !== SIGNED_PAYLOAD_LENGTH) return false;
  return Buffer.from(payload.subarray(16)).equals(Buffer.from(sha1(body)));
}
