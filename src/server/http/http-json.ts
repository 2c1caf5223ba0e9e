import type { ServerResponse } from "node:http";

/** Every JSON answer of the API: not cached, not sniffed. */
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

/** A whole number from the query string; other text is passed on for the handler to refuse with its own words. */
export function queryInteger(query: URLSearchParams, key: string): number | string | undefined {
  const text = query.get(key);
  if (text === null || text === "") return undefined;
  return /^-?\d+$/.test(text) ? Number(text) : text;
}

/** true/false (also 1/0, yes/no) from the query string; other text is passed on as text. */
export function queryBoolean(query: URLSearchParams, key: string): boolean | string | undefined {
  const text = query.get(key);
  if (text === null || text === "") return undefined;
  if (["true", "1", "yes"].includes(text)) return true;
  if (["false", "0", "no"].includes(text)) return false;
  return text;
}

/** `{key: value}` for each key the query string has, as the handlers take optional fields. */
export function queryFields(
  query: URLSearchParams,
  fields: Record<string, (query: URLSearchParams, key: string) => unknown>,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, read] of Object.entries(fields)) if (query.get(key)) out[key] = read(query, key);
  return out;
}

/** The query string's text as is. */
export const queryText = (query: URLSearchParams, key: string): string | null => query.get(key);
