import { randomBytes } from "node:crypto";
import { mkdir, open, readFile, rename, rm } from "node:fs/promises";
import { join, resolve } from "node:path";
import { MpotaError } from "../errors.ts";
import { checkMd5Trailer } from "../firmware/micropython-image.ts";
import { isFirmwareIdentity } from "./contract.ts";

/** A stored image's bytes do not match its identity, or the file is gone: it must not be pushed. */
export class FirmwareIntegrityError extends MpotaError {
  override readonly exitCode: number = 26;
}

/**
 * Firmware images as files named by their identity (`<md5>.bin`) in
 * `<dataDir>/firmware/`. Writes go to a temporary file, are synced, then
 * renamed into place, so a crash never leaves a half-written image under a
 * real name. Every read checks the bytes against the name.
 */
export class FirmwareFiles {
  readonly dir: string;

  constructor(dataDir: string) {
    this.dir = join(resolve(dataDir), "firmware");
  }

  pathOf(identity: string): string {
    if (!isFirmwareIdentity(identity))
      throw new FirmwareIntegrityError(`"${identity}" is not a firmware identity.`);
    return join(this.dir, `${identity.toLowerCase()}.bin`);
  }

  /** Stores `bytes` under `identity`, which must be their MD5 trailer. */
  async write(identity: string, bytes: Uint8Array): Promise<string> {
    this.verify(identity, bytes, "The image to store");
    await mkdir(this.dir, { recursive: true });
    const path = this.pathOf(identity);
    const temp = join(this.dir, `.${identity}.${randomBytes(4).toString("hex")}.tmp`);
    const handle = await open(temp, "wx", 0o644);
    try {
      await handle.writeFile(bytes);
      await handle.sync();
    } finally {
      await handle.close();
    }
    try {
      await rename(temp, path);
    } catch (error) {
      await rm(temp, { force: true });
      throw error;
    }
    return path;
  }

  /** Reads and checks an image; throws {@link FirmwareIntegrityError} when it is missing or does not match. */
  async read(identity: string): Promise<Uint8Array> {
    const path = this.pathOf(identity);
    let bytes: Uint8Array;
    try {
      bytes = await readFile(path);
    } catch (error) {
      throw new FirmwareIntegrityError(
        `The image file for firmware ${identity} (${path}) cannot be read: ${(error as Error).message}. Add the firmware again (\`mpota firmware add\`).`,
      );
    }
    this.verify(identity, bytes, `The image file ${path}`);
    return bytes;
  }

  async remove(identity: string): Promise<void> {
    await rm(this.pathOf(identity), { force: true });
  }

  private verify(identity: string, bytes: Uint8Array, what: string): void {
    const trailer = checkMd5Trailer(bytes);
    if (trailer.status !== "ok" || trailer.stored !== identity.toLowerCase()) {
      throw new FirmwareIntegrityError(
        `${what} does not match firmware identity ${identity}: ${trailer.status === "ok" ? `its MD5 trailer is ${trailer.stored}` : trailer.message} It was changed or damaged after it was added and will not be pushed. Remove it (\`mpota firmware remove ${identity}\`) and add the image again.`,
      );
    }
  }
}
