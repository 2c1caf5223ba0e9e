import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { connect, type IClientOptions, type MqttClient } from "mqtt";
import { FileError, MpotaError, UsageError } from "../../errors.ts";
import { EXIT_CODES } from "../../exit-codes.ts";

/** The broker could not be reached or refused the connection. */
export class BrokerConnectError extends MpotaError {
  override readonly exitCode: number = EXIT_CODES.brokerConnect.code;
  /**
   * No broker answered at the URL (refused, unresolved, unreachable, silent),
   * as against one that answered and refused this client: only then is
   * "start the broker" the advice.
   */
  readonly unreachable: boolean;

  constructor(message: string, options: { cause?: unknown; unreachable?: boolean } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.unreachable = options.unreachable === true;
  }
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
  if (code === undefined && isPacketParseError(error)) {
    // The usual cause is the dashboard's port: an HTTP reply read as MQTT
    // ("Invalid header flag bits, must be 0x0 for puback packet").
    return `Cannot connect to the broker at ${where}: what answers there does not speak MQTT (${e?.message}). Is that the dashboard's HTTP port? Give the broker's port: \`mpota serve\` prints it ("MQTT broker: mqtt://..."; --mqtt-port, 1883 by default).`;
  }
  return `Cannot connect to the broker at ${where}: ${(error as Error)?.message ?? String(error)}.`;
}

/** An error of MQTT.js's packet parser: the bytes that came back are not MQTT. */
function isPacketParseError(error: unknown): boolean {
  const message = (error as { message?: unknown } | undefined)?.message;
  return typeof message === "string" && /packet|^Invalid |^Malformed /i.test(message);
}

/** A failure of the socket itself (ECONNREFUSED, ENOTFOUND, EHOSTUNREACH ...): nothing that speaks MQTT answered. */
function isSocketError(error: unknown): boolean {
  const code = (error as { code?: unknown } | undefined)?.code;
  return typeof code === "string" && !isTlsError(error);
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
        lastError === undefined || isSocketError(lastError),
      );
    }, options.timeoutMs);
    const cleanup = () => {
      clearTimeout(timer);
      client.off("connect", onConnect);
      client.off("error", onError);
      client.off("close", onClose);
    };
    const fail = (message: string, unreachable: boolean) => {
      cleanup();
      client.end(true);
      reject(new BrokerConnectError(message, { unreachable }));
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
        fail(describeConnectError(error, connection.url), isSocketError(error));
    };
    const onClose = () => {
      if (!options.reconnect)
        fail(
          describeConnectError(lastError ?? new Error("the connection closed"), connection.url),
          lastError === undefined || isSocketError(lastError),
        );
    };
    client.on("connect", onConnect);
    client.on("error", onError);
    client.on("close", onClose);
  });
}
