import type { DeviceState } from "../../protocol/mqtt-contract.ts";
import { RequestError } from "../base/request-error.ts";
import type { FirmwareRecord, StoredVerdict } from "../storage/storage.ts";

/**
 * The release-kind seam: what kind of artifact a release is, and the checks
 * that belong to that kind. The store, the job state machine, rollouts, the
 * bridge, the HTTP API and Home Assistant handle releases of any kind; a
 * kind says how to check an upload, how to tell its identity (what a device
 * reports once it runs it), whether a device can take it, and which
 * delivery (deliveries/delivery.ts) brings it there. The ESP8266 yaota8266
 * image (esp8266-ota-kind.ts) and the ESP32 app for the other OTA slot
 * (esp32-app-kind.ts), and app releases of Python files (app-kind.ts).
 */

export interface UploadOptions {
  /** Device size the checks assume when the kind has one (flash bytes for the ESP8266). */
  flashSize?: number;
  /** Override the refusals the kind allows to be overridden. */
  force?: boolean;
  /** The upload's name, for messages. */
  source: string;
  /** An app release whose files are in the app store already (releases/app-releases.ts adds those). */
  appFilesStored?: boolean;
}

/** An upload that passed its kind's checks. */
export interface CheckedRelease {
  /** What is stored and delivered (for example the image inside a canned .ota file). */
  artifact: Uint8Array;
  /** 32 lower-case hex digits: what a device reports as `fw` once it runs the release. */
  identity: string;
  micropython: string | null;
  /** The kind's word for the build, stored in the release's `build` column. */
  build: string | null;
  verdicts: StoredVerdict[];
}

/** A release's artifact, read and checked against its identity (once per job: releases/release-cache.ts). */
export interface CheckedArtifact {
  identity: string;
  bytes: Uint8Array;
  /** SHA-256 of the bytes, hex. */
  sha256: string;
  /** The checked file the bytes came from. */
  path: string;
}

/** What a device runs of one kind of release. */
export interface RunningRelease {
  /** 32 lower-case hex digits, or undefined when it runs none of this kind. */
  identity: string | undefined;
  /** Name and version as the device reports them (an app's), when it does. */
  name?: string;
  version?: string;
}

/** A rollback a device reported: the reason for the job's log, and what the step records. */
export interface RollBack {
  reason: string;
  data: Record<string, unknown>;
}

export interface ReleaseKind {
  /** "esp8266-ota". */
  readonly name: string;
  /** The delivery that brings releases of this kind to a device (`Delivery.name`). */
  readonly delivery: string;
  /** What a device updated with this kind is, in words (Home Assistant's device model). */
  readonly deviceModel: string;
  /** Whether uploaded bytes are this kind's artifact, when the upload names no kind (by magic bytes). */
  recognises(bytes: Uint8Array): boolean;
  /**
   * Whether a stored release of before schema 5 (no `kind` column value)
   * is of this kind: a kind knows those rows by their `build`.
   */
  owns(release: FirmwareRecord): boolean;
  /**
   * The hardware a stored release is built for ("esp8266", "esp32s3"): a
   * device running a release of one target cannot take a release of
   * another. Without it, the kind's name.
   */
  target?(release: FirmwareRecord): string;
  /**
   * The chips (contract v3's `chip`) whose devices take releases of this
   * kind, or "any" (an app release goes wherever the agent runs). A job
   * request refuses a device reporting another chip, once for every kind
   * (releases/chip-refusal.ts); rollouts leave such devices out and the
   * dashboard offers only devices of these chips (the release view's `chips`).
   */
  readonly chips: ReadonlySet<string> | "any";
  /** Checks an upload; throws {@link RequestError} listing every cause and fix. */
  check(bytes: Uint8Array, options: UploadOptions): CheckedRelease;
  /** Throws FirmwareIntegrityError unless `bytes` are the artifact with this identity. */
  verify(identity: string, bytes: Uint8Array, what: string): void;
  /**
   * What a device reporting `state` runs of this kind: the identity it
   * reports (compared with a release's id) and, when the state names them,
   * its name and version. Without it: the firmware (`fw`), whose name and
   * version the store knows.
   */
  running?(state: Pick<DeviceState, "fw" | "app">): RunningRelease;
  /**
   * Why the device went back from job `jobId`'s release, when its state
   * says so (contract v3: the state's `rb`, or the app's `rb`); undefined
   * otherwise. Without it: the firmware's `rb` (an ESP32's bootloader).
   */
  rolledBack?(state: DeviceState, jobId: string): RollBack | undefined;
  /**
   * Throws {@link RequestError} when a device reporting `state` cannot take
   * the release (what it runs, its size against the artifact).
   */
  checkDevice(artifact: Uint8Array, state: DeviceState, source: string): void;
}

/**
 * The kinds this server stores, given by the composition root. The first is
 * the default: the kind of uploads no other kind recognises and of stored
 * rows no other kind owns (every row stored before kinds existed).
 */
export class ReleaseKinds {
  readonly all: readonly ReleaseKind[];

  constructor(kinds: readonly ReleaseKind[]) {
    if (kinds.length === 0) throw new Error("ReleaseKinds needs at least one kind");
    this.all = kinds;
  }

  get default(): ReleaseKind {
    return this.all[0] as ReleaseKind;
  }

  named(name: string): ReleaseKind {
    const kind = this.all.find((k) => k.name === name);
    if (!kind) {
      throw new RequestError(
        `There is no release kind "${name}"; this server stores ${this.all.map((k) => k.name).join(", ")}.`,
      );
    }
    return kind;
  }

  /** The kind of an upload: the one named, else the first that recognises the bytes, else the default. */
  forUpload(bytes: Uint8Array, name?: string): ReleaseKind {
    if (name !== undefined) return this.named(name);
    return this.all.slice(1).find((k) => k.recognises(bytes)) ?? this.default;
  }

  /** The hardware a stored release is built for (ReleaseKind.target, else the kind's name). */
  targetOf(release: FirmwareRecord): string {
    const kind = this.of(release);
    return kind.target?.(release) ?? kind.name;
  }

  /** The kind a device reporting `chip` runs: the first that names the chip (an app kind serves any, naming none). */
  forChip(chip: string | undefined): ReleaseKind | undefined {
    return chip === undefined ? undefined : this.all.find((k) => k.chips !== "any" && k.chips.has(chip));
  }

  /**
   * The kind of a stored release: the one its `kind` column names (rows
   * since schema 5), else the first that owns it (rows from before carry
   * their kind in `build`), else the default.
   */
  of(release: FirmwareRecord | undefined): ReleaseKind {
    if (!release) return this.default;
    if (release.kind !== undefined) {
      const named = this.all.find((k) => k.name === release.kind);
      if (named) return named;
    }
    return this.all.slice(1).find((k) => k.owns(release)) ?? this.default;
  }
}

/** What a device reporting `state` runs of `kind` (ReleaseKind.running; by default its firmware). */
export function runningOf(kind: ReleaseKind, state: DeviceState): RunningRelease {
  return kind.running ? kind.running(state) : { identity: state.fw };
}

/**
 * Why the device went back from job `jobId`'s release (ReleaseKind.rolledBack;
 * by default the firmware's `rb`: an ESP32 whose bootloader went back).
 */
export function rolledBackOf(kind: ReleaseKind, state: DeviceState, jobId: string): RollBack | undefined {
  if (kind.rolledBack) return kind.rolledBack(state, jobId);
  const rb = state.rb;
  if (rb?.job !== jobId) return undefined;
  return {
    reason: `rolled back: firmware ${rb.fw} booted but did not confirm; the bootloader went back to ${state.fw}. The new firmware crashed or could not reach the broker before its agent confirmed it: try it on one device by serial first.`,
    data: { fw: rb.fw, running: state.fw },
  };
}
