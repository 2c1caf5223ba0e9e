import { pbkdf2, pbkdf2Sync, randomBytes, timingSafeEqual } from "node:crypto";

/**
 * Device secrets and their stored form. A secret is 24 random bytes
 * (base64url, 32 characters); only a salted hash is kept, in Mosquitto 2's
 * PBKDF2-SHA512 format `$7$<iterations>$<base64 salt>$<base64 hash>`, so the
 * same line can go into a Mosquitto password file (`mpota broker-config`)
 * without anyone knowing the secret.
 *
 * The secrets have 192 bits of entropy: no dictionary or brute force can
 * reach them, so the hash needs no costly work factor. A cheap one matters
 * instead: a fleet of thousands reconnecting after a broker restart checks
 * every credential at once.
 */
export const HASH_ITERATIONS = 1000;
const SALT_BYTES = 12;
const HASH_BYTES = 64;
const STORED = /^\$7\$(\d{1,7})\$([A-Za-z0-9+/]+={0,2})\$([A-Za-z0-9+/]+={0,2})$/;

/** A new device secret. */
export function newSecret(): string {
  return randomBytes(24).toString("base64url");
}

/** The stored form of `secret` (a fresh salt each call). */
export function hashSecret(secret: string, iterations = HASH_ITERATIONS): string {
  const salt = randomBytes(SALT_BYTES);
  const hash = pbkdf2Sync(secret, salt, iterations, HASH_BYTES, "sha512");
  return `$7$${iterations}$${salt.toString("base64")}$${hash.toString("base64")}`;
}

/** The parts of a stored hash, or undefined when it is not one this module can check. */
function parseStored(stored: string): { iterations: number; salt: Buffer; expected: Buffer } | undefined {
  const m = STORED.exec(stored);
  if (!m) return undefined;
  const iterations = Number(m[1]);
  const expected = Buffer.from(m[3] as string, "base64");
  if (iterations < 1 || iterations > 1_000_000 || expected.length < 32) return undefined;
  return { iterations, salt: Buffer.from(m[2] as string, "base64"), expected };
}

/** True when `stored` (as made by {@link hashSecret} or `mosquitto_passwd`) is the hash of `secret`. */
export function verifySecret(secret: string, stored: string): boolean {
  const p = parseStored(stored);
  if (!p) return false;
  return timingSafeEqual(pbkdf2Sync(secret, p.salt, p.iterations, p.expected.length, "sha512"), p.expected);
}

/** {@link verifySecret} in the thread pool, for the broker's CONNECT path (many devices at once). */
export function verifySecretAsync(secret: string, stored: string): Promise<boolean> {
  const p = parseStored(stored);
  if (!p) return Promise.resolve(false);
  return new Promise((resolve) => {
    pbkdf2(secret, p.salt, p.iterations, p.expected.length, "sha512", (error, actual) =>
      resolve(!error && timingSafeEqual(actual, p.expected)),
    );
  });
}
