import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import { type Logger, pino } from "pino";
import type { PythonValue } from "../agent-host/agent-files.ts";
import { type Clock, systemClock } from "../net/clock.ts";
import { NodeUdpNetwork } from "../net/node-udp.ts";
import type { UdpNetwork } from "../net/udp-channel.ts";
import { wallClock } from "../net/wall-clock.ts";
import { DEFAULT_BLOCK_SIZE } from "../protocol/datagram.ts";
import type { SigningKey } from "../protocol/rsa-key.ts";
import type { PushTuning } from "../transfer/sender.ts";
import type { BridgeStateMessage, ServerInfo } from "./bridge/api.ts";
import { Bridge } from "./bridge/bridge.ts";
import { bridgeHandlers } from "./bridge/bridge-handlers.ts";
import { ImagePusher } from "./deliveries/image-pusher.ts";
import type { SignedImageCache } from "./deliveries/signed-image-cache.ts";
import { DEFAULT_HISTORY_LIMIT, DeviceInbox, UNAVAILABLE_RETRY_MS } from "./devices/device-inbox.ts";
import { DEFAULT_ALLOWED_NETWORKS, NetworkPolicy } from "./devices/network-policy.ts";
import {
  DEFAULT_HA_PREFIX,
  HomeAssistantFeature,
  type HomeAssistantOptions,
} from "./homeassistant/homeassistant.ts";
import { AdminToken, ensureAdminToken } from "./http/admin-token.ts";
import { HttpFeature, type HttpOptions } from "./http/http-feature.ts";
import { DEFAULT_HEARTBEAT_MS, InstanceHeartbeat, statusView } from "./instances.ts";
import { JobRunner } from "./jobs/job-runner.ts";
import {
  DEFAULT_JOB_TIMINGS,
  DEFAULT_MAX_ATTEMPTS,
  DEFAULT_MAX_CONCURRENT_PUSHES,
  type JobTimings,
} from "./jobs/job-timings.ts";
import { BrokerAccess, SERVER_USERNAME } from "./mqtt/broker-access.ts";
import type { TlsListenOptions } from "./mqtt/broker-tls-listener.ts";
import { DEFAULT_MQTT_PORT, EmbeddedBroker } from "./mqtt/embedded-broker.ts";
import { type MqttConnection, safeUrl } from "./mqtt/mqtt-connect.ts";
import { MqttLink } from "./mqtt/mqtt-link.ts";
import { readBridgeState } from "./mqtt/topic-readers.ts";
import { DEFAULT_BASE_TOPIC, Topics } from "./mqtt/topics.ts";
import { FirmwareLibrary } from "./releases/firmware-library.ts";
import { RolloutEngine } from "./rollouts/rollout-engine.ts";
import { openStorage } from "./storage/open-storage.ts";
import type { Storage } from "./storage/storage.ts";
import { auditedHandlers } from "./trust/audit.ts";
import type { CommandKey } from "./trust/command-key.ts";
import { CommandKeyRing } from "./trust/command-key-ring.ts";
import { CommandKeyRollout } from "./trust/command-key-rollout.ts";
import { CommandSigner } from "./trust/command-signer.ts";
import { lanAddress, type ProvisioningDeps } from "./trust/provisioning.ts";

export const DEFAULT_DATA_DIR = "./.mpota";

export type BrokerChoice =
  /** Start an Aedes broker in this process (default: 0.0.0.0:1883), with `tls` also mqtts (default 0.0.0.0:8883). */
  | { kind: "embedded"; host?: string; port?: number; tls?: TlsListenOptions }
  /** Use an existing broker (Mosquitto, ...). */
  | { kind: "external"; connection: MqttConnection };

export interface ServerOptions {
  dataDir?: string;
  broker?: BrokerChoice;
  base?: string;
  /** The command key instead of `<dataDir>/command-key.pem` (tests share one: making one takes a second). */
  commandKey?: CommandKey;
  /** The key devices' yaota8266 was built for; without it the server runs but refuses updates. */
  key?: SigningKey;
  /** CIDRs the server may push to (default: private ranges and loopback). */
  allowNetworks?: readonly string[];
  timings?: Partial<JobTimings>;
  maxAttempts?: number;
  maxConcurrentPushes?: number;
  /** Data bytes per datagram. */
  block?: number;
  pushTuning?: PushTuning;
  /** Sender's stall limit (ms). */
  stallMs?: number;
  historyLimit?: number;
  /** How long a device message is tried again while the database is unreachable (default 120 s). */
  unavailableRetryMs?: number;
  logger?: Logger;
  /** UDP for pushes (default: real sockets). */
  network?: UdpNetwork;
  /** Wall clock for stored times and job timers. */
  clock?: Clock;
  /** Monotonic clock for the sender. */
  pushClock?: Clock;
  /** Storage to use instead of SQLite in dataDir (another backend). */
  storage?: Storage;
  /** PostgreSQL URL (postgres://...) for the storage; unset: SQLite in dataDir. Ignored with `storage`. */
  db?: string;
  /** How long to wait at start for an unreachable database (default 10 s). */
  dbWaitMs?: number;
  /** This instance's name in job leases (default host:pid:random). */
  instanceId?: string;
  /**
   * MQTT 5 shared-subscription group of the server instances that share one
   * database and one broker: each device message and request is handled by
   * one of them. Unset: a single server (plain subscriptions, MQTT 3.1.1).
   */
  sharedGroup?: string;
  /** How often this instance writes its heartbeat to storage (default 5 s). */
  heartbeatMs?: number;
  /**
   * Firmware images in this directory instead of `<dataDir>/firmware` (or,
   * on PostgreSQL, the database): one directory every instance mounts.
   */
  firmwareDir?: string;
  /** Signed datagrams per firmware, for the same key and block (default: the pusher's own). */
  signedImages?: SignedImageCache;
  /** Serve the dashboard and the HTTP API (off unless given; `mpota serve` turns it on). */
  http?: HttpOptions;
  /** Home Assistant MQTT discovery (off unless given). */
  homeAssistant?: HomeAssistantOptions;
}

function packageVersion(): string {
  try {
    return (
      JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string }
    ).version;
  } catch {
    return "unknown";
  }
}

/**
 * The update server's composition root: storage, broker connection and the
 * features (device inbox, job runner, bridge API), each with start() and
 * stop(). It holds no fleet state itself: everything is in storage, so
 * another instance on the same storage and broker sees the same fleet.
 */
export class MpotaServer {
  stopped = false;
  /** This instance's heartbeat in storage, set once started. */
  heartbeat: InstanceHeartbeat | undefined;
  /** The dashboard and HTTP API, when started with `http`. */
  http: HttpFeature | undefined;
  homeAssistant: HomeAssistantFeature | undefined;
  /** Staged rollouts (src/server/rollouts/), set once started. */
  rollouts: RolloutEngine | undefined;
  /** The admin token when this start created it (shown once), else undefined. */
  newAdminToken: string | undefined;
  /** Where the admin token is: the password of the MQTT user mpota-admin and the HTTP API's token. */
  adminTokenPath = "";

  /** The mpota_config.py settings every provisioned device gets from this server (its command keys). */
  agentSettings(): Record<string, PythonValue> {
    return { CMD_KEYS: this.commandKeys.trusted().map((k) => k.modulusHex) };
  }

  private constructor(
    readonly storage: Storage,
    readonly library: FirmwareLibrary,
    readonly link: MqttLink,
    readonly topics: Topics,
    readonly runner: JobRunner,
    readonly inbox: DeviceInbox,
    private readonly bridge: Bridge,
    private readonly broker: EmbeddedBroker | undefined,
    /** The broker clients should use (credentials left out). */
    readonly brokerUrl: string,
    /** How this server itself connects to its broker (with its credential: keep it in the process). */
    readonly connection: MqttConnection,
    /** Signs the commands to devices; its public half is in every device's CMD_KEYS. */
    readonly commandKey: CommandKey,
    /** The command keys: the current one, and during a rotation the next. */
    readonly commandKeys: CommandKeyRing,
    readonly info: ServerInfo,
    private readonly logger: Logger,
    private readonly ownsStorage: boolean,
  ) {}

  /** The embedded broker (its listeners' addresses), unless the server uses an external one. */
  get embeddedBroker(): EmbeddedBroker | undefined {
    return this.broker;
  }

  static async start(options: ServerOptions = {}): Promise<MpotaServer> {
    const logger = options.logger ?? pino({ level: "info" });
    const clock = options.clock ?? wallClock;
    const topics = new Topics(options.base ?? DEFAULT_BASE_TOPIC);
    const policy = new NetworkPolicy(options.allowNetworks ?? DEFAULT_ALLOWED_NETWORKS);
    const dataDir = options.dataDir ?? DEFAULT_DATA_DIR;
    const storage =
      options.storage ??
      (await openStorage({
        db: options.db,
        dataDir,
        ...(options.dbWaitMs !== undefined ? { startRetryMs: options.dbWaitMs } : {}),
      }));
    const cleanup: Array<() => Promise<void>> = [];
    if (!options.storage) cleanup.push(() => storage.close());
    try {
      const library = new FirmwareLibrary(storage, dataDir, () => clock.now(), {
        ...(options.firmwareDir !== undefined ? { firmwareDir: options.firmwareDir } : {}),
      });
      await library.checkShared();
      const choice = options.broker ?? { kind: "embedded" };
      // The admin token: the HTTP API's token and the password of the MQTT user mpota-admin.
      const ensured = ensureAdminToken(dataDir);
      // The command key signs every command to a device (devices hold its public half in CMD_KEYS).
      const keyRing = options.commandKey
        ? new CommandKeyRing(options.commandKey)
        : CommandKeyRing.load(dataDir);
      const commandKey = keyRing.current;
      for (const k of keyRing.trusted()) if (k.warning) logger.warn({ path: k.path }, k.warning);
      let broker: EmbeddedBroker | undefined;
      let connection: MqttConnection;
      if (choice.kind === "embedded") {
        const serverSecret = randomBytes(24).toString("base64url");
        const adminToken = new AdminToken(ensured.path);
        const access = new BrokerAccess({
          topics,
          haPrefix: options.homeAssistant?.prefix ?? DEFAULT_HA_PREFIX,
          serverSecret,
          adminTokenMatches: (candidate) => adminToken.matches(candidate),
          credential: (id) => storage.credentials.get(id),
          logger: logger.child({ feature: "broker" }),
        });
        broker = await EmbeddedBroker.start({
          host: choice.host ?? "0.0.0.0",
          port: choice.port ?? DEFAULT_MQTT_PORT,
          logger,
          access,
          ...(choice.tls ? { tls: choice.tls } : {}),
        });
        const b = broker;
        cleanup.push(() => b.close());
        connection = { url: broker.localUrl, username: SERVER_USERNAME, password: serverSecret };
      } else {
        connection = choice.connection;
      }
      const owner = options.instanceId ?? `${hostname()}:${process.pid}:${randomBytes(3).toString("hex")}`;
      const offline: BridgeStateMessage = { state: "offline" };
      const link = await MqttLink.connect(
        connection,
        {
          clientId: `mpota-server-${randomBytes(4).toString("hex")}`,
          timeoutMs: 10_000,
          reconnect: true,
          will: { topic: topics.bridgeState, payload: JSON.stringify(offline), retain: true, qos: 1 },
          ...(options.sharedGroup !== undefined ? { sharedGroup: options.sharedGroup } : {}),
        },
        logger,
      );
      cleanup.push(() => link.close());
      const pusher = options.key
        ? new ImagePusher({
            network: options.network ?? new NodeUdpNetwork(),
            key: options.key,
            block: options.block ?? DEFAULT_BLOCK_SIZE,
            clock: options.pushClock ?? systemClock,
            ...(options.pushTuning ? { tuning: options.pushTuning } : {}),
            ...(options.stallMs !== undefined ? { stallMs: options.stallMs } : {}),
            ...(options.signedImages ? { cache: options.signedImages } : {}),
          })
        : undefined;
      const runner: JobRunner = new JobRunner({
        storage,
        link,
        topics,
        library,
        policy,
        pusher,
        clock,
        logger: logger.child({ feature: "jobs" }),
        owner,
        timings: { ...DEFAULT_JOB_TIMINGS, ...options.timings },
        maxAttempts: options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS,
        maxConcurrentPushes: options.maxConcurrentPushes ?? DEFAULT_MAX_CONCURRENT_PUSHES,
        refreshState: (deviceId): Promise<boolean> => inbox.refreshState(deviceId),
        signer: new CommandSigner(storage, keyRing),
      });
      const keyRollout = new CommandKeyRollout({
        storage,
        keys: keyRing,
        publish: (deviceId, payload) =>
          link.publish(topics.device(deviceId, "cmd"), payload, { retain: true }),
        now: () => clock.now(),
        logger: logger.child({ feature: "command-keys" }),
      });
      const inbox = new DeviceInbox({
        link,
        topics,
        storage,
        listener: {
          handleState: async (device, state) => {
            await runner.handleState(device, state);
            await keyRollout.handleState(device.id, state);
          },
          handleStatus: (device, status) => runner.handleStatus(device, status),
          handleAck: (device, ack) => runner.handleAck(device, ack),
        },
        clock,
        logger: logger.child({ feature: "devices" }),
        historyLimit: options.historyLimit ?? DEFAULT_HISTORY_LIMIT,
        unavailableRetryMs: options.unavailableRetryMs ?? UNAVAILABLE_RETRY_MS,
      });
      const info: ServerInfo = {
        version: packageVersion(),
        base: topics.base,
        storage: storage.description,
        networks: [...policy.networks],
        keyBits: options.key?.bits ?? null,
        startedAt: clock.now(),
      };
      const rollouts = new RolloutEngine({
        storage,
        library,
        jobs: runner,
        link,
        topics,
        clock,
        logger: logger.child({ feature: "rollouts" }),
        owner,
        leaseMs: { ...DEFAULT_JOB_TIMINGS, ...options.timings }.leaseMs,
        pollMs: { ...DEFAULT_JOB_TIMINGS, ...options.timings }.pollMs,
        maxAttempts: options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS,
        ...(options.key
          ? {}
          : {
              refusal:
                "This server has no signing key, so it cannot push updates. Start it with --key FILE (the private key your devices' yaota8266 was built for).",
            }),
      });
      const embeddedHost = choice.kind === "embedded" ? (choice.host ?? "0.0.0.0") : undefined;
      const deviceBroker =
        broker !== undefined
          ? {
              host:
                embeddedHost === "0.0.0.0" || embeddedHost === "::" ? lanAddress() : (embeddedHost as string),
              port: broker.port,
            }
          : (() => {
              const u = new URL(connection.url);
              return { host: u.hostname, port: Number(u.port) || (u.protocol === "mqtts:" ? 8883 : 1883) };
            })();
      const provisioning: ProvisioningDeps = {
        storage,
        base: topics.base,
        commandKeys: () => keyRing.trusted().map((k) => ({ modulusHex: k.modulusHex, kid: k.kid })),
        broker: () => deviceBroker,
        now: () => clock.now(),
        credentialChanged: (id) => {
          if (broker?.disconnect(id))
            logger.info({ device: id }, "device disconnected: its credential changed");
        },
      };
      const heartbeatMs = options.heartbeatMs ?? DEFAULT_HEARTBEAT_MS;
      const status = () => statusView(storage, owner, heartbeatMs, clock.now());
      const bridge = new Bridge({
        link,
        topics,
        handlers: bridgeHandlers({
          storage,
          library,
          runner,
          rollouts,
          info: () => info,
          status,
          provisioning,
        }),
        logger: logger.child({ feature: "bridge" }),
        audit: storage.audit,
        now: () => clock.now(),
        trustCaller: broker !== undefined,
        infoTopics: { storage, info: () => info, settled: () => inbox.idle() },
      });
      const brokerUrl = broker ? broker.url : safeUrl(connection.url);
      const server = new MpotaServer(
        storage,
        library,
        link,
        topics,
        runner,
        inbox,
        bridge,
        broker,
        brokerUrl,
        connection,
        commandKey,
        keyRing,
        info,
        logger,
        !options.storage,
      );
      server.newAdminToken = ensured.created ? ensured.token : undefined;
      server.adminTokenPath = ensured.path;
      await runner.start();
      cleanup.push(() => runner.stop());
      await rollouts.start();
      cleanup.push(() => rollouts.stop());
      server.rollouts = rollouts;
      await inbox.start();
      await bridge.start();
      if (options.http) {
        const http = new HttpFeature(
          {
            storage,
            library,
            runner,
            rollouts,
            link,
            topics,
            inbox,
            info: () => info,
            provisioning,
            dataDir,
            logger: logger.child({ feature: "http" }),
          },
          options.http,
        );
        await http.start();
        cleanup.push(() => http.stop());
        server.http = http;
      }
      if (options.homeAssistant) {
        const ha = new HomeAssistantFeature(
          {
            link,
            topics,
            storage,
            inbox,
            handlers: auditedHandlers(bridgeHandlers({ storage, library, runner, info: () => info }), {
              audit: storage.audit,
              logger,
              now: () => clock.now(),
              actor: () => "home assistant install (mqtt)",
            }),
            version: info.version,
            logger: logger.child({ feature: "homeassistant" }),
          },
          options.homeAssistant,
        );
        await ha.start();
        cleanup.push(() => ha.stop());
        server.homeAssistant = ha;
      }
      const heartbeat = new InstanceHeartbeat({
        storage,
        id: owner,
        version: info.version,
        clock,
        logger: logger.child({ feature: "instances" }),
        intervalMs: heartbeatMs,
        http: () => server.http?.url ?? null,
        pushes: () => runner.activePushes,
      });
      await heartbeat.start();
      cleanup.push(() => heartbeat.stop());
      server.heartbeat = heartbeat;
      const online: BridgeStateMessage = { state: "online" };
      await link.publishJson(topics.bridgeState, online, { retain: true });
      if (options.sharedGroup !== undefined) {
        // Several instances share the bridge: when one of them goes (its last will
        // says "offline"), the others that are still here say "online" again.
        await link.subscribe(topics.bridgeState, readBridgeState, ({ payload }) => {
          if (server.stopped || payload.state === online.state) return;
          link.publishJson(topics.bridgeState, online, { retain: true }).catch(() => undefined);
        });
      }
      // After a lost connection the broker has published our last will (offline), and may have lost retained messages.
      link.client.on("connect", () => {
        logger.info("MQTT connection back");
        link.publishJson(topics.bridgeState, online, { retain: true }).catch(() => undefined);
        runner
          .republish()
          .catch((error: unknown) => logger.warn({ err: (error as Error).message }, "republish failed"));
        rollouts
          .republish()
          .catch((error: unknown) => logger.warn({ err: (error as Error).message }, "republish failed"));
      });
      logger.info(
        {
          broker: brokerUrl,
          embedded: broker !== undefined,
          storage: storage.description,
          base: topics.base,
          networks: policy.networks,
          key: options.key ? `${options.key.bits}-bit` : null,
        },
        "mpota server ready",
      );
      if (!options.key)
        logger.warn(
          "no signing key: devices are registered, but updates are refused until the server has --key",
        );
      return server;
    } catch (error) {
      for (const undo of cleanup.reverse()) await undo().catch(() => undefined);
      throw error;
    }
  }

  /** Stops features in reverse order; a push in flight is stopped and resumed by the next start. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.homeAssistant?.stop();
    await this.http?.stop();
    await this.bridge.stop();
    await this.rollouts?.stop();
    await this.inbox.stop();
    await this.runner.stop();
    await this.heartbeat?.stop();
    const offline: BridgeStateMessage = { state: "offline" };
    await Promise.race([
      this.link.publishJson(this.topics.bridgeState, offline, { retain: true }),
      new Promise((resolve) => setTimeout(resolve, 1000).unref()),
    ]).catch(() => undefined);
    await this.link.close();
    await this.broker?.close();
    if (this.ownsStorage) await this.storage.close();
    this.logger.info("mpota server stopped");
  }
}
