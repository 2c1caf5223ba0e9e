import type { IncomingMessage, ServerResponse } from "node:http";
import type { AdminToken } from "./admin-token.ts";
import { HttpError } from "./http-error.ts";
import type { LoginLimiter } from "./login-limiter.ts";

export const SESSION_COOKIE = "mpota_session";
/** The header the dashboard sends with every state-changing request; a cross-site form cannot set it. */
export const CSRF_HEADER = "x-mpota-request";
export const SESSION_MS = 7 * 24 * 3600 * 1000;

const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

export function cookieValue(request: IncomingMessage, name: string): string | undefined {
  const header = request.headers.cookie;
  if (!header) return undefined;
  for (const part of header.split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

function bearer(request: IncomingMessage): string | undefined {
  const header = request.headers.authorization;
  const match = header ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
  return match?.[1];
}

export interface Caller {
  /** How the caller proved who it is: the admin token, a session cookie, or nothing needed (--no-auth). */
  via: "token" | "session" | "open";
}

/**
 * Who may use the API: the admin token as `Authorization: Bearer`, or a
 * session cookie from the login form. State-changing requests are checked
 * against cross-site request forgery first: an `Origin` that is not this
 * server's own is refused, and a cookie-authenticated request must carry
 * the `X-Mpota-Request` header, which a cross-site form cannot send.
 */
export class Authenticator {
  constructor(
    private readonly token: AdminToken | undefined,
    private readonly limiter: LoginLimiter,
    private readonly now: () => number = Date.now,
  ) {}

  get open(): boolean {
    return this.token === undefined;
  }

  /** Throws 403 when a state-changing request comes from another site. */
  checkOrigin(request: IncomingMessage): void {
    if (SAFE_METHODS.has(request.method ?? "GET")) return;
    const origin = request.headers.origin;
    if (origin === undefined) return;
    let host: string;
    try {
      host = new URL(origin).host;
    } catch {
      host = "";
    }
    if (origin === "null" || host !== request.headers.host) {
      throw new HttpError(
        403,
        `Refused: this request comes from another site (${origin.slice(0, 100)}). The mpota dashboard and API accept changes only from their own pages or from clients with the admin token.`,
      );
    }
  }

  /** Who the caller is; throws 401 without valid credentials, 403 for a cookie request without the CSRF header. */
  authenticate(request: IncomingMessage): Caller {
    if (!this.token) return { via: "open" };
    const given = bearer(request);
    if (given !== undefined) {
      if (this.token.matches(given)) return { via: "token" };
      this.refuseWrong(request, "wrong admin tokens");
      throw new HttpError(
        401,
        "The admin token is wrong. Give the one in the server's data directory (`mpota token show-path` prints where it is).",
        {},
        { "www-authenticate": 'Bearer realm="mpota"' },
      );
    }
    const session = cookieValue(request, SESSION_COOKIE);
    if (session && this.token.sessionValid(session, this.now())) {
      if (!SAFE_METHODS.has(request.method ?? "GET") && request.headers[CSRF_HEADER] === undefined) {
        throw new HttpError(
          403,
          `Refused: a change made with a session cookie must carry the ${CSRF_HEADER} header (the dashboard sends it; a form on another site cannot).`,
        );
      }
      return { via: "session" };
    }
    throw new HttpError(
      401,
      "Log in first: send the admin token as `Authorization: Bearer <token>`, or log in on the dashboard. The token is in the server's data directory (`mpota token show-path`).",
      {},
      { "www-authenticate": 'Bearer realm="mpota"' },
    );
  }

  /**
   * Checks a token from the login form; sets the session cookie. The token
   * is checked first: the right one always logs in, a wrong one counts
   * against the address (429 once it has too many).
   */
  login(request: IncomingMessage, response: ServerResponse, candidate: unknown, secure: boolean): void {
    if (!this.token) {
      response.setHeader("set-cookie", cookie("open", 0, secure));
      return;
    }
    if (typeof candidate !== "string" || !this.token.matches(candidate.trim())) {
      this.refuseWrong(request, "failed logins");
      throw new HttpError(
        401,
        "That is not the admin token. It is in the file `admin-token` in the server's data directory; `mpota token show-path` prints its path.",
      );
    }
    const expires = this.now() + SESSION_MS;
    response.setHeader("set-cookie", cookie(this.token.issueSession(expires), SESSION_MS, secure));
  }

  /**
   * A wrong credential: counted against the client's address, and answered
   * 429 when the address has too many. Returns when the caller should answer
   * 401. (The HTTP feature logs refusals once per source per minute.)
   */
  private refuseWrong(request: IncomingMessage, what: string): void {
    const address = request.socket.remoteAddress ?? "unknown";
    const wait = this.limiter.waitMs(address);
    if (wait === 0) {
      this.limiter.failed(address);
      return;
    }
    const seconds = Math.ceil(wait / 1000);
    throw new HttpError(
      429,
      `Too many ${what} from this address (${this.limiter.count(address)} in ${Math.round(this.limiter.windowMs / 1000)} s); wrong ones are refused for ${seconds} s more. The right admin token is still accepted (\`mpota token show-path\` prints where it is).`,
      { retryAfter: seconds },
      { "retry-after": String(seconds) },
    );
  }

  logout(response: ServerResponse, secure: boolean): void {
    response.setHeader("set-cookie", cookie("", 0, secure));
  }
}

function cookie(value: string, maxAgeMs: number, secure: boolean): string {
  return `${SESSION_COOKIE}=${value}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${Math.floor(maxAgeMs / 1000)}${secure ? "; Secure" : ""}`;
}
