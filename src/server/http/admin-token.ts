import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { FileError } from "../../errors.ts";
import { readOrCreateSecretFile, replaceSecretFile } from "../base/secret-file.ts";

export const ADMIN_TOKEN_FILE = "admin-token";

export function adminTokenPath(dataDir: string): string {
  return join(resolve(dataDir), ADMIN_TOKEN_FILE);
}

function newToken(): string {
  return `mpota_${randomBytes(24).toString("base64url")}`;
}

/** The admin token in `path`; throws {@link FileError} saying what to do when it cannot be used. */
export function readToken(path: string): string {
  let text: string;
  try {
    text = readFileSync(path, "utf8").trim();
  } catch (error) {
    throw new FileError(
      `The admin token file ${path} cannot be read: ${(error as Error).message}. Create a new one with \`mpota token rotate\`.`,
    );
  }
  if (text.length < 16) {
    throw new FileError(
      `The admin token file ${path} holds no usable token. Create a new one with \`mpota token rotate\`.`,
    );
  }
  return text;
}

/** Reads the admin token of `dataDir`, creating it on first start. `created` is true when it is new. */
export function ensureAdminToken(dataDir: string): { token: string; path: string; created: boolean } {
  const path = adminTokenPath(dataDir);
  const { value: token, created } = readOrCreateSecretFile(path, readToken, () => {
    const fresh = newToken();
    return { text: `${fresh}\n`, value: fresh };
  });
  return { token, path, created };
}

/** Replaces the admin token: every API client and dashboard session must log in again. */
export function rotateAdminToken(dataDir: string): { token: string; path: string } {
  const path = adminTokenPath(dataDir);
  const token = newToken();
  replaceSecretFile(path, `${token}\n`);
  return { token, path };
}

/** Changes when the file is replaced (a rotation renames a new file into place: new inode). */
function stampOf(path: string): string {
  const st = statSync(path);
  return `${st.ino}:${st.mtimeMs}:${st.size}`;
}

const digest = (text: string) => createHash("sha256").update(text).digest();

/**
 * The admin token as the running server checks it: the file is read again
 * when it changes, so `mpota token rotate` takes effect without a restart.
 * Sessions are stateless cookies signed with a key derived from the token:
 * rotating the token ends every session, and nothing grows in memory.
 */
export class AdminToken {
  private token: string;
  private stamp: string;

  constructor(private readonly path: string) {
    this.token = readToken(path);
    this.stamp = stampOf(path);
  }

  private current(): string {
    try {
      const stamp = stampOf(this.path);
      if (stamp !== this.stamp) {
        this.token = readToken(this.path);
        this.stamp = stamp;
      }
    } catch {
      // A vanished file keeps the token in force until a new one is written.
    }
    return this.token;
  }

  matches(candidate: string): boolean {
    return timingSafeEqual(digest(candidate), digest(this.current()));
  }

  /** A session cookie value valid until `expiresAt` (ms). */
  issueSession(expiresAt: number): string {
    const payload = `${expiresAt}.${randomBytes(9).toString("base64url")}`;
    return `${payload}.${this.sign(payload)}`;
  }

  sessionValid(value: string, now: number): boolean {
    const parts = value.split(".");
    if (parts.length !== 3) return false;
    const [expires, nonce, signature] = parts as [string, string, string];
    const expiresAt = Number(expires);
    if (!Number.isSafeInteger(expiresAt) || expiresAt <= now) return false;
    const expected = Buffer.from(this.sign(`${expires}.${nonce}`));
    const given = Buffer.from(signature);
    return given.length === expected.length && timingSafeEqual(given, expected);
  }

  private sign(payload: string): string {
    const key = createHmac("sha256", "mpota-session").update(this.current()).digest();
    return createHmac("sha256", key).update(payload).digest("base64url");
  }
}
