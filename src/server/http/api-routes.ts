import type { IncomingMessage, ServerResponse } from "node:http";
import type { Logger } from "pino";
import { DEFAULT_FLASH_SIZE } from "../../firmware/flash-layout.ts";
import { preflight } from "../../firmware/preflight.ts";
import type { BridgeHandlers } from "../bridge/bridge.ts";
import { MAX_FIRMWARE_REQUEST_BYTES } from "../bridge/bridge.ts";
import { RequestError } from "../request-error.ts";
import type { Storage, StoredVerdict } from "../storage/storage.ts";
import { auditedHandlers, recordAudit } from "../trust/audit.ts";
import type { Authenticator } from "./auth.ts";
import type { EventStream } from "./event-stream.ts";
import { HttpError } from "./http-error.ts";
import { DEFAULT_LINE_CONCURRENCY, type LineUpdates } from "./line-update.ts";
import { readJsonBody, readUpload } from "./request-body.ts";
import { type RolloutRouteContext, routeRollouts } from "./rollout-routes.ts";

/** Largest firmware upload: the same bytes the MQTT bridge takes as base64 in firmware/add. */
export const MAX_UPLOAD_BYTES = Math.floor((MAX_FIRMWARE_REQUEST_BYTES * 3) / 4);

export interface ApiContext extends RolloutRouteContext {
  handlers: BridgeHandlers;
  storage: Storage;
  auth: Authenticator;
  stream: EventStream;
  lines: LineUpdates;
  /** Cookies get `Secure` when the server is reached over TLS (behind a proxy that says so). */
  secure: (request: IncomingMessage) => boolean;
  logger: Logger;
  now: () => number;
}

/** Who made an HTTP request, in words for the audit list (after authentication passed). */
function httpActor(ctx: ApiContext, request: IncomingMessage): string {
  let via: string;
  try {
    via = ctx.auth.authenticate(request).via;
  } catch {
    via = "unauthenticated";
  }
  const how = via === "token" ? "token" : via === "session" ? "dashboard session" : "no login (--no-auth)";
  return `http ${how} (${request.socket.remoteAddress ?? "unknown"})`;
}

export function sendJson(
  response: ServerResponse,
  status: number,
  value: unknown,
  headers: Record<string, string> = {},
): void {
  const body = JSON.stringify(value);
  response.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "content-length": Buffer.byteLength(body),
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    ...headers,
  });
  response.end(body);
}

export function queryInteger(query: URLSearchParams, key: string): number | string | undefined {
  const text = query.get(key);
  if (text === null || text === "") return undefined;
  return /^-?\d+$/.test(text) ? Number(text) : text;
}

export function queryBoolean(query: URLSearchParams, key: string): boolean | string | undefined {
  const text = query.get(key);
  if (text === null || text === "") return undefined;
  if (["true", "1", "yes"].includes(text)) return true;
  if (["false", "0", "no"].includes(text)) return false;
  return text;
}

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
    return preflight(bytes, { flashSize, source }).verdicts.map((v) => ({
      check: v.check,
      level: v.level,
      forced: v.forced,
      message: v.fix && v.level !== "ok" ? `${v.message} ${v.fix}` : v.message,
    }));
  } catch {
    return [];
  }
}

const segment = (text: string) => {
  try {
    return decodeURIComponent(text);
  } catch {
    throw new HttpError(400, "The path is not URI-encoded correctly.");
  }
};

/**
 * `/api/v1/...`: the same handlers as the MQTT bridge (and so the CLI's
 * `--json`), over HTTP. Returns false when no route matches.
 */
export async function routeApi(
  ctx: ApiContext,
  request: IncomingMessage,
  response: ServerResponse,
  url: URL,
): Promise<boolean> {
  const method = request.method ?? "GET";
  const path = url.pathname.replace(/\/+$/, "");
  const parts = path.split("/").slice(3).map(segment); // after "", "api", "v1"
  const q = url.searchParams;
  const actor = () => httpActor(ctx, request);
  const h = auditedHandlers(ctx.handlers, {
    audit: ctx.storage.audit,
    logger: ctx.logger,
    now: ctx.now,
    actor,
  });
  const route = `${method} /${parts.map((p, i) => (i % 2 === 1 && ["devices", "firmware", "jobs"].includes(parts[i - 1] as string) ? ":id" : p)).join("/")}`;

  // Without credentials: the session check, login and logout.
  if (route === "GET /session") {
    let authenticated = false;
    try {
      ctx.auth.authenticate(request);
      authenticated = true;
    } catch {
      authenticated = false;
    }
    sendJson(response, 200, { auth: ctx.auth.open ? "none" : "token", authenticated });
    return true;
  }
  if (route === "POST /login") {
    ctx.auth.checkOrigin(request);
    const body = await readJsonBody(request);
    ctx.auth.login(request, response, body.token, ctx.secure(request));
    sendJson(response, 200, { authenticated: true });
    return true;
  }
  if (route === "POST /logout") {
    ctx.auth.checkOrigin(request);
    ctx.auth.logout(response, ctx.secure(request));
    sendJson(response, 200, { authenticated: false });
    return true;
  }

  if (parts[0] === "rollouts") return routeRollouts({ ...ctx, handlers: h }, request, response, parts, q);

  const known = [
    "GET /info",
    "GET /devices",
    "GET /devices/:id",
    "GET /firmware",
    "POST /firmware",
    "DELETE /firmware/:id",
    "POST /update",
    "POST /update/line",
    "GET /jobs",
    "GET /jobs/:id",
    "POST /jobs/:id/cancel",
    "GET /events",
    "GET /audit",
    "POST /devices",
    "POST /devices/:id/allow-unsigned",
    "GET /credentials",
  ];
  if (!known.includes(route)) {
    const paths = new Set(known.map((k) => k.split(" ")[1]));
    const routePath = route.split(" ")[1];
    if (paths.has(routePath)) {
      throw new HttpError(405, `${method} is not allowed on ${path}.`, {
        allowed: known.filter((k) => k.endsWith(` ${routePath}`)).map((k) => k.split(" ")[0]),
      });
    }
    return false;
  }
  ctx.auth.checkOrigin(request);
  ctx.auth.authenticate(request);
  const id = parts[1] as string;

  switch (route) {
    case "GET /info":
      sendJson(response, 200, await h.info({}));
      return true;
    case "GET /devices":
      sendJson(response, 200, await h.devices({}));
      return true;
    case "GET /devices/:id": {
      if (!(await ctx.storage.devices.get(id)))
        throw new HttpError(
          404,
          `No device "${id.slice(0, 64)}" is known. GET /api/v1/devices lists the known ones.`,
        );
      sendJson(response, 200, await h.device({ id, history: queryInteger(q, "history") }));
      return true;
    }
    case "GET /firmware":
      sendJson(response, 200, await h["firmware/list"]({}));
      return true;
    case "POST /firmware": {
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
      const name = uploadField(request, q, "name");
      const version = uploadField(request, q, "version");
      if (!name || !version) {
        request.resume();
        throw new HttpError(
          400,
          'The upload needs "name" and "version" (query string or X-Firmware-Name / X-Firmware-Version headers).',
        );
      }
      const notes = uploadField(request, q, "notes");
      const filename = uploadField(request, q, "filename");
      const flashText = uploadField(request, q, "flash");
      const flash =
        flashText === undefined ? undefined : /^\d+$/.test(flashText) ? Number(flashText) : flashText;
      const force = queryBoolean(q, "force");
      const bytes = await readUpload(request, MAX_UPLOAD_BYTES);
      try {
        const result = await h["firmware/add"]({
          image: Buffer.from(bytes).toString("base64"),
          name,
          version,
          ...(notes !== undefined ? { notes } : {}),
          ...(filename !== undefined ? { filename } : {}),
          ...(flash !== undefined ? { flash } : {}),
          ...(force !== undefined ? { force } : {}),
        });
        ctx.stream.publish("firmware", { action: "add", firmware: result.firmware });
        sendJson(response, 201, result);
      } catch (error) {
        if (error instanceof RequestError) {
          const flashSize = typeof flash === "number" ? flash : DEFAULT_FLASH_SIZE;
          throw new HttpError(400, error.message, {
            verdicts: refusalVerdicts(bytes, flashSize, filename ?? `${name} ${version}`),
          });
        }
        throw error;
      }
      return true;
    }
    case "DELETE /firmware/:id": {
      const removed = await h["firmware/remove"]({ id });
      ctx.stream.publish("firmware", { action: "remove", firmware: removed });
      sendJson(response, 200, removed);
      return true;
    }
    case "GET /audit": {
      sendJson(
        response,
        200,
        await h.audit({
          ...(q.get("limit") ? { limit: queryInteger(q, "limit") } : {}),
          ...(q.get("before") ? { before: queryInteger(q, "before") } : {}),
        }),
      );
      return true;
    }
    case "GET /credentials": {
      sendJson(response, 200, await h["devices/credentials"]({}));
      return true;
    }
    case "POST /devices": {
      const body = await readJsonBody(request);
      sendJson(response, 201, await h["devices/add"](body));
      return true;
    }
    case "POST /devices/:id/allow-unsigned": {
      const body = await readJsonBody(request);
      sendJson(response, 200, await h["devices/allow-unsigned"]({ id, allow: body.allow }));
      return true;
    }
    case "POST /update": {
      const body = await readJsonBody(request);
      sendJson(response, 201, await h.update(body));
      return true;
    }
    case "POST /update/line": {
      const body = await readJsonBody(request);
      if (typeof body.firmware !== "string" || body.firmware.trim() === "")
        throw new HttpError(
          400,
          'The request needs "firmware": the target firmware (identity, name@version, or name for the newest).',
        );
      const concurrency = body.concurrency === undefined ? DEFAULT_LINE_CONCURRENCY : body.concurrency;
      const allowDowngrade = body.allowDowngrade ?? false;
      if (typeof allowDowngrade !== "boolean")
        throw new HttpError(400, '"allowDowngrade" must be true or false.');
      const entry = { at: ctx.now(), actor: actor(), action: "line/update", request: body };
      let started: unknown;
      try {
        started = await ctx.lines.start(body.firmware, concurrency as number, allowDowngrade);
      } catch (error) {
        await recordAudit(ctx.storage.audit, ctx.logger, {
          ...entry,
          outcome: "refused",
          reason: (error as Error)?.message,
        });
        throw error;
      }
      await recordAudit(ctx.storage.audit, ctx.logger, { ...entry, outcome: "ok" });
      sendJson(response, 201, started);
      return true;
    }
    case "GET /jobs": {
      sendJson(
        response,
        200,
        await h.jobs({
          ...(q.get("device") ? { device: q.get("device") } : {}),
          ...(q.get("active") ? { active: queryBoolean(q, "active") } : {}),
          ...(q.get("limit") ? { limit: queryInteger(q, "limit") } : {}),
        }),
      );
      return true;
    }
    case "GET /jobs/:id": {
      if (!(await ctx.storage.jobs.get(id)))
        throw new HttpError(404, `There is no job "${id.slice(0, 64)}". GET /api/v1/jobs lists them.`);
      sendJson(response, 200, await h.job({ id }));
      return true;
    }
    case "POST /jobs/:id/cancel": {
      if (!(await ctx.storage.jobs.get(id)))
        throw new HttpError(404, `There is no job "${id.slice(0, 64)}". GET /api/v1/jobs lists them.`);
      sendJson(response, 200, await h["job/cancel"]({ id }));
      return true;
    }
    case "GET /events":
      ctx.stream.open(request, response);
      return true;
    default:
      return false;
  }
}
