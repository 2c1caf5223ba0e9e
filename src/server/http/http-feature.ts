import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import type { Logger } from "pino";
import { MpotaError, UsageError } from "../../errors.ts";
import { EXIT_CODES } from "../../exit-codes.ts";
import { isLoopbackHost } from "../../net/listen-addresses.ts";
import type { ServerInfo } from "../api/api.ts";
import type { Topics } from "../api/topics.ts";
import { RequestError } from "../base/request-error.ts";
import { SourceLog } from "../base/source-log.ts";
import type { BridgeHandlers } from "../bridge/bridge.ts";
import type { DeviceInbox } from "../devices/device-inbox.ts";
import type { JobRunner } from "../jobs/job-runner.ts";
import type { MqttLink } from "../mqtt/mqtt-link.ts";
import { AppFiles } from "../releases/app-files.ts";
import { AppReplaceRefusedError } from "../releases/app-replace-policy.ts";
import type { FirmwareLibrary } from "../releases/firmware-library.ts";
import type { RolloutEngine } from "../rollouts/rollout-engine.ts";
import { DiskFullError } from "../storage/disk-full.ts";
import type { Storage } from "../storage/storage.ts";
import type { ProvisioningDeps } from "../trust/provisioning.ts";
import { AdminToken, ensureAdminToken } from "./admin-token.ts";
import type { ApiContext } from "./api-context.ts";
import { routeApi } from "./api-router.ts";
import { Authenticator } from "./auth.ts";
import { DEVICE_APP_PREFIX, DeviceAppRoute } from "./device-app-route.ts";
import { DeviceFirmwareRoute } from "./device-firmware-route.ts";
import { EventStream, type EventStreamOptions } from "./event-stream.ts";
import { FleetEvents } from "./fleet-events.ts";
import { HttpError } from "./http-error.ts";
import { sendJson } from "./http-json.ts";
import { type HttpLimits, httpLimits } from "./http-limits.ts";
import { LineUpdates } from "./line-update.ts";
import { LoginLimiter } from "./login-limiter.ts";
import { ClientGoneError } from "./request-body.ts";
import { RolloutEvents } from "./rollout-events.ts";
import { StaticFiles } from "./static-files.ts";

export const DEFAULT_HTTP_PORT = 8080;
/**
 * Loopback by default: the admin token (login) and the session cookie cross
 * the network in clear over plain HTTP, and they can push firmware to every
 * device. `--http-host 0.0.0.0` opens the dashboard to the network on purpose
 * (docs/security-tls.md says how to keep the token safe then).
 */
export const DEFAULT_HTTP_HOST = "127.0.0.1";

/** The HTTP server cannot listen on its address and port. */
export class HttpListenError extends MpotaError {
  override readonly exitCode: number = EXIT_CODES.httpListen.code;
}

export interface HttpOptions {
  host?: string;
  port?: number;
  /** Turn authentication off: allowed only when `host` is a loopback address. */
  noAuth?: boolean;
  stream?: EventStreamOptions;
  /** Over the defaults of DEFAULT_HTTP_LIMITS (docs/limits.md). */
  limits?: Partial<HttpLimits>;
}

export interface HttpFeatureDeps {
  storage: Storage;
  library: FirmwareLibrary;
  runner: JobRunner;
  /** Staged rollouts ("update all on a line" runs as one). */
  rollouts: RolloutEngine;
  link: MqttLink;
  topics: Topics;
  inbox: DeviceInbox;
  info: () => ServerInfo;
  /** The bridge's request handlers (built once by the composition root): the API answers with them. */
  handlers: BridgeHandlers;
  /** Device credentials and the audit list (GET /api/v1/audit, POST /api/v1/devices). */
  provisioning?: ProvisioningDeps;
  dataDir: string;
  logger: Logger;
}

/**
 * The dashboard and the JSON API (`/api/v1/`), with one event stream per
 * page. Every answer comes from the same handlers as the MQTT bridge, so
 * the dashboard, the CLI's `--json` and MQTT clients show the same numbers.
 */
export class HttpFeature {
  readonly stream: EventStream;
  /** Set when the admin token file was created by this start (print it once). */
  readonly newToken: string | undefined;
  readonly tokenPath: string | undefined;
  private readonly server: Server;
  private readonly events: FleetEvents;
  /** Sends `rollout` events on the stream. */
  readonly rolloutEvents: RolloutEvents;
  private readonly lines: LineUpdates;
  private readonly files: StaticFiles;
  private readonly auth: Authenticator;
  /** Devices fetching their image (contract v3's pull). */
  readonly devices: DeviceFirmwareRoute;
  /** Devices fetching an app release's manifest and files (contract v3's app). */
  readonly apps: DeviceAppRoute;
  private readonly host: string;
  private readonly port: number;
  readonly limits: HttpLimits;
  /** Refusals are logged once per source and status per minute (a flood is one line, not thousands). */
  private readonly refusals = new SourceLog();

  constructor(
    private readonly deps: HttpFeatureDeps,
    options: HttpOptions = {},
  ) {
    this.host = options.host ?? DEFAULT_HTTP_HOST;
    this.port = options.port ?? DEFAULT_HTTP_PORT;
    this.limits = httpLimits(options.limits);
    if (options.noAuth && !isLoopbackHost(this.host)) {
      throw new UsageError(
        `--no-auth is allowed only when the HTTP server listens on loopback (127.0.0.1, ::1 or localhost), not on ${this.host}: anyone on the network could push firmware to every device. Add --http-host 127.0.0.1, or keep the token.`,
      );
    }
    let token: AdminToken | undefined;
    if (!options.noAuth) {
      const ensured = ensureAdminToken(deps.dataDir);
      this.newToken = ensured.created ? ensured.token : undefined;
      this.tokenPath = ensured.path;
      token = new AdminToken(ensured.path);
    }
    this.auth = new Authenticator(token, new LoginLimiter(this.limits.credentials));
    this.devices = new DeviceFirmwareRoute({
      storage: deps.storage,
      library: deps.library,
      limiter: new LoginLimiter(this.limits.credentials),
      logger: deps.logger,
    });
    this.apps = new DeviceAppRoute({
      storage: deps.storage,
      library: deps.library,
      files: new AppFiles(deps.dataDir, deps.storage.images),
      login: this.devices,
      logger: deps.logger,
    });
    const handlers = deps.handlers;
    this.stream = new EventStream({ maxClients: this.limits.eventClients, ...options.stream });
    this.lines = new LineUpdates({ library: deps.library, rollouts: deps.rollouts });
    this.events = new FleetEvents({
      link: deps.link,
      topics: deps.topics,
      storage: deps.storage,
      inbox: deps.inbox,
      stream: this.stream,
      logger: deps.logger,
      onJob: () => this.rolloutEvents.jobChanged(),
    });
    this.rolloutEvents = new RolloutEvents({
      link: deps.link,
      topics: deps.topics,
      storage: deps.storage,
      stream: this.stream,
      logger: deps.logger,
      rollouts: deps.rollouts,
    });
    this.files = new StaticFiles();
    const ctx: ApiContext = {
      handlers,
      storage: deps.storage,
      auth: this.auth,
      stream: this.stream,
      lines: this.lines,
      rollouts: deps.rollouts,
      rolloutChanged: (id: string) => this.rolloutEvents.changed(id),
      secure: (request: IncomingMessage) => request.headers["x-forwarded-proto"] === "https",
      logger: deps.logger,
      now: () => Date.now(),
      limits: this.limits,
      dataDir: deps.dataDir,
    };
    const { headersTimeoutMs, requestTimeoutMs } = this.limits;
    this.server = createServer(
      {
        headersTimeout: headersTimeoutMs,
        requestTimeout: requestTimeoutMs,
        // Node checks both timeouts this often (30 s by default, longer than a short headers timeout).
        connectionsCheckingInterval: Math.max(100, Math.min(headersTimeoutMs, requestTimeoutMs, 30_000) / 4),
      },
      (request, response) => {
        this.handle(ctx, request, response).catch((error: unknown) => this.fail(request, response, error));
      },
    );
    // A client that breaks the protocol or is too slow: Node answers 400/408 and closes; one line per source per minute.
    this.server.on("clientError", (error: NodeJS.ErrnoException, duplex) => {
      // Node's own type for it (Duplex) is wider than what an HTTP server hands here.
      const socket = duplex as Socket & { _httpMessage?: ServerResponse };
      const source = socket.remoteAddress ?? "unknown";
      // A reset or a closed pipe is a client leaving, not worth a line.
      const routine = error.code === "ECONNRESET" || error.code === "EPIPE";
      const notLogged = routine ? undefined : this.refusals.due(`${source} ${error.code ?? "clientError"}`);
      if (notLogged !== undefined)
        this.deps.logger.info(
          { source, code: error.code, reason: error.message, notLogged },
          "HTTP connection closed: the client broke the protocol or was too slow",
        );
      // As Node's default does: an answer only where no response has begun on the connection.
      if (socket.writable && !socket.destroyed && !socket._httpMessage?.headersSent) {
        const timeout =
          error.code === "ERR_HTTP_REQUEST_TIMEOUT" || error.code === "ERR_HTTP_HEADERS_TIMEOUT";
        socket.end(
          timeout
            ? "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
            : "HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
        );
      } else socket.destroy();
    });
  }

  async start(): Promise<void> {
    await this.events.start();
    await this.rolloutEvents.start();
    await new Promise<void>((resolve, reject) => {
      const onError = (error: NodeJS.ErrnoException) => {
        reject(
          new HttpListenError(
            error.code === "EADDRNOTAVAIL" || error.code === "ENOTFOUND" || error.code === "EAI_AGAIN"
              ? `The dashboard cannot listen on ${this.host}:${this.port}: ${this.host} is not an address of this machine. Give one of its addresses with --http-host (127.0.0.1, the default, keeps it to this machine).`
              : `The dashboard cannot listen on ${this.host}:${this.port}: ${error.code === "EADDRINUSE" ? "the port is in use (another mpota serve?)" : error.message}. Pick another with --http-port.`,
          ),
        );
      };
      this.server.once("error", onError);
      this.server.listen(this.port, this.host, () => {
        this.server.off("error", onError);
        resolve();
      });
    });
    this.deps.logger.info(
      {
        url: this.url,
        listening: `${this.address.address}:${this.address.port}`,
        auth: this.auth.open ? "none" : "token",
      },
      "dashboard and HTTP API ready",
    );
  }

  /** Where it really listens (for "localhost": the address the name resolved to). */
  get address(): AddressInfo {
    return this.server.address() as AddressInfo;
  }

  /** http://host:port/ as a browser on this machine reaches it. */
  get url(): string {
    const address = this.server.address() as AddressInfo | null;
    const host = this.host === "0.0.0.0" || this.host === "::" ? "127.0.0.1" : this.host;
    const shown = host.includes(":") ? `[${host}]` : host;
    return `http://${shown}:${address?.port ?? this.port}/`;
  }

  async stop(): Promise<void> {
    this.stream.close();
    await this.events.stop();
    await this.rolloutEvents.stop();
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private async handle(ctx: ApiContext, request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? "/", "http://mpota.invalid");
    if (url.pathname.startsWith(DEVICE_APP_PREFIX)) {
      await this.apps.serve(request, response, url.pathname);
    } else if (url.pathname.startsWith("/device/")) {
      await this.devices.serve(request, response, url.pathname);
      return;
    }
    if (url.pathname.startsWith("/api/")) {
      if (!(await routeApi(ctx, request, response, url))) {
        request.resume();
        throw new HttpError(
          404,
          `There is no API at ${url.pathname.slice(0, 200)}. The API lives under /api/v1/ (see docs/dashboard.md).`,
        );
      }
      return;
    }
    const method = request.method ?? "GET";
    const file = method === "GET" || method === "HEAD" ? await this.files.find(url.pathname) : undefined;
    if (file) {
      await this.files.serve(file, response, method === "HEAD");
      return;
    }
    request.resume();
    throw new HttpError(404, `Nothing at ${url.pathname.slice(0, 200)}. The dashboard is at /.`);
  }

  private fail(request: IncomingMessage, response: ServerResponse, error: unknown): void {
    const source = request.socket.remoteAddress ?? "unknown";
    if (error instanceof ClientGoneError || (error instanceof HttpError && response.destroyed)) {
      // Nobody is left to answer: one line, no stack (it is the client's doing, not a fault here).
      const notLogged = this.refusals.due(`${source} gone`);
      if (notLogged !== undefined)
        this.deps.logger.info(
          { source, url: request.url?.slice(0, 200), reason: error.message, notLogged },
          "HTTP client went away mid-request",
        );
      response.destroy();
      return;
    }
    let status = 500;
    let body: Record<string, unknown>;
    let headers: Record<string, string> = {};
    if (error instanceof HttpError) {
      status = error.status;
      body = { error: error.message, ...error.extra };
      headers = error.headers;
    } else if (error instanceof DiskFullError) {
      // 507 Insufficient Storage: the request was fine, the server's disk is not; the same request works once space is freed.
      status = 507;
      body = { error: error.message, cause: "disk-full" };
    } else if (error instanceof MpotaError) {
      // A request that names something unknown is 404 wherever it is thrown.
      status = error instanceof RequestError && error.notFound ? 404 : 400;
      // The dashboard points at its "Replace another app" box by this, not by the message's words.
      body = {
        error: error.message,
        ...(error instanceof AppReplaceRefusedError ? { cause: "app-replace" } : {}),
      };
    } else {
      this.deps.logger.error(
        { url: request.url?.slice(0, 200), err: (error as Error)?.stack ?? String(error) },
        "HTTP request failed",
      );
      body = {
        error: `The server failed on this request: ${(error as Error)?.message ?? String(error)}. See the server's log; please report it.`,
      };
    }
    if (response.headersSent) {
      response.destroy();
      return;
    }
    if (status >= 400 && status < 500 && status !== 404) this.logRefusal(request, status, body);
    else if (status === 503 || status === 507) this.logRefusal(request, status, body);
    sendJson(response, status, { ...body, status }, headers);
  }

  /** Once per source and status per minute, with how many were not logged since. */
  private logRefusal(request: IncomingMessage, status: number, body: Record<string, unknown>): void {
    const source = request.socket.remoteAddress ?? "unknown";
    const notLogged = this.refusals.due(`${source} ${status}`);
    if (notLogged === undefined) return;
    this.deps.logger[status === 429 || status >= 500 ? "warn" : "info"](
      {
        source,
        url: request.url?.slice(0, 200),
        status,
        reason: String(body.error).split("\n")[0],
        notLogged,
      },
      "HTTP request refused (logged once per source and status per minute)",
    );
  }
}
