// Whether `mpota serve` serves HTTP, and the HTTP limits its options give, checked.
import { UsageError } from "../errors.ts";
import { DEFAULT_HTTP_LIMITS, type HttpLimits } from "../server/http/http-limits.ts";
import type { ServeOptions } from "./serve-options.ts";

/** The HTTP limits given on the command line, checked (docs/limits.md). */
export function httpLimitOptions(options: ServeOptions): Partial<HttpLimits> {
  const limits: Partial<HttpLimits> = {};
  const range = (value: number | undefined, flag: string, min: number, max: number) => {
    if (value !== undefined && (value < min || value > max))
      throw new UsageError(`${flag} must be between ${min} and ${max}.`);
    return value;
  };
  const clients = range(options.httpMaxEventClients, "--http-max-event-clients", 1, 10_000);
  if (clients !== undefined) limits.eventClients = clients;
  const body = range(options.httpMaxBody, "--http-max-body", 1024, 16 * 1024 * 1024);
  if (body !== undefined) limits.jsonBodyBytes = body;
  const pageMax = range(options.httpPageMax, "--http-page-max", 1, 100_000);
  if (pageMax !== undefined) limits.pageMax = pageMax;
  const idle = range(options.httpBodyTimeout, "--http-body-timeout", 1, 3600);
  if (idle !== undefined) limits.bodyIdleMs = idle * 1000;
  const failures = range(options.httpTokenFailures, "--http-token-failures", 1, 100_000);
  if (failures !== undefined)
    limits.credentials = { ...DEFAULT_HTTP_LIMITS.credentials, maxFailures: failures };
  return limits;
}

export function httpWanted(options: ServeOptions): boolean {
  return options.http === true || (options.http === undefined && options.httpPort !== undefined);
}
