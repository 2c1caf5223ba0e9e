import { existsSync } from "node:fs";
import { type Command, Option } from "commander";
import { pino } from "pino";
import { PinoPretty as pinoPretty } from "pino-pretty";
import { UsageError } from "../errors.ts";
import { isLoopbackHost } from "../net/listen-addresses.ts";
import { checkBlockSize, DEFAULT_BLOCK_SIZE } from "../protocol/datagram.ts";
import type { SigningKey } from "../protocol/rsa-key.ts";
import { checkBaseTopic, DEFAULT_BASE_TOPIC } from "../server/api/topics.ts";
import { DEFAULT_CLIENT_URL } from "../server/bridge/bridge-client.ts";
import { DEFAULT_ALLOWED_NETWORKS, NetworkPolicy } from "../server/devices/network-policy.ts";
import { DEFAULT_HA_PREFIX } from "../server/homeassistant/homeassistant.ts";
import { DEFAULT_HTTP_HOST, DEFAULT_HTTP_PORT } from "../server/http/http-feature.ts";
import { DEFAULT_HTTP_LIMITS, type HttpLimits } from "../server/http/http-limits.ts";
import {
  DEFAULT_JOB_TIMINGS,
  DEFAULT_MAX_ATTEMPTS,
  DEFAULT_MAX_CONCURRENT_PUSHES,
  type JobTimings,
  MAX_CONCURRENT_PUSHES as MAX_PUSHES,
} from "../server/jobs/job-timings.ts";
import { loadBrokerTls, selfSignedBrokerTls } from "../server/mqtt/broker-tls.ts";
import { DEFAULT_MQTTS_PORT } from "../server/mqtt/broker-tls-listener.ts";
import { DEFAULT_MQTT_PORT } from "../server/mqtt/embedded-broker.ts";
import type { MqttConnection } from "../server/mqtt/mqtt-connect.ts";
import { type BrokerChoice, DEFAULT_DATA_DIR, MpotaServer } from "../server/server.ts";
import { dbOption, dbWaitOption } from "./db.ts";
import type { CliIo } from "./io.ts";
import { DEFAULT_KEY_FILE, loadSigningKey, parseIntegerOption } from "./key-options.ts";
import { readPasswordFile } from "./password-file.ts";
import { listenerLines, type ServedCertificate } from "./serve-banner.ts";
import { assertDataWritable } from "./writable-data.ts";

/** The broker options every command that talks MQTT shares (serve, and the commands that ask the server). */
export interface MqttCliOptions {
  mqtt?: string;
  mqttUsername?: string;
  mqttPassword?: string;
  /** A file whose first line is the password (kept out of `ps`). */
  mqttPasswordFile?: string;
  mqttCa?: string;
  mqttCert?: string;
  mqttKey?: string;
  mqttInsecure?: boolean;
  base: string;
}

/** Adds --mqtt, credentials, TLS files and --base to a command. */
export function addMqttOptions(command: Command, role: "server" | "client"): Command {
  return command
    .option(
      "--mqtt <url>",
      role === "server"
        ? "use this broker instead of the embedded one (mqtt://host:1883, mqtts://host:8883)"
        : `the broker the server uses (default ${DEFAULT_CLIENT_URL})`,
    )
    .option("--mqtt-username <name>", "user name for the broker")
    .addOption(
      new Option("--mqtt-password <password>", "password for the broker (or set MPOTA_MQTT_PASSWORD)").env(
        "MPOTA_MQTT_PASSWORD",
      ),
    )
    .option(
      "--mqtt-password-file <file>",
      "read the broker password from this file's first line (a password given on the command line shows in ps)",
    )
    .option("--mqtt-ca <file>", "PEM file of the CA that signed the broker's TLS certificate")
    .option("--mqtt-cert <file>", "PEM client certificate for TLS (with --mqtt-key)")
    .option("--mqtt-key <file>", "PEM private key of the client certificate")
    .option("--mqtt-insecure", "accept any TLS certificate from the broker (testing only)")
    .option("--base <topic>", "base topic of devices and server", DEFAULT_BASE_TOPIC);
}

/** The broker connection the options describe. */
export function mqttConnection(options: MqttCliOptions, url: string): MqttConnection {
  if (options.mqttPasswordFile !== undefined && options.mqttPassword !== undefined) {
    throw new UsageError(
      "Give the broker password once: --mqtt-password (or MPOTA_MQTT_PASSWORD) or --mqtt-password-file, not both.",
    );
  }
  const password =
    options.mqttPasswordFile !== undefined
      ? readPasswordFile(options.mqttPasswordFile, "--mqtt-password-file")
      : options.mqttPassword;
  return {
    url,
    ...(options.mqttUsername !== undefined ? { username: options.mqttUsername } : {}),
    ...(password !== undefined ? { password } : {}),
    ...(options.mqttCa !== undefined ? { caFile: options.mqttCa } : {}),
    ...(options.mqttCert !== undefined ? { certFile: options.mqttCert } : {}),
    ...(options.mqttKey !== undefined ? { keyFile: options.mqttKey } : {}),
    ...(options.mqttInsecure ? { insecure: true } : {}),
  };
}

export interface ServeOptions extends MqttCliOptions {
  data: string;
  /** PostgreSQL URL (--db, MPOTA_DB); unset: SQLite in `data`. */
  db?: string;
  /** Seconds to wait at start for an unreachable database. */
  dbWait?: number;
  /** --shared-group NAME, or false for --no-shared-group. */
  sharedGroup?: string | false;
  firmwareDir?: string;
  mqttHost?: string;
  mqttPort?: number;
  /** The embedded broker's TLS listener: a certificate and key, or a self-signed pair kept in `data`. */
  mqttTlsCert?: string;
  mqttTlsKey?: string;
  mqttTlsSelfSigned?: boolean;
  mqttsHost?: string;
  mqttsPort?: number;
  key?: string;
  allowNet?: string[];
  block: number;
  bootDelay?: number;
  verifyTimeout?: number;
  ackTimeout?: number;
  maxAttempts: number;
  maxPushes: number;
  logLevel: string;
  logJson?: boolean;
  httpPort?: number;
  httpHost?: string;
  /** Commander sets it (true unless --no-http); callers that leave it out get no HTTP server unless they give httpPort. */
  http?: boolean;
  /** false with --no-auth. */
  auth?: boolean;
  /** HTTP limits (docs/limits.md). */
  httpMaxEventClients?: number;
  httpMaxBody?: number;
  httpPageMax?: number;
  httpBodyTimeout?: number;
  httpTokenFailures?: number;
  homeassistant?: boolean;
  haPrefix?: string;
  /** Where people reach the dashboard (links in Home Assistant). */
  publicUrl?: string;
}

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];

function loadServerKey(path: string | undefined, io: CliIo): { key: SigningKey | undefined; note: string } {
  if (path === undefined && !existsSync(DEFAULT_KEY_FILE)) {
    return {
      key: undefined,
      note: `no signing key (${DEFAULT_KEY_FILE} does not exist): devices are registered, but updates are refused until you restart with --key FILE (\`mpota keys new\` makes one)`,
    };
  }
  const file = path ?? DEFAULT_KEY_FILE;
  const key = loadSigningKey(file);
  if (key.bits <= 512) {
    io.err(
      `Note: ${file} is a ${key.bits}-bit key: anyone who factors it can sign firmware for your devices.\n`,
    );
  }
  return { key, note: `signing key ${file} (${key.bits}-bit)` };
}

/** What the embedded broker's TLS listener is to serve, as the options ask. */
export interface BrokerTlsRequest {
  source: { kind: "files"; certFile: string; keyFile: string } | { kind: "self-signed" };
  host: string;
  port: number;
}

function brokerTlsRequest(options: ServeOptions): BrokerTlsRequest | undefined {
  const files = options.mqttTlsCert !== undefined || options.mqttTlsKey !== undefined;
  const anyTls = files || options.mqttTlsSelfSigned === true;
  if (
    options.mqtt !== undefined &&
    (anyTls || options.mqttsHost !== undefined || options.mqttsPort !== undefined)
  ) {
    throw new UsageError(
      "--mqtt-tls-cert, --mqtt-tls-key, --mqtt-tls-self-signed, --mqtts-host and --mqtts-port set up TLS on the embedded broker; with --mqtt URL the server uses that broker instead (set TLS up there, and connect to it with mqtts:// and --mqtt-ca).",
    );
  }
  if (files && options.mqttTlsSelfSigned) {
    throw new UsageError(
      "Give either --mqtt-tls-cert and --mqtt-tls-key (your own certificate) or --mqtt-tls-self-signed (one mpota makes), not both.",
    );
  }
  if (files && (options.mqttTlsCert === undefined || options.mqttTlsKey === undefined)) {
    throw new UsageError("--mqtt-tls-cert and --mqtt-tls-key go together: give both, or neither.");
  }
  if (!anyTls) {
    if (options.mqttsHost !== undefined || options.mqttsPort !== undefined) {
      throw new UsageError(
        "--mqtts-host and --mqtts-port set up the embedded broker's TLS listener: turn it on with --mqtt-tls-cert FILE --mqtt-tls-key FILE, or --mqtt-tls-self-signed.",
      );
    }
    return undefined;
  }
  if (options.mqttsPort !== undefined && (options.mqttsPort < 0 || options.mqttsPort > 65535)) {
    throw new UsageError("--mqtts-port must be between 0 and 65535.");
  }
  return {
    source:
      options.mqttTlsCert !== undefined && options.mqttTlsKey !== undefined
        ? { kind: "files", certFile: options.mqttTlsCert, keyFile: options.mqttTlsKey }
        : { kind: "self-signed" },
    host: options.mqttsHost ?? "0.0.0.0",
    port: options.mqttsPort ?? DEFAULT_MQTTS_PORT,
  };
}

/** The HTTP limits given on the command line, checked (docs/limits.md). */
function httpLimitOptions(options: ServeOptions): Partial<HttpLimits> {
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

function httpWanted(options: ServeOptions): boolean {
  return options.http === true || (options.http === undefined && options.httpPort !== undefined);
}

/** Checks the options and turns them into what MpotaServer.start takes. */
export function serverSettings(options: ServeOptions) {
  if (options.mqtt !== undefined && (options.mqttPort !== undefined || options.mqttHost !== undefined)) {
    throw new UsageError(
      "--mqtt-port and --mqtt-host set up the embedded broker; with --mqtt URL the server uses that broker instead. Give one or the other.",
    );
  }
  const brokerTls = brokerTlsRequest(options);
  if (!LOG_LEVELS.includes(options.logLevel))
    throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(", ")}.`);
  if (options.mqttPort !== undefined && (options.mqttPort < 0 || options.mqttPort > 65535)) {
    throw new UsageError("--mqtt-port must be between 0 and 65535.");
  }
  if (options.httpPort !== undefined && (options.httpPort < 0 || options.httpPort > 65535)) {
    throw new UsageError("--http-port must be between 0 and 65535.");
  }
  if (
    options.auth === false &&
    httpWanted(options) &&
    !isLoopbackHost(options.httpHost ?? DEFAULT_HTTP_HOST)
  ) {
    throw new UsageError(
      "--no-auth is allowed only with --http-host 127.0.0.1 (or ::1, localhost): on any other address anyone on the network could push firmware to every device.",
    );
  }
  if (options.maxAttempts < 1 || options.maxAttempts > 100)
    throw new UsageError("--max-attempts must be between 1 and 100.");
  if (options.maxPushes < 1 || options.maxPushes > MAX_PUSHES)
    throw new UsageError(
      `--max-pushes must be between 1 and ${MAX_PUSHES}: each push keeps a UDP socket and a device's receiver busy, and they share one WiFi.`,
    );
  checkBlockSize(options.block);
  checkBaseTopic(options.base);
  const allowNetworks =
    options.allowNet && options.allowNet.length > 0 ? options.allowNet : DEFAULT_ALLOWED_NETWORKS;
  new NetworkPolicy(allowNetworks); // fails early on a bad CIDR
  const broker: BrokerChoice =
    options.mqtt !== undefined
      ? { kind: "external", connection: mqttConnection(options, options.mqtt) }
      : {
          kind: "embedded",
          host: options.mqttHost ?? "0.0.0.0",
          port: options.mqttPort ?? DEFAULT_MQTT_PORT,
        };
  const sharedGroup = sharedGroupOf(options);
  if (sharedGroup !== undefined && broker.kind === "embedded") {
    throw new UsageError(
      "--shared-group needs an external MQTT 5 broker (--mqtt URL, e.g. Mosquitto 2 or EMQX): the embedded broker serves one server only.",
    );
  }
  const httpLimits = httpLimitOptions(options);
  const timings: Partial<JobTimings> = {};
  if (options.bootDelay !== undefined) timings.bootDelayMs = options.bootDelay * 1000;
  if (options.verifyTimeout !== undefined) timings.verifyTimeoutMs = options.verifyTimeout * 1000;
  if (options.ackTimeout !== undefined) timings.ackTimeoutMs = options.ackTimeout * 1000;
  return { broker, allowNetworks, timings, sharedGroup, brokerTls, httpLimits };
}

const GROUP_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
/** The shared-subscription group used when several servers share a PostgreSQL database and a broker. */
export const DEFAULT_SHARED_GROUP = "mpota";

/**
 * The instances' shared-subscription group: as given, none with
 * --no-shared-group, and by default "mpota" when the server runs on
 * PostgreSQL with an external broker (the set-up several instances share).
 */
function sharedGroupOf(options: ServeOptions): string | undefined {
  if (options.sharedGroup === false) return undefined;
  if (typeof options.sharedGroup === "string") {
    if (!GROUP_PATTERN.test(options.sharedGroup)) {
      throw new UsageError(
        `"${options.sharedGroup}" cannot be a shared-subscription group: use 1 to 64 letters, digits, "_" or "-".`,
      );
    }
    return options.sharedGroup;
  }
  return options.db && options.mqtt !== undefined ? DEFAULT_SHARED_GROUP : undefined;
}

/**
 * Runs the server until `stop` resolves (the CLI: SIGINT or SIGTERM).
 * Logs (JSON lines, pino) go to stderr.
 */
export async function serveCommand(options: ServeOptions, io: CliIo, stop: Promise<unknown>): Promise<void> {
  assertDataWritable({
    dataDir: options.data,
    sqlite: !options.db,
    ...(options.firmwareDir !== undefined ? { firmwareDir: options.firmwareDir } : {}),
  });
  const settings = serverSettings(options);
  const { allowNetworks, timings, sharedGroup, brokerTls, httpLimits } = settings;
  const { key, note } = loadServerKey(options.key, io);
  let certificate: ServedCertificate | undefined;
  let broker = settings.broker;
  if (brokerTls && broker.kind === "embedded") {
    certificate =
      brokerTls.source.kind === "files"
        ? loadBrokerTls(brokerTls.source.certFile, brokerTls.source.keyFile)
        : selfSignedBrokerTls(options.data);
    broker = {
      ...broker,
      tls: { host: brokerTls.host, port: brokerTls.port, cert: certificate.cert, key: certificate.key },
    };
  }
  // People at a terminal get readable lines; services and pipes get JSON lines.
  const logger = pino(
    { level: options.logLevel },
    io.interactive && options.logJson !== true
      ? pinoPretty({
          destination: io.stderr,
          sync: true,
          translateTime: "SYS:HH:MM:ss.l",
          ignore: "pid,hostname",
        })
      : io.stderr,
  );
  const server = await MpotaServer.start({
    dataDir: options.data,
    ...(options.db ? { db: options.db } : {}),
    ...(options.dbWait !== undefined ? { dbWaitMs: options.dbWait * 1000 } : {}),
    ...(sharedGroup !== undefined ? { sharedGroup } : {}),
    ...(options.firmwareDir !== undefined ? { firmwareDir: options.firmwareDir } : {}),
    broker,
    base: options.base,
    ...(key ? { key } : {}),
    allowNetworks,
    timings,
    maxAttempts: options.maxAttempts,
    maxConcurrentPushes: options.maxPushes,
    block: options.block,
    logger,
    ...(httpWanted(options)
      ? {
          http: {
            host: options.httpHost ?? DEFAULT_HTTP_HOST,
            port: options.httpPort ?? DEFAULT_HTTP_PORT,
            noAuth: options.auth === false,
            limits: httpLimits,
          },
        }
      : {}),
    ...(options.homeassistant
      ? {
          homeAssistant: {
            prefix: options.haPrefix ?? DEFAULT_HA_PREFIX,
            ...(options.publicUrl !== undefined ? { dashboardUrl: options.publicUrl } : {}),
          },
        }
      : {}),
  });
  if (server.newAdminToken) {
    io.err(
      `Created the admin token (shown once; it is in ${server.adminTokenPath}, mode 0600). It logs in to the dashboard and the HTTP API, and is the password of the MQTT user mpota-admin; the mpota CLI on this machine finds it by itself:\n  ${server.newAdminToken}\n`,
    );
  }
  io.err(listenerLines(server, certificate));
  const brokerUrl = new URL(server.brokerUrl);
  const embedded = broker.kind === "embedded";
  const credentials = embedded ? ` -u mpota-admin -P "$(cat ${server.adminTokenPath})"` : "";
  io.err(
    `mpota server running: broker ${server.brokerUrl}${embedded ? " (embedded; clients need credentials: devices their own from `mpota devices add`, tools the admin token)" : ""}, data ${options.data}, base topic ${server.topics.base}, pushes only to ${server.info.networks.join(", ")}; ${note}.\nWatch it with: mosquitto_sub -h ${brokerUrl.hostname} -p ${brokerUrl.port || 1883}${credentials} -t '${server.topics.base}/#' -v\nStop with Ctrl-C.\n`,
  );
  try {
    await stop;
  } finally {
    io.err("mpota server stopping...\n");
    await server.stop();
  }
}

/** Resolves at the first SIGINT or SIGTERM. */
function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const on = (signal: NodeJS.Signals) => {
      process.off("SIGINT", on);
      process.off("SIGTERM", on);
      resolve(signal);
    };
    process.on("SIGINT", on);
    process.on("SIGTERM", on);
  });
}

export function registerServeCommand(program: Command, io: CliIo): void {
  const command = program
    .command("serve")
    .description(
      "Run the update server: device registry, firmware store and update jobs over MQTT (embedded broker by default).",
    )
    .option("--data <dir>", "where the database and firmware files live", DEFAULT_DATA_DIR)
    .addOption(dbOption())
    .addOption(dbWaitOption())
    .option(
      "--mqtt-host <address>",
      "address the embedded broker listens on (default 0.0.0.0: every address, so devices on the network reach it; 127.0.0.1 keeps plain MQTT to this machine when devices use TLS)",
    )
    .option(
      "--mqtt-port <port>",
      `port of the embedded broker (default ${DEFAULT_MQTT_PORT})`,
      parseIntegerOption("--mqtt-port"),
    )
    .option(
      "--mqtt-tls-cert <file>",
      "PEM certificate (and its chain) for the embedded broker's TLS listener (mqtts)",
    )
    .option("--mqtt-tls-key <file>", "PEM private key of --mqtt-tls-cert (unencrypted; keep it mode 0600)")
    .option(
      "--mqtt-tls-self-signed",
      "TLS listener with a self-signed certificate for this machine's names and addresses, made once and kept in <data>/broker-cert.pem and broker-key.pem (needs openssl)",
    )
    .option("--mqtts-host <address>", "address the TLS listener listens on (default 0.0.0.0)")
    .option(
      "--mqtts-port <port>",
      `port of the TLS listener (default ${DEFAULT_MQTTS_PORT}); the plain listener stays on too (see --mqtt-host)`,
      parseIntegerOption("--mqtts-port"),
    );
  addMqttOptions(command, "server")
    .option("--key <file>", `private key the devices' yaota8266 was built for (default ${DEFAULT_KEY_FILE})`)
    .option(
      "--allow-net <cidr>",
      `network the server may push to; repeat for more; \`private\` = ${DEFAULT_ALLOWED_NETWORKS.join(", ")} (the default)`,
      (value: string, previous: string[] = []) => [...previous, value],
    )
    .option(
      "--block <bytes>",
      "data bytes per datagram: 256, 512 or 1024",
      parseIntegerOption("--block"),
      DEFAULT_BLOCK_SIZE,
    )
    .option(
      "--boot-delay <seconds>",
      `wait after a device's ready ack before pushing (default ${DEFAULT_JOB_TIMINGS.bootDelayMs / 1000})`,
      parseIntegerOption("--boot-delay"),
    )
    .option(
      "--verify-timeout <seconds>",
      `wait this long for a device's state after a push before pushing again (default ${DEFAULT_JOB_TIMINGS.verifyTimeoutMs / 1000})`,
      parseIntegerOption("--verify-timeout"),
    )
    .option(
      "--ack-timeout <seconds>",
      "send the command again when a device has not taken it after this long (default: wait for ever, as sleepers need; with several instances, a message to an instance that dies is lost, so set it above the longest sleep)",
      parseIntegerOption("--ack-timeout"),
    )
    .option(
      "--max-attempts <n>",
      "tries per job before it fails",
      parseIntegerOption("--max-attempts"),
      DEFAULT_MAX_ATTEMPTS,
    )
    .option(
      "--max-pushes <n>",
      "pushes this server sends at once, all jobs and rollouts together (a rollout's own limit applies within it)",
      parseIntegerOption("--max-pushes"),
      DEFAULT_MAX_CONCURRENT_PUSHES,
    )
    .option(
      "--shared-group <name>",
      `MQTT 5 shared-subscription group of the servers sharing one database and broker (default ${DEFAULT_SHARED_GROUP} with --db and --mqtt)`,
    )
    .option("--no-shared-group", "plain subscriptions even with --db and --mqtt (one server only)")
    .option(
      "--firmware-dir <dir>",
      "firmware images in this directory (shared by every server on one database) instead of <data>/firmware, or the database with PostgreSQL",
    )
    .option("--log-level <level>", `log detail: ${LOG_LEVELS.join(", ")}`, "info")
    .option("--log-json", "log JSON lines even on a terminal (they are the default when stderr is not one)")
    .option(
      "--http-port <port>",
      `port of the dashboard and HTTP API (default ${DEFAULT_HTTP_PORT})`,
      parseIntegerOption("--http-port"),
    )
    .option(
      "--http-host <address>",
      `address the dashboard listens on (default ${DEFAULT_HTTP_HOST}: this machine only; 0.0.0.0 opens it to the network, where the admin token crosses it unencrypted)`,
    )
    .option("--no-http", "do not serve the dashboard and HTTP API")
    .option("--no-auth", "no admin token for the dashboard and API (only with --http-host 127.0.0.1)")
    .option(
      "--http-max-event-clients <n>",
      `live event streams (dashboard tabs) open at once; more are refused with 503 (default ${DEFAULT_HTTP_LIMITS.eventClients})`,
      parseIntegerOption("--http-max-event-clients"),
    )
    .option(
      "--http-max-body <bytes>",
      `largest JSON request body (default ${DEFAULT_HTTP_LIMITS.jsonBodyBytes}; firmware uploads have their own bound)`,
      parseIntegerOption("--http-max-body"),
    )
    .option(
      "--http-page-max <n>",
      `largest page of a list the API answers (default ${DEFAULT_HTTP_LIMITS.pageMax}; without limit= a page has ${DEFAULT_HTTP_LIMITS.pageDefault})`,
      parseIntegerOption("--http-page-max"),
    )
    .option(
      "--http-body-timeout <seconds>",
      `a request body that stops arriving this long is answered 408 and closed (default ${DEFAULT_HTTP_LIMITS.bodyIdleMs / 1000})`,
      parseIntegerOption("--http-body-timeout"),
    )
    .option(
      "--http-token-failures <n>",
      `wrong admin tokens (logins and Bearer) an address may send a minute before wrong ones get 429; the right token always passes (default ${DEFAULT_HTTP_LIMITS.credentials.maxFailures})`,
      parseIntegerOption("--http-token-failures"),
    )
    .option("--homeassistant", "publish Home Assistant MQTT discovery: one update entity per device")
    .option(
      "--public-url <url>",
      "the dashboard's address as people reach it (http://pi.local:8080/): Home Assistant's release links point there",
    )
    .option("--ha-prefix <topic>", `Home Assistant's discovery prefix (default ${DEFAULT_HA_PREFIX})`)
    .addHelpText(
      "after",
      `
Devices follow the MQTT contract in docs/mqtt.md (<base>/<id>/state, status, cmd, ack).
Tools and people use <base>/bridge/request/<name> and <base>/bridge/response/<name>;
job progress is retained on <base>/bridge/jobs/<job>.
State lives in SQLite (<data>/mpota.db) unless --db or MPOTA_DB names a PostgreSQL database
(postgres://USER:PASSWORD@HOST:5432/DATABASE), which several servers can share; migrations run
at start (\`mpota db status|migrate\`), and an unreachable database is waited for (--db-wait).
Exit codes: 0 stopped, 2 bad option, 3 unreadable file, 4 key problem, 20 external broker unreachable,
21 embedded broker cannot listen (port taken, TLS certificate or key unusable), 24/25 database unusable (or unreachable) or newer than this mpota.`,
    )
    .action(async (options: ServeOptions) => {
      await serveCommand(options, io, untilSignal());
    });
}
