import { createPublicKey, type KeyObject } from "node:crypto";

/** An RSA key's public numbers, big-endian as JWK gives them (leading zero bytes kept). */
export interface RsaNumbers {
  n: Buffer;
  e: Buffer;
}

/**
 * The modulus and public exponent of an RSA key (public or private), read
 * from a copy of its public half made from DER. Node 20 deadlocks when a
 * key's JWK is exported while the garbage collector frees the job that
 * generated the key (generateKeyPairSync's, freed at some later full GC):
 * the export holds the key's lock while it allocates, and the job's
 * destructor takes the same lock. The copy shares no lock with any job.
 * Node 22 and 24 do not deadlock; test/protocol/rsa-numbers.test.ts shows it.
 */
export function rsaNumbers(key: KeyObject): RsaNumbers {
  // A KeyObject never changes, and the server signs every command with the same one: read it once.
  let numbers = read.get(key);
  if (!numbers) {
    numbers = numbersOf(key);
    read.set(key, numbers);
  }
  // Copies: a caller may change what it gets.
  return { n: Buffer.from(numbers.n), e: Buffer.from(numbers.e) };
}

function numbersOf(key: KeyObject): RsaNumbers {
  const publicKey = key.type === "public" ? key : createPublicKey(key);
  const copy = createPublicKey({
    key: publicKey.export({ type: "spki", format: "der" }),
    format: "der",
    type: "spki",
  });
  const jwk = copy.export({ format: "jwk" });
  return { n: Buffer.from(jwk.n ?? "", "base64url"), e: Buffer.from(jwk.e ?? "", "base64url") };
}

const read = new WeakMap<KeyObject, RsaNumbers>();
