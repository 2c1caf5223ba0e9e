import type { IncomingMessage, ServerResponse } from "node:http";
import { RequestError } from "../request-error.ts";
import type { RolloutEngine } from "../rollouts/rollout-engine.ts";
import type { ApiContext } from "./api-routes.ts";
import { queryBoolean, queryInteger, sendJson } from "./api-routes.ts";
import { HttpError } from "./http-error.ts";
import { readJsonBody } from "./request-body.ts";

/** The rollout part of the API context. */
export interface RolloutRouteContext {
  /** The rollout engine; without it the rollout requests are refused (as over the bridge). */
  rollouts?: RolloutEngine;
  /** Told after each change made here, so the event stream carries it at once. */
  rolloutChanged?: (id: string) => void;
}

const ROUTES = [
  "GET /rollouts",
  "POST /rollouts",
  "GET /rollouts/:id",
  "POST /rollouts/:id/pause",
  "POST /rollouts/:id/resume",
  "POST /rollouts/:id/abort",
];

function optionalReason(body: Record<string, unknown>): { reason?: unknown } {
  return body.reason === undefined || body.reason === null ? {} : { reason: body.reason };
}

/**
 * `/api/v1/rollouts...`: the bridge's `rollout/*` handlers over HTTP, so
 * the answers are the views `mpota rollout ... --json` prints (one source:
 * src/server/rollouts/rollout-views.ts). A create request has the bridge's
 * shape and is checked by the same code (rollout-request.ts). `parts` is the
 * path after /api/v1/, starting with "rollouts". Returns false when no
 * route matches.
 */
export async function routeRollouts(
  ctx: ApiContext,
  request: IncomingMessage,
  response: ServerResponse,
  parts: string[],
  query: URLSearchParams,
): Promise<boolean> {
  const method = request.method ?? "GET";
  if (parts.length > 3) return false;
  const shape = `/${parts.map((p, i) => (i === 1 ? ":id" : p)).join("/")}`;
  const route = `${method} ${shape}`;
  if (!ROUTES.includes(route)) {
    const allowed = ROUTES.filter((r) => r.endsWith(` ${shape}`)).map((r) => r.split(" ")[0]);
    if (allowed.length === 0) return false;
    request.resume();
    throw new HttpError(405, `${method} is not allowed on /api/v1/${parts.join("/")}.`, { allowed });
  }
  ctx.auth.checkOrigin(request);
  ctx.auth.authenticate(request);
  const h = ctx.handlers;
  const id = parts[1] as string;
  const changed = (view: { id: string }) => ctx.rolloutChanged?.(view.id);

  if (route === "GET /rollouts") {
    sendJson(
      response,
      200,
      await h["rollout/list"]({
        ...(query.get("active") ? { active: queryBoolean(query, "active") } : {}),
        ...(query.get("limit") ? { limit: queryInteger(query, "limit") } : {}),
      }),
    );
    return true;
  }
  if (route === "POST /rollouts") {
    const body = await readJsonBody(request);
    const created = await h["rollout/create"](body);
    changed(created);
    sendJson(response, 201, created);
    return true;
  }
  // Unknown rollouts are 404, as unknown jobs are; the engine finds one by id or name.
  if (ctx.rollouts) {
    try {
      await ctx.rollouts.resolve(id);
    } catch (error) {
      if (error instanceof RequestError) {
        request.resume();
        throw new HttpError(
          404,
          `There is no rollout "${id.slice(0, 64)}". GET /api/v1/rollouts lists them.`,
        );
      }
      throw error;
    }
  }
  switch (route) {
    case "GET /rollouts/:id":
      sendJson(
        response,
        200,
        await h["rollout/show"]({
          id,
          ...(query.get("events") ? { events: queryInteger(query, "events") } : {}),
        }),
      );
      return true;
    case "POST /rollouts/:id/pause": {
      const body = await readJsonBody(request);
      const view = await h["rollout/pause"]({ id, ...optionalReason(body) });
      changed(view);
      sendJson(response, 200, view);
      return true;
    }
    case "POST /rollouts/:id/resume": {
      await readJsonBody(request);
      const view = await h["rollout/resume"]({ id });
      changed(view);
      sendJson(response, 200, view);
      return true;
    }
    case "POST /rollouts/:id/abort": {
      const body = await readJsonBody(request);
      const view = await h["rollout/abort"]({ id, ...optionalReason(body) });
      changed(view);
      sendJson(response, 200, view);
      return true;
    }
    default:
      return false;
  }
}
