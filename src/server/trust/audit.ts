import type { Logger } from "pino";
import type { AuditStore } from "../storage/storage.ts";

/** The requests that change something: each is recorded with who asked, whether it was done or refused. */
export const AUDITED_ACTIONS: ReadonlySet<string> = new Set([
  "firmware/add",
  "firmware/remove",
  "update",
  "job/cancel",
  "rollout/create",
  "rollout/pause",
  "rollout/resume",
  "rollout/abort",
  "device/tags",
  "devices/add",
  "devices/rotate",
  "devices/revoke",
  "devices/allow-unsigned",
  "line/update",
  "token/rotate",
  "app/upload",
]);

/** Audit entries kept; older ones are pruned as new ones come. */
export const AUDIT_KEEP = 10_000;
const MAX_DETAIL_KEYS = 16;
const MAX_TEXT = 200;
/** Request fields never copied into the audit list (bulk data, secrets, plumbing). */
const LEFT_OUT = new Set(["image", "transaction", "secret", "password", "token"]);

function detailOf(request: Record<string, unknown>): Record<string, unknown> | null {
  const detail: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(request)) {
    if (LEFT_OUT.has(key) || Object.keys(detail).length >= MAX_DETAIL_KEYS) continue;
    if (typeof value === "string") detail[key] = value.slice(0, MAX_TEXT);
    else if (typeof value === "number" || typeof value === "boolean" || value === null) detail[key] = value;
    else if (Array.isArray(value) && value.length <= 50 && value.every((v) => typeof v === "string"))
      detail[key] = (value as string[]).map((v) => v.slice(0, MAX_TEXT));
  }
  return Object.keys(detail).length > 0 ? detail : null;
}

function targetOf(request: Record<string, unknown>): string | null {
  for (const key of ["device", "id", "firmware", "name", "line"]) {
    const value = request[key];
    if (typeof value === "string" && value !== "") return value.slice(0, MAX_TEXT);
  }
  return null;
}

export interface AuditInput {
  at: number;
  actor: string;
  action: string;
  request: Record<string, unknown>;
  outcome: "ok" | "refused";
  /** Why it was refused (the first line is kept). */
  reason?: string | undefined;
}

let recorded = 0;

/**
 * Records a request that changes something (others are ignored). A store
 * that cannot be written is logged, not thrown: the action itself stands.
 */
export async function recordAudit(store: AuditStore, logger: Logger, input: AuditInput): Promise<void> {
  if (!AUDITED_ACTIONS.has(input.action)) return;
  const detail = detailOf(input.request);
  const reason = input.reason?.split("\n")[0]?.slice(0, MAX_TEXT);
  try {
    await store.record({
      at: input.at,
      actor: input.actor.slice(0, MAX_TEXT),
      action: input.action,
      target: targetOf(input.request),
      detail: reason ? { ...detail, reason } : detail,
      outcome: input.outcome,
    });
    // Prune now and then, not on every write.
    if (++recorded % 500 === 0) await store.prune(AUDIT_KEEP);
  } catch (error) {
    logger.warn({ action: input.action, err: (error as Error).message }, "audit entry not recorded");
  }
}

/**
 * The same handlers, each recording its call (for the audited actions) with
 * `actor()` as who asked: for the HTTP API, whose routes call the bridge's
 * handlers directly.
 */
export function auditedHandlers<
  H extends Record<string, (request: Record<string, unknown>) => Promise<unknown>>,
>(handlers: H, o: { audit: AuditStore; logger: Logger; now: () => number; actor: () => string }): H {
  const wrapped: Record<string, (request: Record<string, unknown>) => Promise<unknown>> = {};
  for (const [action, handler] of Object.entries(handlers)) {
    if (!AUDITED_ACTIONS.has(action)) {
      wrapped[action] = handler;
      continue;
    }
    wrapped[action] = async (request) => {
      const entry = { at: o.now(), actor: o.actor(), action, request };
      try {
        const result = await handler(request);
        await recordAudit(o.audit, o.logger, { ...entry, outcome: "ok" });
        return result;
      } catch (error) {
        await recordAudit(o.audit, o.logger, {
          ...entry,
          outcome: "refused",
          reason: (error as Error)?.message,
        });
        throw error;
      }
    };
  }
  return wrapped as H;
}
