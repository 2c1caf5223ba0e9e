import { constants, createPublicKey, type KeyObject, sign, verify } from "node:crypto";
import { commandKeyId } from "../protocol/command-key-facts.ts";
import { AppReleaseError } from "./app-errors.ts";
import { appKeyModulus } from "./app-key.ts";
import {
  type AppManifestFields,
  manifestBody,
  parseAppManifest,
  type SignedAppManifest,
} from "./app-manifest.ts";

/**
 * Signs a manifest once: RSASSA-PKCS1-v1_5 with SHA-256 over the canonical
 * lines. PKCS#1 v1.5 is deterministic, so the same release and key always
 * give the same bytes. The first line (`mpota-app/1`) differs from a
 * command's (`mpota-cmd/2`), so a signature over one can never pass for the
 * other, even if one key signed both.
 */
export function signAppManifest(fields: AppManifestFields, privateKey: KeyObject): SignedAppManifest {
  const modulus = appKeyModulus(privateKey, "The signing key");
  const body = manifestBody(fields);
  const signature = sign("sha256", body, { key: privateKey, padding: constants.RSA_PKCS1_PADDING });
  const bytes = Buffer.concat([
    body,
    Buffer.from(`sig ${commandKeyId(modulus)} ${signature.toString("base64")}\n`),
  ]);
  return parseAppManifest(bytes);
}

/**
 * Reads a manifest and checks its signature against the trusted keys
 * (public or private KeyObjects), as a board does. Throws AppReleaseError
 * saying why a board would refuse it.
 */
export function verifyAppManifest(bytes: Buffer, trusted: readonly KeyObject[]): SignedAppManifest {
  const manifest = parseAppManifest(bytes);
  const key = trusted.find((k) => commandKeyId(appKeyModulus(k, "A trusted key")) === manifest.kid);
  if (key === undefined) {
    throw new AppReleaseError(
      `The release ${manifest.name} ${manifest.version} is signed by key ${manifest.kid}, which is not trusted here.`,
    );
  }
  const publicKey = key.type === "private" ? createPublicKey(key) : key;
  const ok = verify(
    "sha256",
    manifest.body,
    { key: publicKey, padding: constants.RSA_PKCS1_PADDING },
    manifest.signature,
  );
  if (!ok || manifest.signature.length !== appKeyModulus(key, "A trusted key").length) {
    throw new AppReleaseError(
      `The signature of ${manifest.name} ${manifest.version} does not verify with key ${manifest.kid}: the manifest was changed after it was signed.`,
    );
  }
  return manifest;
}
