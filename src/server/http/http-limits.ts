import type { LoginLimits } from "./login-limiter.ts";

/**
 * Every bound of the HTTP side, by name (docs/limits.md lists them with
 * what a client sees over each). `mpota serve` sets the ones a user would
 * want to change; the rest keep these defaults.
 */
export interface HttpLimits {
  /** Largest JSON request body in bytes (a firmware upload has its own bound, the bridge's). */
  jsonBodyBytes: number;
  /** Event streams (GET /api/v1/events) open at once; one more is refused with 503. */
  eventClients: number;
  /** A request's headers must arrive within this (slowloris). */
  headersTimeoutMs: number;
  /** A request body that stops arriving for this long is answered 408 and the connection closed. */
  bodyIdleMs: number;
  /** A whole request (headers and body) must arrive within this. */
  requestTimeoutMs: number;
  /** Items per page of a list when the request gives no `limit`. */
  pageDefault: number;
  /** The largest `limit` a list request may ask for. */
  pageMax: number;
  /** Failed logins and wrong Bearer tokens per client address. */
  credentials: LoginLimits;
}

export const DEFAULT_HTTP_LIMITS: HttpLimits = {
  jsonBodyBytes: 64 * 1024,
  eventClients: 64,
  headersTimeoutMs: 10_000,
  bodyIdleMs: 10_000,
  requestTimeoutMs: 120_000,
  pageDefault: 500,
  pageMax: 1000,
  credentials: { maxFailures: 10, windowMs: 60_000, maxAddresses: 1024 },
};

/** The defaults with `given` over them (a partial `credentials` too). */
export function httpLimits(given: Partial<HttpLimits> = {}): HttpLimits {
  const limits = {
    ...DEFAULT_HTTP_LIMITS,
    ...given,
    credentials: { ...DEFAULT_HTTP_LIMITS.credentials, ...given.credentials },
  };
  // A default page larger than the largest one would be refused by the server's own check.
  limits.pageDefault = Math.min(limits.pageDefault, limits.pageMax);
  return limits;
}
