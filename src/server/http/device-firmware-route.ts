import { createReadStream } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import { pipeline } from "node:stream/promises";
import type { Logger } from "pino";
import { isDeviceId } from "../../protocol/mqtt-contract.ts";
import { verifySecretAsync } from "../mqtt/credentials.ts";
import { FirmwareIntegrityError } from "../releases/firmware-files.ts";
import type { FirmwareLibrary } from "../releases/firmware-library.ts";
import type { Storage } from "../storage/storage.ts";
import { HttpError } from "./http-error.ts";
import type { LoginLimiter } from "./login-limiter.ts";

/** Where devices fetch their image (contract v3's `url`): `/device/firmware/<identity>`. */
export const DEVICE_FIRMWARE_PREFIX = "/device/firmware/";
const PATH = /^\/device\/firmware\/([0-9a-f]{32})$/;
/** `bytes=N-`: the only range a resuming agent asks for; 15 digits are far above any flash. */
const RANGE = /^bytes=(\d{1,15})-$/;
const BASIC = /^Basic ([A-Za-z0-9+/=]{1,400})$/;
/** A fetch that moves no byte for this long is cut (a device gone without closing its socket). */
export const DEVICE_FETCH_IDLE_MS = 60_000;

export interface DeviceFirmwareDeps {
  storage: Storage;
  library: FirmwareLibrary;
  /** Wrong device credentials per source address (the HTTP API's limiter). */
  limiter: LoginLimiter;
  logger: Logger;
  idleMs?: number;
}

const REALM = { "www-authenticate": 'Basic realm="mpota devices", charset="UTF-8"' };

/**
 * `GET /device/firmware/<fw>`: an ESP32 fetching the image its signed
 * `pull` command names. The device logs in with its MQTT credentials (the
 * broker's device login: user = device id); it gets only the release of
 * its own active job, read from storage, so any server instance serves it.
 * `Range: bytes=N-` resumes (206). One fetch per device: a new one ends the
 * one before (a device that lost its connection comes back with Range).
 */
export class DeviceFirmwareRoute {
  private readonly fetching = new Map<string, ServerResponse>();

  constructor(private readonly d: DeviceFirmwareDeps) {}

  /** Fetches under way now. */
  get active(): number {
    return this.fetching.size;
  }

  async serve(request: IncomingMessage, response: ServerResponse, pathname: string): Promise<void> {
    request.resume();
    const method = request.method ?? "GET";
    if (method !== "GET" && method !== "HEAD") {
      throw new HttpError(405, `${DEVICE_FIRMWARE_PREFIX}... answers GET only.`, {}, { allow: "GET, HEAD" });
    }
    const device = await this.authenticate(request);
    const fw = PATH.exec(pathname)?.[1];
    if (fw === undefined) {
      throw new HttpError(
        404,
        `Nothing at ${pathname.slice(0, 120)}. A device fetches its image at ${DEVICE_FIRMWARE_PREFIX}<32 lowercase hex digits>, the url of its pull command.`,
      );
    }
    const release = await this.d.storage.firmware.get(fw);
    if (!release) throw new HttpError(404, `There is no release ${fw} on this server.`);
    const job = await this.d.storage.jobs.activeForDevice(device);
    if (job?.firmwareId !== fw) {
      throw new HttpError(
        403,
        job
          ? `Device ${device} may fetch only the release of its job ${job.id} (${job.firmwareId}), not ${fw}.`
          : `Device ${device} has no active update job, so it may fetch no image. Start one with \`mpota update ${device} ...\`.`,
      );
    }
    let artifact: Awaited<ReturnType<FirmwareLibrary["readRelease"]>>;
    try {
      artifact = await this.d.library.readRelease(fw);
    } catch (error) {
      if (error instanceof FirmwareIntegrityError) throw new HttpError(500, error.message);
      throw error;
    }
    const size = artifact.bytes.length;
    const start = this.rangeStart(request.headers.range, size);
    const headers: Record<string, string | number> = {
      "content-type": "application/octet-stream",
      "content-length": size - start,
      "accept-ranges": "bytes",
      "cache-control": "no-store",
    };
    const ranged = request.headers.range !== undefined;
    if (ranged) headers["content-range"] = `bytes ${start}-${size - 1}/${size}`;
    response.writeHead(ranged ? 206 : 200, headers);
    if (method === "HEAD") {
      response.end();
      return;
    }
    this.fetching.get(device)?.destroy();
    this.fetching.set(device, response);
    response.setTimeout(this.d.idleMs ?? DEVICE_FETCH_IDLE_MS, () => response.destroy());
    this.d.logger.info({ device, job: job.id, fw, from: start, size }, "device fetch started");
    try {
      await pipeline(createReadStream(artifact.path, { start }), response);
      this.d.logger.info({ device, job: job.id, fw, from: start }, "device fetch done");
    } catch (error) {
      // The device went away or a newer fetch of its own replaced this one: it resumes with Range.
      this.d.logger.info({ device, job: job.id, err: (error as Error).message }, "device fetch broke off");
    } finally {
      if (this.fetching.get(device) === response) this.fetching.delete(device);
    }
  }

  /** The device id of a valid Basic login; 401 (429 after too many from the source) otherwise (also the app route's login). */
  async authenticate(request: IncomingMessage): Promise<string> {
    const source = request.socket.remoteAddress ?? "unknown";
    const header = request.headers.authorization;
    if (header === undefined) {
      throw new HttpError(
        401,
        "A device logs in with its MQTT credentials (HTTP Basic: its id and the password mpota_config.py holds).",
        {},
        REALM,
      );
    }
    const encoded = BASIC.exec(header)?.[1];
    const decoded = encoded === undefined ? "" : Buffer.from(encoded, "base64").toString("utf8");
    const colon = decoded.indexOf(":");
    const user = colon > 0 ? decoded.slice(0, colon) : "";
    const password = colon > 0 ? decoded.slice(colon + 1) : "";
    const record =
      isDeviceId(user) && password.length <= 256 ? await this.d.storage.credentials.get(user) : undefined;
    if (record && (await verifySecretAsync(password, record.hash))) return user;
    this.d.limiter.failed(source);
    const waitMs = this.d.limiter.waitMs(source);
    if (waitMs > 0) {
      const seconds = Math.ceil(waitMs / 1000);
      throw new HttpError(
        429,
        `Too many wrong device logins from ${source}; try again in ${seconds} s.`,
        {},
        { "retry-after": String(seconds) },
      );
    }
    throw new HttpError(
      401,
      "Wrong device login: the user is the device id, the password the one `mpota devices add` (or rotate) gave it.",
      {},
      REALM,
    );
  }

  /** The first byte asked for: 0 without Range; `bytes=N-` with N inside the image; 416 otherwise. */
  private rangeStart(range: string | undefined, size: number): number {
    if (range === undefined) return 0;
    const m = RANGE.exec(range.trim());
    const start = m ? Number(m[1]) : Number.NaN;
    if (!Number.isSafeInteger(start) || start >= size) {
      throw new HttpError(
        416,
        m
          ? `The image has ${size} bytes; Range ${range.slice(0, 40)} starts past its end.`
          : `Range ${range.slice(0, 40)} is not served: a device resumes with "bytes=N-" only.`,
        {},
        { "content-range": `bytes */${size}` },
      );
    }
    return start;
  }
}
