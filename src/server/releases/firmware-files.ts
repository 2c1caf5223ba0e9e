import { randomBytes } from "node:crypto";
import { access, mkdir, open, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { MpotaError } from "../../errors.ts";
import { EXIT_CODES } from "../../exit-codes.ts";
import { isFirmwareIdentity } from "../../protocol/mqtt-contract.ts";
import { diskFullError, isDiskFull } from "../storage/disk-full.ts";

/** A stored image's bytes do not match its identity, or the file is gone: it must not be pushed. */
export class FirmwareIntegrityError extends MpotaError {
  override readonly exitCode: number = EXIT_CODES.firmwareIntegrity.code;
}

/** A release kind's check that bytes are the artifact with an identity (ReleaseKind.verify). */
export type ArtifactCheck = (identity: string, bytes: Uint8Array, what: string) => void;

/**
 * Release artifacts (firmware images) as files named by their identity (`<md5>.bin`) in one
 * directory (`<dataDir>/firmware/`, or `--firmware-dir`). Writes go to a temporary file, are synced, then
 * renamed into place, so a crash never leaves a half-written image under a
 * real name. Every read checks the bytes against the name.
 */
export class FirmwareFiles {
  readonly dir: string;

  /** `dir` holds the images themselves (by default `<dataDir>/firmware`). */
  constructor(dir: string) {
    this.dir = resolve(dir);
  }

  pathOf(identity: string): string {
    if (!isFirmwareIdentity(identity))
      throw new FirmwareIntegrityError(`"${identity}" is not a firmware identity.`);
    return join(this.dir, `${identity.toLowerCase()}.bin`);
  }

  /** Stores `bytes` under `identity`, which `verify` (their kind's check) must confirm. */
  async write(identity: string, bytes: Uint8Array, verify: ArtifactCheck): Promise<string> {
    verify(identity, bytes, "The image to store");
    const path = this.pathOf(identity);
    const temp = join(this.dir, `.${identity}.${randomBytes(4).toString("hex")}.tmp`);
    try {
      await mkdir(this.dir, { recursive: true });
      const handle = await open(temp, "wx", 0o644);
      try {
        await handle.writeFile(bytes);
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(temp, path);
    } catch (error) {
      // A half-written temporary file would hold the space that ran out, and look like litter.
      await rm(temp, { force: true }).catch(() => undefined);
      if (isDiskFull(error)) throw diskFullError(error, `the image of firmware ${identity}`, path);
      throw error;
    }
    return path;
  }

  /** Reads and checks an image; throws {@link FirmwareIntegrityError} when it is missing or does not match. */
  async read(identity: string, verify: ArtifactCheck): Promise<Uint8Array> {
    const path = this.pathOf(identity);
    let bytes: Uint8Array;
    try {
      bytes = await readFile(path);
    } catch (error) {
      throw new FirmwareIntegrityError(
        `The image file for firmware ${identity} (${path}) cannot be read: ${(error as Error).message}. Add the firmware again (\`mpota firmware add\`).`,
      );
    }
    verify(identity, bytes, `The image file ${path}`);
    return bytes;
  }

  async has(identity: string): Promise<boolean> {
    try {
      await access(this.pathOf(identity));
      return true;
    } catch {
      return false;
    }
  }

  /**
   * The directory's id (created on first use, in `.mpota-store-id`): servers
   * sharing a database compare it to know they share the directory.
   */
  async storeId(): Promise<string> {
    await mkdir(this.dir, { recursive: true });
    const path = join(this.dir, ".mpota-store-id");
    try {
      await writeFile(path, `${randomBytes(8).toString("hex")}\n`, { flag: "wx", mode: 0o644 });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    }
    return (await readFile(path, "utf8")).trim();
  }

  async remove(identity: string): Promise<void> {
    await rm(this.pathOf(identity), { force: true });
  }
}
