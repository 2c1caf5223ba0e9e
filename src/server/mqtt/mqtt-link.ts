import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { connect, type IClientOptions, type IPublishPacket, type MqttClient } from "mqtt";
import type { Logger } from "pino";
import { FileError, MpotaError, UsageError } from "../../errors.ts";
import { EXIT_CODES } from "../../exit-codes.ts";

/** The broker could not be reached or refused the connection. */
export class BrokerConnectError extends MpotaError {
  override readonly exitCode: number = EXIT_CODES.brokerConnect.code;
}

/** How to reach a broker: the embedded one or an external one such as Mosquitto. */
export interface MqttConnection {
  /** mqtt://host:port, mqtts://host:port (TLS), ws:// or wss:// */
  url: string;
  username?: string;
  password?: string;
  /** PEM files for TLS: the CA that signed the broker's certificate, and a client certificate and key. */
  caFile?: string;
  certFile?: string;
  keyFile?: string;
  /** Accept any broker certificate (testing only). */
  insecure?: boolean;
}

export interface ConnectOptions {
  clientId?: string;
  /** Give up when the first connection is not up after this long. */
  timeoutMs: number;
  /** Reconnect after the first connection drops (servers); CLI clients do not. */
  reconnect: boolean;
  will?: { topic: string; payload: string; retain: boolean; qos: 0 | 1 };
  /** MQTT 5 (needed for shared subscriptions); 3.1.1 by default, which every broker speaks. */
  mqtt5?: boolean;
}

/** Longest wait for the broker's acknowledgement of a publish. */
export const PUBLISH_WAIT_MS = 5000;

export type MessageHandler = (topic: string, payload: Buffer, packet: IPublishPacket) => void | Promise<void>;

const SUPPORTED_SCHEMES = ["mqtt:", "mqtts:", "tcp:", "tls:", "ssl:", "ws:", "wss:"];

function readPem(path: string | undefined, what: string): Buffer | undefined {
  if (path === undefined) return undefined;
  try {
    return readFileSync(path);
  } catch (error) {
    throw new FileError(`${what} ${path} cannot be read: ${(error as Error).message}.`);
  }
}

/** MQTT.js options for a connection; reads the TLS files. */
export function clientOptions(connection: MqttConnection, options: ConnectOptions): IClientOptions {
  let url: URL;
  try {
    url = new URL(connection.url);
  } catch {
    throw new UsageError(
      `"${connection.url}" is not a broker URL; use mqtt://host:port or mqtts://host:port.`,
    );
  }
  if (!SUPPORTED_SCHEMES.includes(url.protocol)) {
    throw new UsageError(
      `"${connection.url}" is not a broker URL; use mqtt://host:port or mqtts://host:port.`,
    );
  }
  const ca = readPem(connection.caFile, "The CA file (--mqtt-ca)");
  const cert = readPem(connection.certFile, "The client certificate (--mqtt-cert)");
  const key = readPem(connection.keyFile, "The client key (--mqtt-key)");
  if ((cert === undefined) !== (key === undefined)) {
    throw new UsageError("--mqtt-cert and --mqtt-key go together: give both, or neither.");
  }
  const result: IClientOptions = {
    clientId: options.clientId ?? `mpota-${randomBytes(5).toString("hex")}`,
    protocolVersion: options.mqtt5 ? 5 : 4,
    clean: true,
    connectTimeout: options.timeoutMs,
    reconnectPeriod: options.reconnect ? 2000 : 0,
    keepalive: 30,
    resubscribe: true,
  };
  const username = connection.username ?? (url.username ? decodeURIComponent(url.username) : undefined);
  const password = connection.password ?? (url.password ? decodeURIComponent(url.password) : undefined);
  if (username !== undefined) result.username = username;
  if (password !== undefined) result.password = password;
  if (ca) result.ca = ca;
  if (cert) result.cert = cert;
  if (key) result.key = key;
  if (connection.insecure) result.rejectUnauthorized = false;
  if (options.will) result.will = options.will;
  return result;
}

/** The URL without credentials, for messages and logs. */
export function safeUrl(url: string): string {
  try {
    const u = new URL(url);
    u.username = "";
    u.password = "";
    return u.toString().replace(/\/$/, "");
  } catch {
    return url;
  }
}

/** A connection failure in words a user can act on. */
export function describeConnectError(error: unknown, url: string): string {
  const where = safeUrl(url);
  const e = error as { code?: string | number; message?: string } | undefined;
  const code = e?.code;
  if (code === 4 || code === 134) {
    return `The broker at ${where} refused the user name or password. Check --mqtt-username and --mqtt-password.`;
  }
  if (code === 1 || code === 132) {
    return `The broker at ${where} does not accept this MQTT version. Servers sharing one database connect with MQTT 5 for shared subscriptions: use a broker that speaks it (Mosquitto 2, EMQX, VerneMQ, HiveMQ), or run one server with --no-shared-group.`;
  }
  if (code === 5 || code === 135) {
    return `The broker at ${where} did not authorize this client. Give credentials it accepts (--mqtt-username, --mqtt-password) or check its ACLs.`;
  }
  if (code === "ECONNREFUSED") return `Nothing accepts connections at ${where} (connection refused).`;
  if (code === "ENOTFOUND" || code === "EAI_AGAIN")
    return `The broker host in ${where} cannot be resolved (${code}).`;
  if (code === "EHOSTUNREACH" || code === "ENETUNREACH")
    return `The broker at ${where} cannot be reached (${code}).`;
  if (isTlsError(error)) {
    return `The TLS connection to ${where} failed: ${e?.message}. Give the CA that signed the broker's certificate with --mqtt-ca (or --mqtt-insecure for a test broker).`;
  }
  return `Cannot connect to the broker at ${where}: ${(error as Error)?.message ?? String(error)}.`;
}

function isTlsError(error: unknown): boolean {
  const code = (error as { code?: unknown } | undefined)?.code;
  return typeof code === "string" && /CERT|SELF_SIGNED|UNABLE_TO|ERR_TLS|ERR_SSL|HOSTNAME/.test(code);
}

/** Connects and resolves once the broker accepted the connection. */
export function connectClient(connection: MqttConnection, options: ConnectOptions): Promise<MqttClient> {
  const opts = clientOptions(connection, options);
  return new Promise((resolve, reject) => {
    const client = connect(connection.url, opts);
    let lastError: unknown;
    const timer = setTimeout(() => {
      fail(
        lastError === undefined
          ? `The broker at ${safeUrl(connection.url)} did not answer within ${Math.round(options.timeoutMs / 1000)} s.`
          : describeConnectError(lastError, connection.url),
      );
    }, options.timeoutMs);
    const cleanup = () => {
      clearTimeout(timer);
      client.off("connect", onConnect);
      client.off("error", onError);
      client.off("close", onClose);
    };
    const fail = (message: string) => {
      cleanup();
      client.end(true);
      reject(new BrokerConnectError(message));
    };
    const onConnect = () => {
      cleanup();
      resolve(client);
    };
    const onError = (error: Error) => {
      lastError = error;
      const code = (error as { code?: unknown }).code;
      // Refusals by the broker and TLS failures do not get better by retrying.
      if (typeof code === "number" || isTlsError(error) || !options.reconnect)
        fail(describeConnectError(error, connection.url));
    };
    const onClose = () => {
      if (!options.reconnect)
        fail(describeConnectError(lastError ?? new Error("the connection closed"), connection.url));
    };
    client.on("connect", onConnect);
    client.on("error", onError);
    client.on("close", onClose);
  });
}

/** True when `topic` matches the subscription `filter` (with `+` and `#`). */
export function topicMatches(filter: string, topic: string): boolean {
  const f = filter.split("/");
  const t = topic.split("/");
  for (let i = 0; i < f.length; i++) {
    if (f[i] === "#") return true;
    if (i >= t.length) return false;
    if (f[i] !== "+" && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}

/** A subscription of the link: one filter on the broker, any number of handlers. */
interface Subscription {
  /** What the broker gets: the filter, or `$share/<group>/<filter>`. */
  brokerFilter: string;
  /** The filter topics are matched against. */
  filter: string;
  /** MQTT 5 subscription identifier: tells which subscription a message came through. */
  id: number;
  handlers: MessageHandler[];
}

/**
 * The server's one MQTT client, shared by its features: each feature
 * subscribes with its own handler; a handler that throws is logged and the
 * next message goes on.
 *
 * With `sharedGroup` (MQTT 5), subscriptions made with `shared: true` go to
 * `$share/<group>/<filter>`: the broker hands each message to one instance
 * of the group. The other subscriptions still get every message. A message
 * goes only to the handlers of the subscription it came through (MQTT 5
 * subscription identifiers), so a topic covered by a shared and a plain
 * subscription is not handled twice.
 */
export class MqttLink {
  private readonly subscriptions = new Map<string, Subscription>();
  private readonly byId = new Map<number, Subscription>();
  private nextId = 1;
  private closed = false;
  /** Topics readRetained is reading, with how many reads (MQTT 3.1.1 cannot tell subscriptions apart). */
  private readonly reading = new Map<string, number>();
  private readonly mqtt5: boolean;

  constructor(
    readonly client: MqttClient,
    private readonly logger: Logger,
    /** The shared-subscription group of the server instances (MQTT 5 only). */
    readonly sharedGroup?: string,
  ) {
    this.mqtt5 = client.options.protocolVersion === 5;
    if (sharedGroup !== undefined && !this.mqtt5)
      throw new UsageError("Shared subscriptions need an MQTT 5 connection.");
    client.on("message", (topic, payload, packet) => this.dispatch(topic, payload, packet));
    client.on("error", (error) => {
      // Writes that race the link's own close ("write after end") are not news.
      if (!this.closed) this.logger.warn({ err: error.message }, "MQTT error");
    });
    client.on("offline", () => this.logger.warn("MQTT connection lost; reconnecting"));
    client.on("reconnect", () => this.logger.debug("MQTT reconnecting"));
    client.on("connect", () => this.logger.debug("MQTT connected"));
  }

  static async connect(
    connection: MqttConnection,
    options: ConnectOptions & { sharedGroup?: string },
    logger: Logger,
  ): Promise<MqttLink> {
    const mqtt5 = options.mqtt5 ?? options.sharedGroup !== undefined;
    return new MqttLink(await connectClient(connection, { ...options, mqtt5 }), logger, options.sharedGroup);
  }

  /**
   * Subscribes `handler` to `filter`. `shared`: one instance of the group
   * gets each message (device messages and requests, which must be handled
   * once); without a group it is a plain subscription.
   */
  async subscribe(
    filter: string,
    handler: MessageHandler,
    options: { shared?: boolean } = {},
  ): Promise<void> {
    const brokerFilter =
      options.shared && this.sharedGroup !== undefined ? `$share/${this.sharedGroup}/${filter}` : filter;
    const existing = this.subscriptions.get(brokerFilter);
    if (existing) {
      existing.handlers.push(handler);
      return;
    }
    const subscription: Subscription = { brokerFilter, filter, id: this.nextId++, handlers: [handler] };
    this.subscriptions.set(brokerFilter, subscription);
    this.byId.set(subscription.id, subscription);
    await this.client.subscribeAsync(brokerFilter, {
      qos: 1,
      ...(this.mqtt5 ? { properties: { subscriptionIdentifier: subscription.id } } : {}),
    });
  }

  /**
   * The message retained on `topic`, or null when there is none (or the
   * broker is not connected). Shared subscriptions never get retained
   * messages, so an instance reads one this way when it must know what a
   * device said last: a plain subscription of its own, dropped again after
   * the broker's answer (retained messages follow the SUBACK) or `waitMs`.
   * The message reaches no other handler of the link.
   */
  async readRetained(topic: string, waitMs = 1000): Promise<Buffer | null> {
    if (this.closed || !this.client.connected || /[+#]/.test(topic)) return null;
    // A topic the link already holds a plain subscription on must keep it.
    const keep = this.subscriptions.has(topic);
    let found: Buffer | null = null;
    let arrived: () => void = () => undefined;
    const arrival = new Promise<void>((resolve) => {
      arrived = resolve;
    });
    const id = this.nextId++;
    const listener = (t: string, payload: Buffer, packet: IPublishPacket) => {
      if (t !== topic || packet.retain !== true) return;
      const ids = packet.properties?.subscriptionIdentifier;
      if (ids !== undefined && !(Array.isArray(ids) ? ids : [ids]).includes(id)) return;
      found = payload;
      arrived();
    };
    this.client.on("message", listener);
    this.reading.set(topic, (this.reading.get(topic) ?? 0) + 1);
    let timer: NodeJS.Timeout | undefined;
    try {
      await this.client.subscribeAsync(topic, {
        qos: 1,
        ...(this.mqtt5 ? { properties: { subscriptionIdentifier: id } } : {}),
      });
      await Promise.race([
        arrival,
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, waitMs);
        }),
      ]);
    } finally {
      clearTimeout(timer);
      this.client.off("message", listener);
      const left = (this.reading.get(topic) ?? 1) - 1;
      if (left > 0) this.reading.set(topic, left);
      else this.reading.delete(topic);
      if (!keep && this.client.connected) await this.client.unsubscribeAsync(topic).catch(() => undefined);
    }
    return found;
  }

  /** Drops every handler of `filter` (shared or not); unsubscribes at the broker. */
  async unsubscribe(filter: string): Promise<void> {
    for (const subscription of [...this.subscriptions.values()]) {
      if (subscription.filter !== filter) continue;
      this.subscriptions.delete(subscription.brokerFilter);
      this.byId.delete(subscription.id);
      if (!this.closed && this.client.connected)
        await this.client.unsubscribeAsync(subscription.brokerFilter);
    }
  }

  /**
   * Publishes; resolves when the broker acknowledged it, or after
   * `PUBLISH_WAIT_MS` (or at once while disconnected): MQTT.js keeps the
   * message and sends it when the connection is back, so a broker outage
   * never stalls the server's work.
   */
  async publish(
    topic: string,
    payload: string | Uint8Array,
    options: { retain?: boolean; qos?: 0 | 1 } = {},
  ): Promise<void> {
    if (this.closed) return;
    const sent = this.client.publishAsync(topic, Buffer.from(payload), {
      qos: options.qos ?? 1,
      retain: options.retain ?? false,
    });
    sent.catch((error: unknown) =>
      this.logger.warn({ topic, err: (error as Error).message }, "publish failed"),
    );
    if (!this.client.connected) {
      this.logger.debug({ topic }, "broker not connected; message queued");
      return;
    }
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      sent.then(
        () => undefined,
        () => undefined,
      ),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, PUBLISH_WAIT_MS);
      }),
    ]);
    clearTimeout(timer);
  }

  publishJson(topic: string, value: unknown, options: { retain?: boolean; qos?: 0 | 1 } = {}): Promise<void> {
    return this.publish(topic, JSON.stringify(value), options);
  }

  private dispatch(topic: string, payload: Buffer, packet: IPublishPacket): void {
    const ids = packet.properties?.subscriptionIdentifier;
    // Without subscription identifiers, a retained message on a topic being read is readRetained's.
    if (ids === undefined && packet.retain && this.reading.has(topic)) return;
    const through =
      ids === undefined
        ? [...this.subscriptions.values()].filter((s) => topicMatches(s.filter, topic))
        : (Array.isArray(ids) ? ids : [ids]).flatMap((id) => this.byId.get(id) ?? []);
    for (const subscription of through) {
      for (const handler of subscription.handlers) {
        try {
          const result = handler(topic, payload, packet);
          if (result) result.catch((error: unknown) => this.handlerFailed(topic, error));
        } catch (error) {
          this.handlerFailed(topic, error);
        }
      }
    }
  }

  private handlerFailed(topic: string, error: unknown): void {
    this.logger.error(
      { topic, err: error instanceof Error ? error.stack : String(error) },
      "message handler failed",
    );
  }

  /** Disconnects; pending publishes get `timeoutMs` to finish. */
  async close(timeoutMs = 2000): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.race([
      this.client.endAsync(false),
      new Promise<void>((resolve) => setTimeout(resolve, timeoutMs).unref()),
    ]);
    if (!this.client.disconnected) await this.client.endAsync(true);
  }
}
