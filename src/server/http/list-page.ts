import type { ApiCall } from "./api-context.ts";
import { HttpError } from "./http-error.ts";

/** Newest jobs and rollouts a list can page back over (the bridge handlers' bound). */
export const MAX_NEWEST = 10_000;

/** What a list request asks for: at most `limit` items after `cursor` (an opaque value from a `next` link). */
export interface PageRequest {
  limit: number;
  cursor: string | undefined;
}

/**
 * `limit` and `cursor` of a list request, checked against the server's
 * page bounds: without `limit` a page has `pageDefault` items; more than
 * `pageMax` is refused with the bound in the message.
 */
export function pageRequest(call: ApiCall): PageRequest {
  const { pageDefault, pageMax } = call.ctx.limits;
  const text = call.query.get("limit");
  let limit = pageDefault;
  if (text !== null && text !== "") {
    const n = /^\d+$/.test(text) ? Number(text) : Number.NaN;
    if (!Number.isSafeInteger(n) || n < 1 || n > pageMax)
      throw new HttpError(
        400,
        `"limit" must be a whole number from 1 to ${pageMax} (the server's page size bound, --http-page-max); follow the "next" link (Link header) for more.`,
        { pageMax },
      );
    limit = n;
  }
  const cursor = call.query.get("cursor") ?? undefined;
  if (cursor !== undefined && (cursor === "" || cursor.length > 512))
    throw new HttpError(400, '"cursor" must be the value of a "next" link of the list.');
  return { limit, cursor };
}

/** An offset cursor (lists paged over the handler's answer): a whole number. */
export function offsetOf(page: PageRequest): number {
  if (page.cursor === undefined) return 0;
  if (!/^\d{1,9}$/.test(page.cursor))
    throw new HttpError(400, '"cursor" must be the value of a "next" link of this list.');
  return Number(page.cursor);
}

/**
 * Answers one page as a JSON array (as the unpaged API did, so a fleet that
 * fits one page sees the same body), with the total in `X-Total-Count` when
 * known and the next page's address in `Link: <...>; rel="next"`.
 */
export function replyPage(
  call: ApiCall,
  items: unknown[],
  page: PageRequest,
  next: string | undefined,
  total: number | undefined,
): void {
  const headers: Record<string, string> = {};
  if (total !== undefined) headers["x-total-count"] = String(total);
  if (next !== undefined) {
    const url = new URL(call.request.url ?? "/", "http://mpota.invalid");
    url.searchParams.set("limit", String(page.limit));
    url.searchParams.set("cursor", next);
    headers.link = `<${url.pathname}${url.search}>; rel="next"`;
  }
  call.reply(200, items, headers);
}

/**
 * Pages a list the handler answers in full or newest-first up to a count:
 * `fetch(n)` returns at least the first `n` items when there are as many.
 * `total` is sent when the whole list was read.
 */
export async function replyOffsetPage(
  call: ApiCall,
  fetch: (upTo: number) => Promise<unknown[]>,
  whole: boolean,
): Promise<void> {
  const page = pageRequest(call);
  const offset = offsetOf(page);
  const items = await fetch(offset + page.limit + 1);
  const slice = items.slice(offset, offset + page.limit);
  const more = items.length > offset + page.limit;
  replyPage(
    call,
    slice,
    page,
    more ? String(offset + page.limit) : undefined,
    whole ? items.length : undefined,
  );
}
