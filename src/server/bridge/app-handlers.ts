import type { AppReleaseView } from "../api/api.ts";
import { RequestError } from "../base/request-error.ts";
import type { AppReleases } from "../releases/app-releases.ts";
import type { Storage } from "../storage/storage.ts";

/** Files an upload may carry: the manifest's own bound. */
const MAX_UPLOAD_FILES = 256;
const BASE64 = /^[A-Za-z0-9+/\r\n]*={0,2}\s*$/;

function base64(value: unknown, what: string): Uint8Array {
  // The HTTP API may hand bytes as they are; the bridge's JSON carries base64.
  if (value instanceof Uint8Array) return value;
  if (typeof value !== "string" || value.length === 0 || !BASE64.test(value)) {
    throw new RequestError(`${what} must be base64.`);
  }
  return Buffer.from(value, "base64");
}

function uploadedFiles(value: unknown): Map<string, Uint8Array> {
  const files = new Map<string, Uint8Array>();
  if (value === undefined || value === null) return files;
  if (typeof value !== "object" || Array.isArray(value)) {
    throw new RequestError(
      '"files" must be an object: each file\'s SHA-256 (64 hex digits) to its bytes in base64.',
    );
  }
  const entries = Object.entries(value as Record<string, unknown>);
  if (entries.length > MAX_UPLOAD_FILES) {
    throw new RequestError(
      `"files" has ${entries.length} entries; an app release has at most ${MAX_UPLOAD_FILES}.`,
    );
  }
  for (const [sha, bytes] of entries) {
    if (!/^[0-9a-f]{64}$/.test(sha)) {
      throw new RequestError(
        `"files" has the key "${sha.slice(0, 70)}": give each file's SHA-256 as 64 lowercase hex digits.`,
      );
    }
    files.set(sha, base64(bytes, `The file ${sha.slice(0, 12)}...`));
  }
  return files;
}

/** The app release requests (`app/list`, `app/add`), shared by the bridge and the HTTP API. */
export function appHandlers(apps: AppReleases | undefined, storage: Storage) {
  const need = (): AppReleases => {
    if (apps === undefined)
      throw new RequestError(
        "This part of the server does not store app releases; ask the server's bridge or HTTP API.",
      );
    return apps;
  };
  const view = async (id: string): Promise<AppReleaseView> => {
    const all = await need().list();
    const found = all.find((a) => a.record.id === id);
    if (!found) throw new RequestError(`No app release ${id} is in the store.`);
    const devices = (await storage.devices.list()).filter(
      (d) => d.state?.app?.id === found.manifest.id,
    ).length;
    return appView(found, devices);
  };
  return {
    "app/list": async (): Promise<AppReleaseView[]> => {
      const [all, devices] = await Promise.all([need().list(), storage.devices.list()]);
      return all.map((a) => appView(a, devices.filter((d) => d.state?.app?.id === a.manifest.id).length));
    },
    "app/add": async (request: Record<string, unknown>) => {
      const apps = need();
      const release = request.release;
      const result =
        typeof release === "string" && release.trim() !== ""
          ? await apps.import(release.trim())
          : await apps.add({
              manifest:
                request.manifest === undefined
                  ? (() => {
                      throw new RequestError(
                        'The request needs "manifest" (the signed manifest, base64) with "files", or "release": name@version of a release `mpota app add` stored in the server\'s data directory.',
                      );
                    })()
                  : base64(request.manifest, '"manifest"'),
              files: uploadedFiles(request.files),
              ...(typeof request.notes === "string"
                ? { notes: request.notes.trim().slice(0, 4000) || null }
                : {}),
            });
      return { app: await view(result.record.id), verdicts: result.verdicts };
    },
  };
}

function appView(a: Awaited<ReturnType<AppReleases["list"]>>[number], devices: number): AppReleaseView {
  const m = a.manifest;
  return {
    id: a.record.id,
    sha256: m.id,
    name: m.name,
    version: m.version,
    files: m.files.length,
    bytes: m.total,
    boards: m.boards,
    mpy: m.mpy ? { version: m.mpy.version, arch: m.mpy.arch, subVersion: m.mpy.subVersion } : null,
    kid: m.kid,
    notes: a.record.notes,
    addedAt: a.record.addedAt,
    devices,
  };
}
