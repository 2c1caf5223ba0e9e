import { join } from "node:path";
import { MAX_INPUT_FILE_SIZE } from "../../firmware/image-file.ts";
import { shorten } from "../../protocol/mqtt-contract.ts";
import { RequestError } from "../base/request-error.ts";
import { DiskFullError, diskFullError, isDiskFull } from "../storage/disk-full.ts";
import {
  type FirmwareRecord,
  type ImageStore,
  type Storage,
  StorageError,
  type StoredVerdict,
} from "../storage/storage.ts";
import { appKind } from "./app-kind.ts";
import { esp32AppKind } from "./esp32-app-kind.ts";
import { esp8266OtaKind } from "./esp8266-ota-kind.ts";
import { FirmwareFiles, FirmwareIntegrityError } from "./firmware-files.ts";
import { ReleaseCache } from "./release-cache.ts";
import { type CheckedArtifact, type ReleaseKind, ReleaseKinds } from "./release-kind.ts";

/** This server keeps firmware images elsewhere than the others on the same database (exit code 24). */
export class FirmwareStoreMismatchError extends StorageError {}

export const FIRMWARE_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$/;
export const FIRMWARE_VERSION_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._+~-]{0,63}$/;
export const MAX_NOTES_LENGTH = 4000;

export interface AddFirmwareInput {
  bytes: Uint8Array;
  /** The release kind (a name in the server's kinds); default: the kind that recognises the bytes. */
  kind?: string;
  name: string;
  version: string;
  notes?: string | null;
  /** Device size the kind's checks assume (ESP8266: flash, default 1 MiB, the smallest common yaota8266 device). */
  flashSize?: number;
  /** Override the refusals the checks allow to be overridden. */
  force?: boolean;
  /** The file's name, for messages. */
  source?: string;
  /** An app release whose files are in the app store already (only releases/app-releases.ts). */
  appFilesStored?: boolean;
}

export interface AddFirmwareResult {
  record: FirmwareRecord;
  verdicts: StoredVerdict[];
}

export interface FirmwareLibraryOptions {
  /** Images in this directory (shared by the instances) instead of `<dataDir>/firmware` and the database. */
  firmwareDir?: string;
  /** The release kinds stored (default: the ESP8266 yaota8266 image and the ESP32 app). */
  kinds?: ReleaseKinds;
  /**
   * Why a release cannot be removed because a rollout still targets it
   * (`what`: its name and version), or undefined; given by the composition
   * root, so the store does not depend on rollouts.
   */
  rolloutsTargeting?: (id: string, what: string) => Promise<string | undefined>;
  /**
   * A release the store does not hold yet, taken in when a name (or
   * name@version) asks for it: an app `mpota app add` stored beside the
   * server. Undefined when there is none by that name.
   */
  takeIn?: (ref: string) => Promise<FirmwareRecord | undefined>;
}

/**
 * The release store (firmware of every kind): checked artifacts on disk
 * (by identity) and their metadata in storage. Holds no fleet state of its
 * own (a bounded cache of checked artifacts only), so any number of server
 * instances can use the same storage and directory.
 */
export class FirmwareLibrary {
  /** The image files: the store itself, or a local cache of the database's images. */
  readonly files: FirmwareFiles;
  /** Images in the database (shared storage without --firmware-dir), else null. */
  private readonly images: ImageStore | null;
  readonly kinds: ReleaseKinds;
  /** Artifacts read and checked, so a job reads its release once. */
  readonly cache = new ReleaseCache();

  constructor(
    private readonly storage: Storage,
    dataDir: string,
    private readonly now: () => number,
    private readonly options: FirmwareLibraryOptions = {},
  ) {
    this.files = new FirmwareFiles(options.firmwareDir ?? join(dataDir, "firmware"));
    this.images = options.firmwareDir === undefined ? storage.images : null;
    this.kinds = options.kinds ?? new ReleaseKinds([esp8266OtaKind, esp32AppKind, appKind]);
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
    const kind = this.kinds.forUpload(input.bytes, input.kind);
    const checked = kind.check(input.bytes, {
      ...(input.flashSize !== undefined ? { flashSize: input.flashSize } : {}),
      force: input.force === true,
      source: input.source ?? `${name} ${version}`,
      ...(input.appFilesStored ? { appFilesStored: true } : {}),
    });
    const existing = await this.storage.firmware.get(checked.identity);
    if (existing) {
      throw new RequestError(
        `This image is already in the store as ${existing.name} ${existing.version} (identity ${existing.id}). Use that, or remove it first with \`mpota firmware remove ${existing.id}\`.`,
      );
    }
    await this.files.write(checked.identity, checked.artifact, kind.verify);
    const record: FirmwareRecord = {
      id: checked.identity,
      name,
      version,
      size: checked.artifact.length,
      notes,
      addedAt: this.now(),
      micropython: checked.micropython,
      build: checked.build,
      checks: checked.verdicts,
      kind: kind.name,
    };
    let result: Awaited<ReturnType<Storage["firmware"]["add"]>>;
    try {
      await this.images?.put(checked.identity, checked.artifact);
      result = await this.storage.firmware.add(record);
    } catch (error) {
      // The image file without its record would be an orphan nobody lists or removes.
      await this.files.remove(checked.identity).catch(() => undefined);
      await this.images?.remove(checked.identity).catch(() => undefined);
      if (isDiskFull(error) && !(error instanceof DiskFullError))
        throw diskFullError(error, `firmware ${name} ${version} into the database`, this.storage.description);
      throw error;
    }
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
  resolve(ref: string): Promise<FirmwareRecord> {
    return this.find(ref, true);
  }

  private async find(ref: string, takeIn: boolean): Promise<FirmwareRecord> {
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
    const taken = takeIn ? await this.options.takeIn?.(text) : undefined;
    if (taken) return taken;
    throw new RequestError(
      `No firmware ${version === undefined ? `named "${shorten(name)}"` : `"${shorten(name)}" version "${shorten(version)}"`} is in the store. Add it with \`mpota firmware add FILE --name NAME --version VERSION\`, or see \`mpota firmware list\`.`,
    );
  }

  list(): Promise<FirmwareRecord[]> {
    return this.storage.firmware.list();
  }

  /** Removes metadata and file, unless an active rollout or job still needs the image. */
  async remove(ref: string): Promise<FirmwareRecord> {
    // Only what the store holds: a release beside it is not taken in to be removed.
    const record = await this.find(ref, false);
    const held = await this.options.rolloutsTargeting?.(record.id, `${record.name} ${record.version}`);
    if (held !== undefined) throw new RequestError(held);
    const users = (await this.storage.jobs.list({ active: true })).filter((j) => j.firmwareId === record.id);
    if (users.length > 0) {
      throw new RequestError(
        `${record.name} ${record.version} is the target of active job${users.length > 1 ? "s" : ""} ${users.map((j) => `${j.id} (${j.deviceId})`).join(", ")}. Wait for ${users.length > 1 ? "them" : "it"} to finish or cancel ${users.length > 1 ? "them" : "it"} first.`,
      );
    }
    await this.storage.firmware.remove(record.id);
    await this.files.remove(record.id);
    await this.images?.remove(record.id);
    this.cache.forget(record.id);
    return record;
  }

  /** The kind of a stored release (the default kind for an identity the store does not know). */
  async kindOf(id: string): Promise<ReleaseKind> {
    return this.kinds.of(await this.storage.firmware.get(id));
  }

  /** The image bytes, checked against the identity (throws FirmwareIntegrityError). */
  async readImage(id: string): Promise<Uint8Array> {
    return (await this.readRelease(id)).bytes;
  }

  /**
   * The artifact, checked against the identity by its kind (throws
   * FirmwareIntegrityError); read once and kept while its file does not
   * change. With images in the database, a missing local copy is fetched,
   * checked and cached, so `files.pathOf(id)` is there after this resolves.
   */
  async readRelease(id: string): Promise<CheckedArtifact> {
    const path = this.files.pathOf(id);
    if (this.images && !(await this.files.has(id))) {
      const bytes = await this.images.get(id);
      if (bytes === undefined) {
        throw new FirmwareIntegrityError(
          `The image of firmware ${id} is not in the database. Add the firmware again (\`mpota firmware add\`).`,
        );
      }
      await this.files.write(id, bytes, (await this.kindOf(id)).verify);
    }
    return this.cache.get(id, path, async () => this.files.read(id, (await this.kindOf(id)).verify));
  }
}
