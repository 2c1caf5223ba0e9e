import { join } from "node:path";
import { MAX_INPUT_FILE_SIZE } from "../../firmware/image-file.ts";
import { shorten } from "../mqtt/contract.ts";
import { RequestError } from "../request-error.ts";
import { rolloutsTargeting, targetOfRolloutsText } from "../rollouts/rollout-membership.ts";
import {
  type FirmwareRecord,
  type ImageStore,
  type Storage,
  StorageError,
  type StoredVerdict,
} from "../storage/storage.ts";
import { DEFAULT_FLASH_SIZE_FOR_CHECKS, firmwareChecks } from "./firmware-checks.ts";
import { FirmwareFiles, FirmwareIntegrityError } from "./firmware-files.ts";

/** This server keeps firmware images elsewhere than the others on the same database (exit code 24). */
export class FirmwareStoreMismatchError extends StorageError {}

export const FIRMWARE_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$/;
export const FIRMWARE_VERSION_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._+~-]{0,63}$/;
export const MAX_NOTES_LENGTH = 4000;

export interface AddFirmwareInput {
  bytes: Uint8Array;
  name: string;
  version: string;
  notes?: string | null;
  /** Flash size the checks assume (default 1 MiB, the smallest common yaota8266 device). */
  flashSize?: number;
  /** Override the refusals the checks allow to be overridden. */
  force?: boolean;
  /** The file's name, for messages. */
  source?: string;
}

export interface AddFirmwareResult {
  record: FirmwareRecord;
  verdicts: StoredVerdict[];
}

/**
 * The firmware store: checked images on disk (by identity) and their
 * metadata in storage. Holds no state of its own, so any number of server
 * instances can use the same storage and directory.
 */
export class FirmwareLibrary {
  /** The image files: the store itself, or a local cache of the database's images. */
  readonly files: FirmwareFiles;
  /** Images in the database (shared storage without --firmware-dir), else null. */
  private readonly images: ImageStore | null;

  constructor(
    private readonly storage: Storage,
    dataDir: string,
    private readonly now: () => number,
    options: { firmwareDir?: string } = {},
  ) {
    this.files = new FirmwareFiles(options.firmwareDir ?? join(dataDir, "firmware"));
    this.images = options.firmwareDir === undefined ? storage.images : null;
  }

  /** Where the images live, in words (logs, errors). */
  get where(): string {
    return this.images ? "in the database" : `in ${this.files.dir}`;
  }

  /**
   * With storage that several servers share, checks that this server keeps
   * images where the others do: all in the database, or all in one shared
   * directory (recognised by the id file it holds). The first server to
   * start decides; a server started otherwise is refused with the reason.
   */
  async checkShared(): Promise<void> {
    if (this.storage.images === null) return;
    const mine = this.images ? "database" : `directory:${await this.files.storeId()}`;
    const agreed = await this.storage.settings.putIfAbsent("firmware-store", mine);
    if (agreed === mine) return;
    const theirs =
      agreed === "database" ? "in the database (no --firmware-dir)" : "in a directory with another id";
    throw new FirmwareStoreMismatchError(
      `The servers on this database keep firmware images ${theirs}, but this one was started to keep them ${this.where}${this.images ? "" : ` (id ${mine.slice("directory:".length)})`}. Give every server the same --firmware-dir, a directory they all mount, or none of them one (images in the database).`,
    );
  }

  /** Runs the checks, stores the image file, then the metadata. Nothing is stored when a check refuses. */
  async add(input: AddFirmwareInput): Promise<AddFirmwareResult> {
    if (input.bytes.length > MAX_INPUT_FILE_SIZE) {
      throw new RequestError(
        `The image is ${input.bytes.length} bytes, larger than the largest flash of any ESP8266 board (${MAX_INPUT_FILE_SIZE} bytes), so it cannot be firmware. Is it the right file?`,
      );
    }
    const name = input.name?.trim();
    const version = input.version?.trim();
    if (!name || !FIRMWARE_NAME_PATTERN.test(name)) {
      throw new RequestError(
        `The firmware name "${shorten(input.name ?? "")}" is not usable: give 1 to 64 letters, digits, ".", "_", "+" or "-", starting with a letter or digit (no "@").`,
      );
    }
    if (!version || !FIRMWARE_VERSION_PATTERN.test(version)) {
      throw new RequestError(
        `The firmware version "${shorten(input.version ?? "")}" is not usable: give 1 to 64 letters, digits, ".", "_", "+", "~" or "-" (for example 1.4.2), starting with a letter or digit.`,
      );
    }
    const notes = input.notes?.trim() || null;
    if (notes !== null && notes.length > MAX_NOTES_LENGTH) {
      throw new RequestError(
        `The notes are ${notes.length} characters long; keep them under ${MAX_NOTES_LENGTH}.`,
      );
    }
    const checked = firmwareChecks(input.bytes, {
      flashSize: input.flashSize ?? DEFAULT_FLASH_SIZE_FOR_CHECKS,
      force: input.force === true,
      source: input.source ?? `${name} ${version}`,
    });
    const existing = await this.storage.firmware.get(checked.identity);
    if (existing) {
      throw new RequestError(
        `This image is already in the store as ${existing.name} ${existing.version} (identity ${existing.id}). Use that, or remove it first with \`mpota firmware remove ${existing.id}\`.`,
      );
    }
    await this.files.write(checked.identity, checked.image);
    await this.images?.put(checked.identity, checked.image);
    const record: FirmwareRecord = {
      id: checked.identity,
      name,
      version,
      size: checked.image.length,
      notes,
      addedAt: this.now(),
      micropython: checked.micropython,
      build: checked.build,
      checks: checked.verdicts,
    };
    const result = await this.storage.firmware.add(record);
    if (!result.ok) {
      // The file is named by identity: it belongs to the existing record when the identity is the same.
      if (result.conflict === "name-version") {
        await this.files.remove(checked.identity);
        await this.images?.remove(checked.identity);
      }
      throw new RequestError(
        result.conflict === "identity"
          ? `This image is already in the store as ${result.existing.name} ${result.existing.version} (identity ${result.existing.id}).`
          : `The store already has ${name} ${version} (identity ${result.existing.id}). Pick another version, or remove that one first (\`mpota firmware remove ${name}@${version}\`).`,
      );
    }
    return { record, verdicts: checked.verdicts };
  }

  /**
   * Finds a firmware by identity (32 hex digits, or a unique prefix of at
   * least 6), `name@version`, or `name` (the newest of that name).
   */
  async resolve(ref: string): Promise<FirmwareRecord> {
    const text = typeof ref === "string" ? ref.trim() : "";
    if (text === "")
      throw new RequestError(
        "Name a firmware: its identity, name@version, or name (the newest of that name).",
      );
    if (/^[0-9a-fA-F]{32}$/.test(text)) {
      const found = await this.storage.firmware.get(text.toLowerCase());
      if (found) return found;
      throw new RequestError(
        `No firmware with identity ${text.toLowerCase()} is in the store. \`mpota firmware list\` shows what is.`,
      );
    }
    if (/^[0-9a-fA-F]{6,31}$/.test(text)) {
      const prefix = text.toLowerCase();
      const matches = (await this.storage.firmware.list()).filter((f) => f.id.startsWith(prefix));
      if (matches.length === 1) return matches[0] as FirmwareRecord;
      if (matches.length > 1) {
        throw new RequestError(`"${text}" matches ${matches.length} firmware identities; give more digits.`);
      }
    }
    const at = text.lastIndexOf("@");
    const name = at > 0 ? text.slice(0, at) : text;
    const version = at > 0 ? text.slice(at + 1) : undefined;
    const found = await this.storage.firmware.findByName(name, version);
    if (found[0]) return found[0];
    throw new RequestError(
      `No firmware ${version === undefined ? `named "${shorten(name)}"` : `"${shorten(name)}" version "${shorten(version)}"`} is in the store. Add it with \`mpota firmware add FILE --name NAME --version VERSION\`, or see \`mpota firmware list\`.`,
    );
  }

  list(): Promise<FirmwareRecord[]> {
    return this.storage.firmware.list();
  }

  /** Removes metadata and file, unless an active rollout or job still needs the image. */
  async remove(ref: string): Promise<FirmwareRecord> {
    const record = await this.resolve(ref);
    const rollouts = await rolloutsTargeting(this.storage, record.id);
    if (rollouts.length > 0) {
      throw new RequestError(targetOfRolloutsText(`${record.name} ${record.version}`, rollouts));
    }
    const users = (await this.storage.jobs.list({ active: true })).filter((j) => j.firmwareId === record.id);
    if (users.length > 0) {
      throw new RequestError(
        `${record.name} ${record.version} is the target of active job${users.length > 1 ? "s" : ""} ${users.map((j) => `${j.id} (${j.deviceId})`).join(", ")}. Wait for ${users.length > 1 ? "them" : "it"} to finish or cancel ${users.length > 1 ? "them" : "it"} first.`,
      );
    }
    await this.storage.firmware.remove(record.id);
    await this.files.remove(record.id);
    await this.images?.remove(record.id);
    return record;
  }

  /**
   * The image bytes, checked against the identity (throws
   * FirmwareIntegrityError). With images in the database, a missing local
   * copy is fetched, checked and cached, so `files.pathOf(id)` is there
   * after this resolves.
   */
  async readImage(id: string): Promise<Uint8Array> {
    if (this.images && !(await this.files.has(id))) {
      const bytes = await this.images.get(id);
      if (bytes === undefined) {
        throw new FirmwareIntegrityError(
          `The image of firmware ${id} is not in the database. Add the firmware again (\`mpota firmware add\`).`,
        );
      }
      await this.files.write(id, bytes); // checks the bytes against the identity
    }
    return this.files.read(id);
  }
}
