/**
 * A table of routes (method, path pattern with `:name` parameters, handler)
 * and the one matcher over it. A path that exists with another method is a
 * 405 with the allowed methods; a path no route has is no match (404 by the
 * caller).
 */
export interface Route<Call> {
  method: "GET" | "POST" | "DELETE";
  /** Below the API's root, e.g. `/devices/:id/allow-unsigned`. */
  path: string;
  /** Answered without credentials (the session check, login, logout). */
  open?: boolean;
  /** The 404 text when the handler finds that the path names nothing (a RequestError marked notFound). */
  missing?: (params: Record<string, string>) => string;
  handle: (call: Call) => Promise<void>;
}

export type RouteMatch<Call> =
  | { route: Route<Call>; params: Record<string, string> }
  | { allowed: string[] }
  | undefined;

interface Compiled<Call> {
  route: Route<Call>;
  /** A literal segment, or `{ param }` for `:param`. */
  segments: Array<string | { param: string }>;
}

export class RouteTable<Call> {
  private readonly routes: Compiled<Call>[];

  constructor(routes: ReadonlyArray<Route<Call>>) {
    this.routes = routes.map((route) => ({
      route,
      segments: route.path
        .split("/")
        .slice(1)
        .map((s) => (s.startsWith(":") ? { param: s.slice(1) } : s)),
    }));
    const seen = new Set<string>();
    for (const { route } of this.routes) {
      const key = `${route.method} ${route.path}`;
      if (seen.has(key)) throw new Error(`route ${key} is in the table twice`);
      seen.add(key);
    }
  }

  /** `segments`: the path below the API's root, split at "/" and decoded. */
  match(method: string, segments: readonly string[]): RouteMatch<Call> {
    const allowed: string[] = [];
    for (const { route, segments: pattern } of this.routes) {
      const params = matchSegments(pattern, segments);
      if (!params) continue;
      if (route.method === method) return { route, params };
      allowed.push(route.method);
    }
    return allowed.length > 0 ? { allowed } : undefined;
  }
}

function matchSegments(
  pattern: ReadonlyArray<string | { param: string }>,
  segments: readonly string[],
): Record<string, string> | undefined {
  if (pattern.length !== segments.length) return undefined;
  const params: Record<string, string> = {};
  for (const [i, part] of pattern.entries()) {
    const segment = segments[i] as string;
    if (typeof part === "string") {
      if (part !== segment) return undefined;
    } else {
      if (segment === "") return undefined;
      params[part.param] = segment;
    }
  }
  return params;
}
