import type { IncomingMessage } from "node:http";
import { isEsp32AppImage } from "../../firmware/esp32-app-image.ts";
import { findMergedFirmware } from "../../firmware/esp32-merged-firmware.ts";
import { preflightEsp32 } from "../../firmware/esp32-preflight.ts";
import { DEFAULT_FLASH_SIZE } from "../../firmware/flash-layout.ts";
import { preflight } from "../../firmware/preflight.ts";
import { RequestError } from "../base/request-error.ts";
import { MAX_FIRMWARE_REQUEST_BYTES } from "../bridge/bridge.ts";
import type { StoredVerdict } from "../storage/storage.ts";
import type { ApiCall } from "./api-context.ts";
import { HttpError } from "./http-error.ts";
import { queryBoolean } from "./http-json.ts";
import { readUpload } from "./request-body.ts";

/** Largest firmware upload: the same bytes the MQTT bridge takes as base64 in firmware/add. */
export const MAX_UPLOAD_BYTES = Math.floor((MAX_FIRMWARE_REQUEST_BYTES * 3) / 4);

/** A field from the query string or from an `X-Firmware-<Field>` header (URI-encoded). */
function uploadField(request: IncomingMessage, query: URLSearchParams, key: string): string | undefined {
  const fromQuery = query.get(key);
  if (fromQuery !== null) return fromQuery;
  const header = request.headers[`x-firmware-${key}`];
  if (typeof header !== "string") return undefined;
  try {
    return decodeURIComponent(header);
  } catch {
    throw new HttpError(400, `The X-Firmware-${key} header is not URI-encoded text.`);
  }
}

/** The preflight verdicts of a refused upload, for the dashboard to list (the error message has them as text too). */
function refusalVerdicts(bytes: Uint8Array, flashSize: number, source: string): StoredVerdict[] {
  try {
    const esp32 = isEsp32AppImage(bytes) || findMergedFirmware(bytes) !== null;
    const result = esp32 ? preflightEsp32(bytes, { source }) : preflight(bytes, { flashSize, source });
    return result.verdicts.map((v) => ({
      check: v.check,
      level: v.level,
      forced: v.forced,
      message: v.fix && v.level !== "ok" ? `${v.message} ${v.fix}` : v.message,
    }));
  } catch {
    return [];
  }
}

/**
 * POST /firmware: the file itself is the body (no multipart), its name and
 * version in the query string or X-Firmware-* headers. The bytes go to the
 * bridge's firmware/add handler as they are (the bridge's JSON carries them
 * as base64; HTTP need not), so the checks, the audit entry and the answer
 * are the bridge's.
 */
export async function uploadFirmware({ ctx, request, query, h, reply }: ApiCall): Promise<void> {
  const type = (request.headers["content-type"] ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
  if (
    type.startsWith("multipart/") ||
    type === "application/x-www-form-urlencoded" ||
    type === "text/plain"
  ) {
    request.resume();
    throw new HttpError(
      415,
      "Send the firmware file itself as the request body (Content-Type: application/octet-stream), with name and version in the query string (?name=sensor&version=1.4.2) or in X-Firmware-Name and X-Firmware-Version headers.",
    );
  }
  const name = uploadField(request, query, "name");
  const version = uploadField(request, query, "version");
  if (!name || !version) {
    request.resume();
    throw new HttpError(
      400,
      'The upload needs "name" and "version" (query string or X-Firmware-Name / X-Firmware-Version headers).',
    );
  }
  const notes = uploadField(request, query, "notes");
  const filename = uploadField(request, query, "filename");
  const flashText = uploadField(request, query, "flash");
  const flash = flashText === undefined ? undefined : /^\d+$/.test(flashText) ? Number(flashText) : flashText;
  const force = queryBoolean(query, "force");
  const bytes = await readUpload(request, MAX_UPLOAD_BYTES, ctx.limits.bodyIdleMs);
  try {
    const result = await h["firmware/add"]({
      image: bytes,
      name,
      version,
      ...(notes !== undefined ? { notes } : {}),
      ...(filename !== undefined ? { filename } : {}),
      ...(flash !== undefined ? { flash } : {}),
      ...(force !== undefined ? { force } : {}),
    });
    ctx.stream.publish("firmware", { action: "add", firmware: result.firmware });
    reply(201, result);
  } catch (error) {
    if (error instanceof RequestError) {
      const flashSize = typeof flash === "number" ? flash : DEFAULT_FLASH_SIZE;
      throw new HttpError(400, error.message, {
        verdicts: refusalVerdicts(bytes, flashSize, filename ?? `${name} ${version}`),
      });
    }
    throw error;
  }
}
