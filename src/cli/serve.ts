// The `mpota serve` command: runs the update server until a signal.
import type { Command } from "commander";
import { pino } from "pino";
import { PinoPretty as pinoPretty } from "pino-pretty";
import { DEFAULT_BLOCK_SIZE } from "../protocol/datagram.ts";
import { DEFAULT_ALLOWED_NETWORKS } from "../server/devices/network-policy.ts";
import { DEFAULT_DEVICE_LIMITS } from "../server/devices/new-device-gate.ts";
import { DEFAULT_HA_PREFIX } from "../server/homeassistant/homeassistant.ts";
import { DEFAULT_HTTP_HOST, DEFAULT_HTTP_PORT } from "../server/http/http-feature.ts";
import { DEFAULT_HTTP_LIMITS } from "../server/http/http-limits.ts";
import {
  DEFAULT_JOB_TIMINGS,
  DEFAULT_MAX_ATTEMPTS,
  DEFAULT_MAX_CONCURRENT_PUSHES,
} from "../server/jobs/job-timings.ts";
import { DEFAULT_BROKER_LIMITS } from "../server/mqtt/broker-limits.ts";
import { loadBrokerTls, selfSignedBrokerTls } from "../server/mqtt/broker-tls.ts";
import { DEFAULT_MQTTS_PORT } from "../server/mqtt/broker-tls-listener.ts";
import { DEFAULT_MQTT_PORT } from "../server/mqtt/embedded-broker.ts";
import { BrokerConnectError } from "../server/mqtt/mqtt-connect.ts";
import { MpotaServer } from "../server/server.ts";
import { DEFAULT_DATA_DIR } from "../server/server-options.ts";
import { DEFAULT_TUNING, MAX_WINDOW, SMALL_WINDOW } from "../transfer/sender.ts";
import { dbOption, dbWaitOption } from "./db.ts";
import { httpWanted } from "./http-limit-options.ts";
import type { CliIo } from "./io.ts";
import { DEFAULT_KEY_FILE, parseIntegerOption } from "./key-options.ts";
import { addMqttOptions } from "./mqtt-options.ts";
import { listenerLines, type ServedCertificate } from "./serve-banner.ts";
import { LOG_LEVELS, type ServeOptions } from "./serve-options.ts";
import { serverSettings } from "./serve-settings.ts";
import { loadServerKey } from "./serve-signing-key.ts";
import { DEFAULT_SHARED_GROUP } from "./shared-group.ts";
import { assertDataWritable } from "./writable-data.ts";

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
  const { allowNetworks, timings, sharedGroup, brokerTls, httpLimits, deviceLimits, deviceUrl, pushTuning } =
    settings;
  const { key, note } = loadServerKey(options.key, io, httpWanted(options));
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
    deviceLimits,
    block: options.block,
    ...(pushTuning ? { pushTuning } : {}),
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
    ...(deviceUrl !== undefined ? { deviceUrl } : {}),
    ...(options.homeassistant
      ? {
          homeAssistant: {
            prefix: options.haPrefix ?? DEFAULT_HA_PREFIX,
            ...(options.publicUrl !== undefined ? { dashboardUrl: options.publicUrl } : {}),
          },
        }
      : {}),
  }).catch((error: unknown) => {
    throw withExternalBrokerHint(error, broker.kind);
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

/**
 * A user who gave --mqtt may not know that serve then starts no broker of its
 * own: when nothing answers at that URL, say so and what to do.
 */
function withExternalBrokerHint(error: unknown, kind: "embedded" | "external"): unknown {
  if (kind !== "external" || !(error instanceof BrokerConnectError) || !error.unreachable) return error;
  return new BrokerConnectError(
    `${error.message}\nWith --mqtt, mpota serve uses that broker and starts none of its own: start it (Mosquitto: docs/mosquitto.md), check the URL's host and port, or leave out --mqtt to run the embedded broker.`,
    { cause: error, unreachable: true },
  );
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
      "--push-window <n>",
      `most datagrams in flight in each UDP push, 1 to ${MAX_WINDOW} (default ${DEFAULT_TUNING.maxWindow}; ${SMALL_WINDOW} for devices whose receiver queues fewer than 7 while it writes a sector)`,
      parseIntegerOption("--push-window"),
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
    .option(
      "--mqtt-max-packet <bytes>",
      `largest MQTT packet the embedded broker takes from a device, or from a client not yet logged in; a larger one closes the connection (default ${DEFAULT_BROKER_LIMITS.devicePacketBytes}; the admin's is ${DEFAULT_BROKER_LIMITS.adminPacketBytes}, for firmware uploads)`,
      parseIntegerOption("--mqtt-max-packet"),
    )
    .option(
      "--mqtt-max-retained <bytes>",
      `retained bytes clients may leave on the embedded broker together; a retained message over it closes the connection (default ${DEFAULT_BROKER_LIMITS.retainedTotalBytes}, at most ${DEFAULT_BROKER_LIMITS.retainedMessageBytes} each)`,
      parseIntegerOption("--mqtt-max-retained"),
    )
    .option(
      "--mqtt-max-connections <n>",
      `connections each listener of the embedded broker keeps open; further ones are closed at once (default ${DEFAULT_BROKER_LIMITS.connections})`,
      parseIntegerOption("--mqtt-max-connections"),
    )
    .option(
      "--max-devices <n>",
      `devices the server registers; states from further ids are dropped (default ${DEFAULT_DEVICE_LIMITS.maxDevices})`,
      parseIntegerOption("--max-devices"),
    )
    .option(
      "--new-devices-per-minute <n>",
      `new device ids registered a minute; more wait for their next state (default ${DEFAULT_DEVICE_LIMITS.newPerMinute})`,
      parseIntegerOption("--new-devices-per-minute"),
    )
    .option(
      "--device-url <url>",
      "the HTTP API's address as devices reach it (http://192.168.1.10:8080): ESP32s fetch their image below it (default: the HTTP listener's address, the first LAN IPv4 when it listens on all)",
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
job progress is retained on <base>/bridge/jobs/<job> until a day after the job ended.
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
