import { readFileSync } from "node:fs";
import { adminTokenPath } from "../../src/server/http/admin-token.ts";
import type { HttpOptions } from "../../src/server/http/http-feature.ts";
import type { ServerOptions } from "../../src/server/server-options.ts";
import { startTestServer, type TestServer } from "../server/support/test-server.ts";

export interface HttpTestServer extends TestServer {
  /** http://127.0.0.1:<port> */
  base: string;
  token: string;
}

/** A test server (embedded broker, SQLite in `dataDir`) with the dashboard and API on a free loopback port. */
export async function startHttpServer(
  dataDir: string,
  http: HttpOptions = {},
  options: Partial<ServerOptions> = {},
): Promise<HttpTestServer> {
  const s = await startTestServer(dataDir, { ...options, http: { host: "127.0.0.1", port: 0, ...http } });
  const base = (s.server.http?.url ?? "").replace(/\/$/, "");
  const token = http.noAuth ? "" : readFileSync(adminTokenPath(dataDir), "utf8").trim();
  return { ...s, base, token };
}

export interface Reply {
  status: number;
  headers: Headers;
  // biome-ignore lint/suspicious/noExplicitAny: JSON bodies are checked field by field in the tests.
  body: any;
}

/** One API request; `token` false sends no credentials. */
export async function call(
  s: HttpTestServer,
  method: string,
  path: string,
  options: {
    json?: unknown;
    body?: Uint8Array | string;
    token?: string | false;
    headers?: Record<string, string>;
  } = {},
): Promise<Reply> {
  const headers: Record<string, string> = { ...options.headers };
  const token = options.token === undefined ? s.token : options.token;
  if (token) headers.authorization = `Bearer ${token}`;
  let body = options.body;
  if (options.json !== undefined) {
    headers["content-type"] = "application/json";
    body = JSON.stringify(options.json);
  }
  const response = await fetch(`${s.base}${path}`, {
    method,
    headers,
    ...(body !== undefined ? { body } : {}),
  });
  const text = await response.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: response.status, headers: response.headers, body: parsed };
}
