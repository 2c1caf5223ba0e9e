import { recordAudit } from "../trust/audit.ts";
import type { ApiRoute } from "./api-context.ts";
import { uploadAppZip } from "./app-upload.ts";
import { uploadFirmware } from "./firmware-upload.ts";
import { HttpError } from "./http-error.ts";
import { queryBoolean, queryFields, queryInteger, queryText } from "./http-json.ts";
import { DEFAULT_LINE_CONCURRENCY } from "./line-update.ts";
import { MAX_NEWEST, pageRequest, replyOffsetPage, replyPage } from "./list-page.ts";
import { readJsonBody } from "./request-body.ts";

const cut = (id: string | undefined) => (id ?? "").slice(0, 64);

/** Without credentials: the session check, login and logout. */
export const SESSION_ROUTES: ApiRoute[] = [
  {
    method: "GET",
    path: "/session",
    open: true,
    handle: async ({ ctx, request, reply }) => {
      let authenticated = false;
      try {
        ctx.auth.authenticate(request);
        authenticated = true;
      } catch {
        authenticated = false;
      }
      reply(200, { auth: ctx.auth.open ? "none" : "token", authenticated });
    },
  },
  {
    method: "POST",
    path: "/login",
    open: true,
    handle: async ({ ctx, request, response, reply }) => {
      ctx.auth.checkOrigin(request);
      const body = await readJsonBody(request, ctx.limits);
      ctx.auth.login(request, response, body.token, ctx.secure(request));
      reply(200, { authenticated: true });
    },
  },
  {
    method: "POST",
    path: "/logout",
    open: true,
    handle: async ({ ctx, request, response, reply }) => {
      ctx.auth.checkOrigin(request);
      ctx.auth.logout(response, ctx.secure(request));
      reply(200, { authenticated: false });
    },
  },
];

/** POST /update/line: every device on the firmware's line, as one rollout (audited here: it is no bridge request). */
const updateLine: ApiRoute["handle"] = async ({ ctx, request, actor, reply }) => {
  const body = await readJsonBody(request, ctx.limits);
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
  reply(201, started);
};

/** GET /devices: a page by id (keyset: the cursor is the last id shown), with the fleet's size. */
const listDevices: ApiRoute["handle"] = async (call) => {
  const page = pageRequest(call);
  // One more than the page: a next link only when there is a next page.
  const [devices, total] = await Promise.all([
    call.h.devices({ limit: page.limit + 1, ...(page.cursor !== undefined ? { after: page.cursor } : {}) }),
    call.ctx.storage.devices.count(),
  ]);
  const shown = devices.slice(0, page.limit);
  const next = devices.length > page.limit ? shown[shown.length - 1]?.id : undefined;
  replyPage(call, shown, page, next, total);
};

/**
 * The fleet: devices, firmware, jobs, the audit list and the event stream,
 * each the bridge handler of the same name over HTTP.
 */
export const FLEET_ROUTES: ApiRoute[] = [
  { method: "GET", path: "/info", handle: async ({ h, reply }) => reply(200, await h.info({})) },
  { method: "GET", path: "/devices", handle: listDevices },
  {
    method: "GET",
    path: "/devices/:id",
    missing: (p) => `No device "${cut(p.id)}" is known. GET /api/v1/devices lists the known ones.`,
    handle: async ({ h, params, query, reply }) =>
      reply(200, await h.device({ id: params.id, history: queryInteger(query, "history") })),
  },
  {
    method: "POST",
    path: "/devices",
    handle: async ({ ctx, h, request, reply }) =>
      reply(201, await h["devices/add"](await readJsonBody(request, ctx.limits))),
  },
  {
    method: "POST",
    path: "/devices/:id/allow-unsigned",
    handle: async ({ ctx, h, request, params, reply }) => {
      const body = await readJsonBody(request, ctx.limits);
      reply(200, await h["devices/allow-unsigned"]({ id: params.id, allow: body.allow }));
    },
  },
  {
    method: "GET",
    path: "/credentials",
    handle: async (call) => replyOffsetPage(call, () => call.h["devices/credentials"]({}), true),
  },
  {
    method: "GET",
    path: "/firmware",
    handle: async (call) => replyOffsetPage(call, () => call.h["firmware/list"]({}), true),
  },
  { method: "POST", path: "/firmware", handle: uploadFirmware },
  {
    method: "DELETE",
    path: "/firmware/:id",
    handle: async ({ ctx, h, params, reply }) => {
      const removed = await h["firmware/remove"]({ id: params.id });
      ctx.stream.publish("firmware", { action: "remove", firmware: removed });
      reply(200, removed);
    },
  },
  {
    method: "GET",
    path: "/apps",
    handle: async (call) => replyOffsetPage(call, () => call.h["app/list"]({}), true),
  },
  {
    method: "POST",
    path: "/apps",
    // A release `mpota app add` stored beside the server fits the JSON bound; an upload of files goes by the bridge.
    handle: async ({ ctx, h, request, reply }) =>
      reply(201, await h["app/add"](await readJsonBody(request, ctx.limits))),
  },
  { method: "POST", path: "/apps/zip", handle: uploadAppZip },
  {
    method: "POST",
    path: "/update",
    handle: async ({ ctx, h, request, reply }) =>
      reply(201, await h.update(await readJsonBody(request, ctx.limits))),
  },
  { method: "POST", path: "/update/line", handle: updateLine },
  {
    method: "GET",
    path: "/jobs",
    // Newest first; pages reach back over the newest MAX_NEWEST jobs (the bridge's bound).
    handle: async (call) =>
      replyOffsetPage(
        call,
        (upTo) =>
          call.h.jobs({
            ...queryFields(call.query, { device: queryText, active: queryBoolean }),
            limit: Math.min(upTo, MAX_NEWEST),
          }),
        false,
      ),
  },
  {
    method: "GET",
    path: "/jobs/:id",
    missing: (p) => `There is no job "${cut(p.id)}". GET /api/v1/jobs lists them.`,
    handle: async ({ h, params, reply }) => reply(200, await h.job({ id: params.id })),
  },
  {
    method: "POST",
    path: "/jobs/:id/cancel",
    missing: (p) => `There is no job "${cut(p.id)}". GET /api/v1/jobs lists them.`,
    handle: async ({ h, params, reply }) => reply(200, await h["job/cancel"]({ id: params.id })),
  },
  {
    method: "GET",
    path: "/audit",
    handle: async (call) => {
      const page = pageRequest(call);
      const before = queryInteger(call.query, "before");
      const entries = await call.h.audit({ limit: page.limit, ...(before !== undefined ? { before } : {}) });
      const last = entries.length === page.limit ? entries[entries.length - 1] : undefined;
      if (last === undefined) return replyPage(call, entries, page, undefined, undefined);
      // The audit list's own cursor is `before` (an entry id); the next link carries it.
      const url = new URL(call.request.url ?? "/", "http://mpota.invalid");
      url.searchParams.set("limit", String(page.limit));
      url.searchParams.set("before", String(last.id));
      call.reply(200, entries, { link: `<${url.pathname}${url.search}>; rel="next"` });
    },
  },
  {
    method: "GET",
    path: "/events",
    handle: async ({ ctx, request, response }) => ctx.stream.open(request, response),
  },
];
