import { createHash } from "node:crypto";
import { MANIFEST_HEADER, parseAppManifest, type SignedAppManifest } from "../../apps/app-manifest.ts";
import type { DeviceState } from "../../protocol/mqtt-contract.ts";
import { RequestError } from "../base/request-error.ts";
import type { FirmwareRecord } from "../storage/storage.ts";
import { FirmwareIntegrityError } from "./firmware-files.ts";
import type { CheckedRelease, ReleaseKind, UploadOptions } from "./release-kind.ts";

export const APP_KIND = "app";

const HEADER = Buffer.from(`${MANIFEST_HEADER}\n`, "latin1");

/**
 * The identity of an app release in the release store: the first 32 hex
 * digits of its manifest's SHA-256 (the whole digest is the release's
 * identity in docs/app-updates.md and in the signed `app` command; the
 * store's and the jobs' identities are 32 hex digits, as the contract's `fw`).
 */
export function appIdentity(manifestSha256: string): string {
  return manifestSha256.slice(0, 32).toLowerCase();
}

/** The manifest of a stored app release (the artifact of the `app` kind), parsed. */
export function appManifestOf(artifact: Uint8Array, source: string): SignedAppManifest {
  try {
    return parseAppManifest(Buffer.from(artifact.buffer, artifact.byteOffset, artifact.length));
  } catch (error) {
    throw new RequestError(`${source}: ${(error as Error).message}`);
  }
}

/**
 * An app release: a signed manifest of a board's Python files (src/apps).
 * The artifact stored and read by identity is the manifest itself; the
 * files are in the app store (`<data>/apps/files/<sha256>`), by digest. Its
 * rows are known by the `kind` column (schema 5); `build` holds "app" too,
 * so a server's older code never takes one for an ESP8266 image.
 */
export const appKind: ReleaseKind = {
  name: APP_KIND,
  // The device fetches the manifest and the changed files (deliveries: named, not imported).
  delivery: "app-pull",
  deviceModel: "MicroPython board with an mpota app",

  recognises: (bytes: Uint8Array) =>
    bytes.length >= HEADER.length && Buffer.from(bytes.subarray(0, HEADER.length)).equals(HEADER),
  owns: (release: FirmwareRecord) => release.kind === APP_KIND || release.build === APP_KIND,
  target: () => APP_KIND,
  // The manifest's boards and the device's .mpy decide (checkDevice), not the chip.
  chips: "any",

  check(bytes: Uint8Array, options: UploadOptions): CheckedRelease {
    const manifest = appManifestOf(bytes, options.source);
    if (options.appFilesStored !== true) {
      // A manifest alone would be a release whose files the server cannot send.
      throw new RequestError(
        `${options.source} is the manifest of app ${manifest.name} ${manifest.version}: add an app release with its files (\`mpota app add DIR\` beside the server, or the bridge's "app/add" with the manifest and files), not as firmware.`,
      );
    }
    return {
      artifact: bytes,
      identity: appIdentity(manifest.id),
      micropython: null,
      build: APP_KIND,
      verdicts: [
        {
          check: "app-manifest",
          level: "ok",
          forced: false,
          message: `${manifest.files.length} files, ${manifest.total} bytes, for ${manifest.boards.join(", ")}${manifest.mpy ? `, .mpy version ${manifest.mpy.version}` : ""}; signed by key ${manifest.kid}.`,
        },
      ],
    };
  },

  verify(identity: string, bytes: Uint8Array, what: string): void {
    const digest = createHash("sha256").update(bytes).digest("hex");
    if (appIdentity(digest) === identity.toLowerCase()) return;
    throw new FirmwareIntegrityError(
      `${what} does not match app release ${identity}: its SHA-256 begins ${appIdentity(digest)}. It was changed or damaged after it was added and will not be sent. Add the release again (\`mpota app add\`).`,
    );
  },

  running: (state: Pick<DeviceState, "fw" | "app">) => {
    const app = state.app;
    if (app?.id === undefined) return { identity: undefined };
    return {
      identity: appIdentity(app.id),
      ...(app.name !== undefined ? { name: app.name } : {}),
      ...(app.ver !== undefined ? { version: app.ver } : {}),
    };
  },

  rolledBack(state: DeviceState, jobId: string) {
    const rb = state.app?.rb;
    if (rb?.job !== jobId) return undefined;
    // The loader's note starts "rolled back <name> <version>: <where and what>".
    const why = rb.why.startsWith("rolled back") ? rb.why : `rolled back: ${rb.why}`;
    const running = state.app?.name
      ? ` it runs ${state.app.name} ${state.app.ver} again`
      : " it runs its previous app again";
    return {
      reason: `${why};${running}. Fix the app (the line above is where it failed), add it as a new version and update again.`,
      data: { why: rb.why, ...(state.app?.id ? { running: state.app.id } : {}) },
    };
  },

  checkDevice(artifact: Uint8Array, state: DeviceState, source: string): void {
    const manifest = appManifestOf(artifact, source);
    if (state.v < 3 || state.app === undefined) {
      throw new RequestError(
        `${source}: the device reports contract v${state.v} without its app (the state's "app"): mpota's app loader is not on the board, so it cannot fetch an app release. Copy the app modules and examples/app_main.py as main.py to it beside the agent (device/README.md, "Apps") and restart it.`,
      );
    }
    const app = state.app;
    if (app.board !== undefined && !manifest.boards.includes(app.board)) {
      throw new RequestError(
        `${source}: ${manifest.name} ${manifest.version} is for ${manifest.boards.join(", ")}; the device is a ${app.board} board. Add the release again with --board ${app.board} if its files run there.`,
      );
    }
    const need = manifest.mpy;
    if (need !== undefined && app.mpy !== undefined) {
      const version = app.mpy & 0xff;
      const arch = (app.mpy >> 10) & 0x0f;
      const sub = (app.mpy >> 8) & 0x03;
      if (version !== need.version) {
        throw new RequestError(
          `${source}: its .mpy files are version ${need.version}; the device's MicroPython loads version ${version}. Compile them with the mpy-cross of the device's MicroPython, or update its firmware first.`,
        );
      }
      if (need.arch !== 0 && (arch !== need.arch || sub !== need.subVersion)) {
        throw new RequestError(
          `${source}: its native .mpy code is for architecture ${need.arch} sub-version ${need.subVersion}; the device runs architecture ${arch} sub-version ${sub}. Compile them for the device's chip (mpy-cross -march=...).`,
        );
      }
    }
    if (app.free !== undefined && manifest.total > app.free) {
      throw new RequestError(
        `${source}: ${manifest.name} ${manifest.version} is ${manifest.total} bytes; the device reports ${app.free} bytes free for a new app. Free space on the device, or make the app smaller.`,
      );
    }
  },
};
