import { AppKeyError, AppReleaseError } from "../../apps/app-errors.ts";
import { type AppKey, defaultAppKeyPath, loadAppKey } from "../../apps/app-key.ts";
import { APP_BOARDS, parseAppBoards } from "../../apps/app-manifest.ts";
import { signAppManifest } from "../../apps/app-signature.ts";
import { MAX_APP_ZIP_BYTES, readAppZip } from "../../apps/app-zip.ts";
import { mpyNeed } from "../../apps/mpy-header.ts";
import { checkPythonSources } from "../../apps/python-check.ts";
import { RequestError } from "../base/request-error.ts";
import { recordAudit } from "../trust/audit.ts";
import type { ApiCall } from "./api-context.ts";
import { HttpError } from "./http-error.ts";
import { readUpload } from "./request-body.ts";

/** The text of a query field, or undefined; a field over `max` characters is refused. */
function field(query: URLSearchParams, key: string, max: number): string | undefined {
  const value = query.get(key);
  if (value === null) return undefined;
  if (value.length > max) throw new HttpError(400, `"${key}" is longer than ${max} characters.`);
  return value;
}

/**
 * POST /apps/zip: the zip of an app's folder is the body, its name, version
 * and boards in the query string. The server reads it by the rules of
 * `mpota app add DIR` (app-zip.ts: bounds first, paths, reserved names),
 * signs the manifest with its own app key (the data directory's, made on
 * first use as `mpota app add` makes it) and stores it through the
 * handlers' `app/add`, so the audit entry and the answer are theirs.
 */
export async function uploadAppZip(call: ApiCall): Promise<void> {
  const { ctx, request, query, h, reply, actor } = call;
  const dataDir = ctx.dataDir;
  const type = (request.headers["content-type"] ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
  if (
    type.startsWith("multipart/") ||
    type === "application/x-www-form-urlencoded" ||
    type.startsWith("text/")
  ) {
    request.resume();
    throw new HttpError(
      415,
      "Send the zip file itself as the request body (Content-Type: application/zip), with name and version in the query string (?name=thermostat&version=1.4.0).",
    );
  }
  const name = field(query, "name", 64);
  const version = field(query, "version", 64);
  if (!name || !version) {
    request.resume();
    throw new HttpError(
      400,
      'The upload needs "name" and "version" in the query string (?name=thermostat&version=1.4.0).',
    );
  }
  const notes = field(query, "notes", 4000);
  let boards: string[];
  let key: AppKey;
  try {
    boards = parseAppBoards(field(query, "boards", 200) ?? APP_BOARDS.join(","));
  } catch (error) {
    request.resume();
    if (error instanceof AppReleaseError) throw new HttpError(400, error.message);
    throw error;
  }
  const zip = await readUpload(request, MAX_APP_ZIP_BYTES, ctx.limits.bodyIdleMs);
  // Audited here (the app/add it calls is not in the audited list): who uploaded which app, stored or refused.
  const entry = {
    at: ctx.now(),
    actor: actor(),
    action: "app/upload",
    request: { name, version, boards, bytes: zip.length },
  };
  try {
    const folder = await readAppZip(zip);
    await checkPythonSources(folder.files);
    key = loadAppKey(defaultAppKeyPath(dataDir), { create: true });
    const manifest = signAppManifest(
      {
        name,
        version,
        boards,
        mpy: mpyNeed(folder.mpy),
        files: folder.files.map((f) => ({ path: f.path, size: f.bytes.length, sha256: f.sha256 })),
      },
      key.privateKey,
    );
    const result = await h["app/add"]({
      manifest: manifest.bytes,
      files: Object.fromEntries(folder.files.map((f) => [f.sha256, f.bytes])),
      ...(notes !== undefined ? { notes } : {}),
    });
    ctx.stream.publish("firmware", { action: "add", firmware: result.app });
    await recordAudit(ctx.storage.audit, ctx.logger, { ...entry, outcome: "ok" });
    reply(201, {
      ...result,
      skipped: folder.skipped,
      key: { kid: key.kid, created: key.created, ...(key.warning ? { warning: key.warning } : {}) },
    });
  } catch (error) {
    await recordAudit(ctx.storage.audit, ctx.logger, {
      ...entry,
      outcome: "refused",
      reason: (error as Error)?.message,
    });
    if (error instanceof AppReleaseError || error instanceof AppKeyError || error instanceof RequestError) {
      throw new HttpError(400, error.message);
    }
    throw error;
  }
}
