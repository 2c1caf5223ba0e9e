import type { IncomingMessage, ServerResponse } from "node:http";
import { RequestError } from "../base/request-error.ts";
import { auditedHandlers } from "../trust/audit.ts";
import type { ApiCall, ApiContext } from "./api-context.ts";
import { FLEET_ROUTES, SESSION_ROUTES } from "./api-routes.ts";
import { HttpError } from "./http-error.ts";
import { sendJson } from "./http-json.ts";
import { ROLLOUT_ROUTES } from "./rollout-routes.ts";
import { RouteTable } from "./route-table.ts";

/** Every route of `/api/v1/`: one table. */
export const API_ROUTES = new RouteTable<ApiCall>([...SESSION_ROUTES, ...FLEET_ROUTES, ...ROLLOUT_ROUTES]);

const API_ROOT = "/api/v1";

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

function decodeSegment(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    throw new HttpError(400, "The path is not URI-encoded correctly.");
  }
}

/**
 * `/api/v1/...`: the same handlers as the MQTT bridge (and so the CLI's
 * `--json`), over HTTP. Returns false when no route has the path.
 */
export async function routeApi(
  ctx: ApiContext,
  request: IncomingMessage,
  response: ServerResponse,
  url: URL,
): Promise<boolean> {
  const method = request.method ?? "GET";
  const path = url.pathname.replace(/\/+$/, "");
  if (!path.startsWith(`${API_ROOT}/`)) return false;
  const segments = path
    .slice(API_ROOT.length + 1)
    .split("/")
    .map(decodeSegment);
  const found = API_ROUTES.match(method, segments);
  if (found === undefined) return false;
  if ("allowed" in found) {
    request.resume();
    throw new HttpError(405, `${method} is not allowed on ${path}.`, { allowed: found.allowed });
  }
  const { route, params } = found;
  if (!route.open) {
    ctx.auth.checkOrigin(request);
    ctx.auth.authenticate(request);
  }
  const actor = () => httpActor(ctx, request);
  const call: ApiCall = {
    ctx,
    request,
    response,
    params,
    query: url.searchParams,
    h: auditedHandlers(ctx.handlers, { audit: ctx.storage.audit, logger: ctx.logger, now: ctx.now, actor }),
    actor,
    reply: (status, value, headers) => sendJson(response, status, value, headers),
  };
  try {
    await route.handle(call);
  } catch (error) {
    // The handler found that the path names nothing: 404 in the API's words, not a second read first.
    if (error instanceof RequestError && error.notFound) {
      request.resume();
      throw new HttpError(404, route.missing?.(params) ?? error.message);
    }
    throw error;
  }
  return true;
}
