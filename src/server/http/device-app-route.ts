import { createHash } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Logger } from "pino";
import type { AppFiles } from "../releases/app-files.ts";
import { APP_KIND, appIdentity, appManifestOf } from "../releases/app-kind.ts";
import { FirmwareIntegrityError } from "../releases/firmware-files.ts";
import type { FirmwareLibrary } from "../releases/firmware-library.ts";
import type { Storage } from "../storage/storage.ts";
import { HttpError } from "./http-error.ts";

/** Where boards fetch an app release (contract v3's `app` url): `/device/app/<manifest sha>`. */
export const DEVICE_APP_PREFIX = "/device/app/";
const PATH = /^\/device\/app\/([0-9a-f]{64})\/(?:manifest|file\/([0-9a-f]{64}))$/;

export interface DeviceAppDeps {
  storage: Storage;
  library: FirmwareLibrary;
  /** Where the files are (the data directory's app store, and the shared database's). */
  files: AppFiles;
  /** The device login of the firmware route (the same credentials and wrong-login limiter). */
  login: { authenticate(request: IncomingMessage): Promise<string> };
  logger: Logger;
}

/**
 * `GET /device/app/<sha>/manifest` and `/device/app/<sha>/file/<file sha>`:
 * a board fetching the app release its signed `app` command names, the
 * manifest first, then only the files it lacks. The board logs in with its
 * MQTT credentials; it gets only the release of its own active job (read
 * from storage, so any instance serves it), and of that release only the
 * manifest and the files the manifest lists. Files are at most 1 MiB and
 * served whole: a board that lost a file half-way fetches it again (the
 * files it verified stay on its flash).
 */
export class DeviceAppRoute {
  constructor(private readonly d: DeviceAppDeps) {}

  async serve(request: IncomingMessage, response: ServerResponse, pathname: string): Promise<void> {
    request.resume();
    const method = request.method ?? "GET";
    if (method !== "GET" && method !== "HEAD") {
      throw new HttpError(405, `${DEVICE_APP_PREFIX}... answers GET only.`, {}, { allow: "GET, HEAD" });
    }
    const device = await this.d.login.authenticate(request);
    const m = PATH.exec(pathname);
    if (!m) {
      throw new HttpError(
        404,
        `Nothing at ${pathname.slice(0, 120)}. A board fetches ${DEVICE_APP_PREFIX}<manifest sha>/manifest and ${DEVICE_APP_PREFIX}<manifest sha>/file/<file sha>, below the url of its app command.`,
      );
    }
    const sha = m[1] as string;
    const fileSha = m[2];
    const id = appIdentity(sha);
    const release = await this.d.storage.firmware.get(id);
    if (!release || this.d.library.kinds.of(release).name !== APP_KIND) {
      throw new HttpError(404, `There is no app release ${sha} on this server.`);
    }
    const job = await this.d.storage.jobs.activeForDevice(device);
    if (job?.firmwareId !== id) {
      throw new HttpError(
        403,
        job
          ? `Device ${device} may fetch only the release of its job ${job.id} (${job.firmwareId}), not ${sha}.`
          : `Device ${device} has no active update job, so it may fetch no app. Start one with \`mpota update ${device} NAME@VERSION\`.`,
      );
    }
    let manifestBytes: Uint8Array;
    try {
      manifestBytes = (await this.d.library.readRelease(id)).bytes;
    } catch (error) {
      if (error instanceof FirmwareIntegrityError) throw new HttpError(500, error.message);
      throw error;
    }
    if (createHash("sha256").update(manifestBytes).digest("hex") !== sha) {
      // Same 128-bit prefix, another manifest: never serve it under this name.
      throw new HttpError(404, `There is no app release ${sha} on this server.`);
    }
    let body: Uint8Array = manifestBytes;
    let what = "manifest";
    if (fileSha !== undefined) {
      const entry = appManifestOf(manifestBytes, `app release ${sha}`).files.find(
        (f) => f.sha256 === fileSha,
      );
      if (!entry) {
        throw new HttpError(
          404,
          `The file ${fileSha} is not in the manifest of ${release.name} ${release.version}.`,
        );
      }
      body = await this.storedFile(fileSha, entry.path, release.name, release.version);
      what = entry.path;
    }
    response.writeHead(200, {
      "content-type": fileSha === undefined ? "text/plain; charset=us-ascii" : "application/octet-stream",
      "content-length": body.length,
      "cache-control": "no-store",
    });
    this.d.logger.info({ device, job: job.id, app: sha, file: what, bytes: body.length }, "device app fetch");
    response.end(method === "HEAD" ? undefined : body);
  }

  /** A file of the app store, checked against its digest (a damaged one is never sent). */
  private async storedFile(sha: string, path: string, name: string, version: string): Promise<Uint8Array> {
    const bytes = await this.d.files.read(sha);
    if (bytes === undefined) {
      throw new HttpError(
        500,
        `The file ${path} of ${name} ${version} is missing from the app store or damaged there, and will not be sent. Add the release again (\`mpota app add\`).`,
      );
    }
    return bytes;
  }
}
