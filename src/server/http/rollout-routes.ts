import type { ApiCall, ApiRoute } from "./api-context.ts";
import { queryBoolean, queryFields, queryInteger } from "./http-json.ts";
import { MAX_NEWEST, replyOffsetPage } from "./list-page.ts";
import { readJsonBody } from "./request-body.ts";

function optionalReason(body: Record<string, unknown>): { reason?: unknown } {
  return body.reason === undefined || body.reason === null ? {} : { reason: body.reason };
}

/** Tells the event stream at once, then answers with the rollout's view. */
function changed(call: ApiCall, status: number, view: { id: string }): void {
  call.ctx.rolloutChanged?.(view.id);
  call.reply(status, view);
}

// Unknown rollouts are 404, as unknown jobs are; the engine finds one by id or name.
const missing = (p: Record<string, string>) =>
  `There is no rollout "${(p.id ?? "").slice(0, 64)}". GET /api/v1/rollouts lists them.`;

/**
 * `/rollouts...`: the bridge's `rollout/*` handlers over HTTP, so the
 * answers are the views `mpota rollout ... --json` prints (one source:
 * src/server/rollouts/rollout-views.ts). A create request has the bridge's
 * shape and is checked by the same code (rollout-request.ts).
 */
export const ROLLOUT_ROUTES: ApiRoute[] = [
  {
    method: "GET",
    path: "/rollouts",
    handle: async (call) =>
      replyOffsetPage(
        call,
        (upTo) =>
          call.h["rollout/list"]({
            ...queryFields(call.query, { active: queryBoolean }),
            limit: Math.min(upTo, MAX_NEWEST),
          }),
        false,
      ),
  },
  {
    method: "POST",
    path: "/rollouts",
    handle: async (call) =>
      changed(call, 201, await call.h["rollout/create"](await readJsonBody(call.request, call.ctx.limits))),
  },
  {
    method: "GET",
    path: "/rollouts/:id",
    missing,
    handle: async ({ h, params, query, reply }) =>
      reply(200, await h["rollout/show"]({ id: params.id, ...queryFields(query, { events: queryInteger }) })),
  },
  {
    method: "POST",
    path: "/rollouts/:id/pause",
    missing,
    handle: async (call) => {
      const body = await readJsonBody(call.request, call.ctx.limits);
      changed(call, 200, await call.h["rollout/pause"]({ id: call.params.id, ...optionalReason(body) }));
    },
  },
  {
    method: "POST",
    path: "/rollouts/:id/resume",
    missing,
    handle: async (call) => {
      await readJsonBody(call.request, call.ctx.limits);
      changed(call, 200, await call.h["rollout/resume"]({ id: call.params.id }));
    },
  },
  {
    method: "POST",
    path: "/rollouts/:id/abort",
    missing,
    handle: async (call) => {
      const body = await readJsonBody(call.request, call.ctx.limits);
      changed(call, 200, await call.h["rollout/abort"]({ id: call.params.id, ...optionalReason(body) }));
    },
  },
];
