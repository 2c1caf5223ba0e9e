import { pbkdf2Sync, randomBytes, timingSafeEqual } from "node:crypto";

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

/** True when `stored` (as made by {@link hashSecret} or `mosquitto_passwd`) is the hash of `secret`. */
export function verifySecret(secret: string, stored: string): boolean {
  const m = STORED.exec(stored);
  if (!m) return false;
  const iterations = Number(m[1]);
  if (iterations < 1 || iterations > 1_000_000) return false;
  const expected = Buffer.from(m[3] as string, "base64");
  if (expected.length < 32) return false;
  const actual = pbkdf2Sync(
    secret,
    Buffer.from(m[2] as string, "base64"),
    iterations,
    expected.length,
    "sha512",
  );
  return timingSafeEqual(actual, expected);
}

/** Whether `stored` looks like a hash {@link verifySecret} can check. */
export function isStoredHash(stored: string): boolean {
  return STORED.test(stored);
}
