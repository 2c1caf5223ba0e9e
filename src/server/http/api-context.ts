import type { IncomingMessage, ServerResponse } from "node:http";
import type { Logger } from "pino";
import type { BridgeHandlers } from "../bridge/bridge.ts";
import type { RolloutEngine } from "../rollouts/rollout-engine.ts";
import type { Storage } from "../storage/storage.ts";
import type { Authenticator } from "./auth.ts";
import type { EventStream } from "./event-stream.ts";
import type { HttpLimits } from "./http-limits.ts";
import type { LineUpdates } from "./line-update.ts";
import type { Route } from "./route-table.ts";

/** What the API's routes work with: the bridge's handlers and the HTTP feature's parts. */
export interface ApiContext {
  handlers: BridgeHandlers;
  storage: Storage;
  auth: Authenticator;
  stream: EventStream;
  lines: LineUpdates;
  /** The rollout engine; without it the rollout requests are refused (as over the bridge). */
  rollouts?: RolloutEngine;
  /** Told after each rollout change made over HTTP, so the event stream carries it at once. */
  rolloutChanged?: (id: string) => void;
  /** Cookies get `Secure` when the server is reached over TLS (behind a proxy that says so). */
  secure: (request: IncomingMessage) => boolean;
  logger: Logger;
  now: () => number;
  /** Body sizes, timeouts and page sizes (named settings). */
  limits: HttpLimits;
  /** The data directory: its app key signs app releases uploaded as a zip. */
  dataDir: string;
}

/** One request as a route's handler sees it. */
export interface ApiCall {
  ctx: ApiContext;
  request: IncomingMessage;
  response: ServerResponse;
  /** The path's `:name` parts, decoded. */
  params: Record<string, string>;
  query: URLSearchParams;
  /** The bridge's handlers, each audited with this request's actor. */
  h: BridgeHandlers;
  /** Who made the request, in words for the audit list. */
  actor: () => string;
  /** Answers with JSON. */
  reply: (status: number, value: unknown, headers?: Record<string, string>) => void;
}

export type ApiRoute = Route<ApiCall>;
