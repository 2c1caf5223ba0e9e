import { type Logger, pino } from "pino";
import type { PythonValue } from "../agent-host/agent-files.ts";
import { defaultAppKeyPath, loadAppKey } from "../apps/app-key.ts";
import { systemClock } from "../net/clock.ts";
import { NodeUdpNetwork } from "../net/node-udp.ts";
import { DEFAULT_BLOCK_SIZE } from "../protocol/datagram.ts";
import type { ServerInfo } from "./api/api.ts";
import type { Topics } from "./api/topics.ts";
import { type Feature, FeatureList } from "./base/features.ts";
import { Bridge, type BridgeHandlers } from "./bridge/bridge.ts";
import { type BridgeHandlerDeps, bridgeHandlers } from "./bridge/bridge-handlers.ts";
import { DEFAULT_HEARTBEAT_MS, InstanceHeartbeat, statusView } from "./cluster/instances.ts";
import { Presence } from "./cluster/presence.ts";
import { AppPullDelivery } from "./deliveries/app-pull.ts";
import { Deliveries, type Delivery } from "./deliveries/delivery.ts";
import { DeviceFetches } from "./deliveries/device-fetch.ts";
import { Esp32PullDelivery } from "./deliveries/esp32-pull.ts";
import { ImagePusher } from "./deliveries/image-pusher.ts";
import { UdpPushDelivery } from "./deliveries/udp-push.ts";
import { DEFAULT_HISTORY_LIMIT, DeviceInbox, UNAVAILABLE_RETRY_MS } from "./devices/device-inbox.ts";
import { DEFAULT_DEVICE_LIMITS } from "./devices/new-device-gate.ts";
import { HomeAssistantFeature } from "./homeassistant/homeassistant.ts";
import { DEFAULT_HTTP_HOST, DEFAULT_HTTP_PORT, HttpFeature } from "./http/http-feature.ts";
import { JobRunner } from "./jobs/job-runner.ts";
import { DEFAULT_MAX_CONCURRENT_PUSHES } from "./jobs/job-timings.ts";
import type { EmbeddedBroker } from "./mqtt/embedded-broker.ts";
import { type MqttConnection, safeUrl } from "./mqtt/mqtt-connect.ts";
import type { MqttLink } from "./mqtt/mqtt-link.ts";
import { readPullReport } from "./mqtt/topic-readers.ts";
import type { AppReleases } from "./releases/app-releases.ts";
import type { FirmwareLibrary } from "./releases/firmware-library.ts";
import { RolloutEngine } from "./rollouts/rollout-engine.ts";
import { heldByRolloutText, rolloutHolding } from "./rollouts/rollout-membership.ts";
import { type Core, openCore } from "./server-core.ts";
import type { ServerOptions } from "./server-options.ts";
import type { FirmwareRecord, Storage } from "./storage/storage.ts";
import { auditedHandlers } from "./trust/audit.ts";
import type { CommandKey } from "./trust/command-key.ts";
import type { CommandKeyRing } from "./trust/command-key-ring.ts";
import { CommandKeyRollout } from "./trust/command-key-rollout.ts";
import { CommandSigner } from "./trust/command-signer.ts";
import { lanAddress, type ProvisioningDeps } from "./trust/provisioning.ts";

/** The job core and what feeds it: device messages, rollouts, command keys. */
interface Fleet {
  runner: JobRunner;
  inbox: DeviceInbox;
  rollouts: RolloutEngine;
  /** How a release reaches a device (its delivery's name, whether the device fetches it). */
  deliveryOf: BridgeHandlerDeps["deliveryOf"];
}

/**
 * The update server's composition root: it builds storage, the broker
 * connection and the features (job runner, device inbox, rollouts, bridge
 * API, dashboard, Home Assistant, heartbeat, presence), passes each what it
 * needs (the release kinds and deliveries, the rollout checks the job core
 * asks), and holds them in one ordered list: started in order, stopped in
 * reverse. It holds no fleet state itself: everything is in storage, so
 * another instance on the same storage and broker sees the same fleet.
 */
export class MpotaServer {
  stopped = false;
  /** This instance's heartbeat in storage. */
  heartbeat: InstanceHeartbeat | undefined;
  /** The dashboard and HTTP API, when started with `http`. */
  http: HttpFeature | undefined;
  homeAssistant: HomeAssistantFeature | undefined;
  /** Staged rollouts (src/server/rollouts/). */
  rollouts: RolloutEngine | undefined;
  readonly storage: Storage;
  readonly library: FirmwareLibrary;
  readonly link: MqttLink;
  readonly topics: Topics;
  readonly runner: JobRunner;
  readonly inbox: DeviceInbox;
  /** The broker clients should use (credentials left out). */
  readonly brokerUrl: string;
  /** How this server itself connects to its broker (with its credential: keep it in the process). */
  readonly connection: MqttConnection;
  /** Signs the commands to devices; its public half is in every device's CMD_KEYS. */
  readonly commandKey: CommandKey;
  /** The command keys: the current one, and during a rotation the next. */
  readonly commandKeys: CommandKeyRing;
  readonly info: ServerInfo;
  /** The admin token when this start created it (shown once), else undefined. */
  readonly newAdminToken: string | undefined;
  /** Where the admin token is: the password of the MQTT user mpota-admin and the HTTP API's token. */
  readonly adminTokenPath: string;
  private readonly broker: EmbeddedBroker | undefined;
  private readonly logger: Logger;
  private readonly configuredDeviceUrl: string | undefined;

  private constructor(
    core: Core,
    fleet: Fleet,
    private readonly features: FeatureList,
  ) {
    this.storage = core.storage;
    this.library = core.library;
    this.link = core.link;
    this.topics = core.topics;
    this.broker = core.broker;
    this.logger = core.logger;
    this.configuredDeviceUrl = core.options.deviceUrl;
    this.brokerUrl = core.broker ? core.broker.url : safeUrl(core.connection.url);
    this.connection = core.connection;
    this.commandKeys = core.keyRing;
    this.commandKey = core.keyRing.current;
    this.info = core.info;
    this.newAdminToken = core.newAdminToken;
    this.adminTokenPath = core.adminTokenPath;
    this.runner = fleet.runner;
    this.inbox = fleet.inbox;
    this.rollouts = fleet.rollouts;
  }

  /** The mpota_config.py settings every provisioned device gets from this server (its command keys). */
  agentSettings(): Record<string, PythonValue> {
    return { CMD_KEYS: this.commandKeys.trusted().map((k) => k.modulusHex) };
  }

  /** The base URL devices fetch ESP32 images below (contract v3's pull), or undefined without an HTTP listener. */
  get deviceUrl(): string | undefined {
    if (!this.http) return undefined;
    return this.configuredDeviceUrl ?? defaultDeviceUrl(this.http);
  }

  /** The embedded broker (its listeners' addresses), unless the server uses an external one. */
  get embeddedBroker(): EmbeddedBroker | undefined {
    return this.broker;
  }

  static async start(options: ServerOptions = {}): Promise<MpotaServer> {
    const logger = options.logger ?? pino({ level: "info" });
    const features = new FeatureList(logger);
    try {
      const core = await openCore(options, logger, features);
      let built: MpotaServer | undefined;
      const fleet = await startFleet(core, features, () => built);
      const server = new MpotaServer(core, fleet, features);
      built = server;
      await startFrontEnds(core, fleet, server, features);
      logger.info(
        {
          broker: server.brokerUrl,
          embedded: core.broker !== undefined,
          storage: core.storage.description,
          base: core.topics.base,
          networks: core.policy.networks,
          key: options.key ? `${options.key.bits}-bit` : null,
        },
        "mpota server ready",
      );
      if (!options.key)
        logger.warn(
          `no signing key: ESP8266 firmware updates (the push to yaota8266) are refused until the server has --key; app and ESP32 updates, which the devices fetch over HTTP, do not need it${options.http ? "" : " (but this server has no HTTP listener)"}`,
        );
      return server;
    } catch (error) {
      await features.stop(true);
      throw error;
    }
  }

  /** Stops the features in reverse order; a push in flight is stopped and resumed by the next start. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.features.stop();
    this.logger.info("mpota server stopped");
  }
}

/**
 * The deliveries: the UDP push (unavailable without a signing key), the
 * ESP32 pull and the app pull (both unavailable without an HTTP listener),
 * and any the options add.
 */
function deliveriesOf(core: Core, fetching: readonly Delivery[]): Deliveries {
  const { options } = core;
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
  return new Deliveries([
    new UdpPushDelivery(pusher, core.timings.firstAnswerMs),
    ...fetching,
    ...(options.deliveries ?? []),
  ]);
}

/** The URL devices fetch from: --device-url, else the HTTP listener's address as a device on the LAN reaches it. */
export function defaultDeviceUrl(http: HttpFeature): string {
  return deviceUrlFor(http.address.address, http.address.port);
}

function deviceUrlFor(address: string, port: number): string {
  const host = address === "0.0.0.0" || address === "::" ? lanAddress() : address;
  return `http://${host.includes(":") ? `[${host}]` : host}:${port}`;
}

/**
 * The deliveries whose device fetches the release itself (an ESP32's image,
 * an app's files), following every device's reports on `ack` (every
 * instance subscribes: the one delivering hears them).
 */
async function fetchingDeliveriesOf(core: Core, http: () => HttpFeature | undefined): Promise<Delivery[]> {
  const { options, link, topics, clock } = core;
  const fetches = new DeviceFetches(clock, options.pullStallMs);
  const o = {
    available: options.http !== undefined,
    // Jobs start before the HTTP listener: until it listens, its address comes from the options.
    deviceUrl: () => {
      if (!options.http) return undefined;
      if (options.deviceUrl !== undefined) return options.deviceUrl;
      const listener = http();
      if (listener) return defaultDeviceUrl(listener);
      const port = options.http.port ?? DEFAULT_HTTP_PORT;
      return port === 0 ? undefined : deviceUrlFor(options.http.host ?? DEFAULT_HTTP_HOST, port);
    },
    fetches,
  };
  await link.subscribe(topics.allDevices("ack"), readPullReport, (m) => {
    const device = topics.parseDevice(m.topic);
    if (device) fetches.report(device.id, m.payload);
  });
  return [new Esp32PullDelivery(o), new AppPullDelivery(o)];
}

/** The job runner, the device inbox and the rollout engine, started in that order. */
async function startFleet(
  core: Core,
  features: FeatureList,
  server: () => MpotaServer | undefined,
): Promise<Fleet> {
  const { options, storage, link, topics, clock, logger, keyRing, owner, timings } = core;
  const deliveries = deliveriesOf(core, await fetchingDeliveriesOf(core, () => server()?.http));
  // How a release reaches a device, from its record (the default kind's for a release not stored).
  const deliveryOf = (release: FirmwareRecord | undefined) => {
    const delivery = core.library.kinds.of(release).delivery;
    try {
      return { delivery, fetchedByDevice: deliveries.get(delivery).fetchedByDevice === true };
    } catch {
      return { delivery, fetchedByDevice: false }; // this server lacks it: its jobs fail saying so
    }
  };
  const runner: JobRunner = new JobRunner({
    storage,
    link,
    topics,
    library: core.library,
    policy: core.policy,
    deliveries,
    rolloutHold: async (deviceId) => {
      const hold = await rolloutHolding(storage, deviceId);
      return hold ? heldByRolloutText(deviceId, hold) : undefined;
    },
    clock,
    logger: logger.child({ feature: "jobs" }),
    owner,
    timings,
    maxAttempts: core.maxAttempts,
    maxConcurrentPushes: options.maxConcurrentPushes ?? DEFAULT_MAX_CONCURRENT_PUSHES,
    refreshState: (deviceId): Promise<boolean> => inbox.refreshState(deviceId),
    signer: new CommandSigner(storage, keyRing),
    // Called only once the runner has started, which is after `rollouts` below is made.
    onJobEnded: () => rollouts.jobEnded(),
    // A new embedded broker holds no retained progress of jobs that ended before it started.
    ...(core.broker !== undefined ? { progressClearedBefore: clock.now() - timings.progressKeptMs } : {}),
  });
  const keyRollout = new CommandKeyRollout({
    storage,
    keys: keyRing,
    publish: (deviceId, payload) => link.publish(topics.device(deviceId, "cmd"), payload, { retain: true }),
    now: () => clock.now(),
    logger: logger.child({ feature: "command-keys" }),
  });
  const inbox = new DeviceInbox({
    link,
    topics,
    storage,
    listener: {
      handleState: async (device, state, receivedAt) => {
        await runner.handleState(device, state, receivedAt);
        await keyRollout.handleState(device.id, state);
      },
      handleStatus: (device, status) => runner.handleStatus(device, status),
      handleAck: (device, ack) => runner.handleAck(device, ack),
    },
    clock,
    logger: logger.child({ feature: "devices" }),
    historyLimit: options.historyLimit ?? DEFAULT_HISTORY_LIMIT,
    unavailableRetryMs: options.unavailableRetryMs ?? UNAVAILABLE_RETRY_MS,
    limits: { ...DEFAULT_DEVICE_LIMITS, ...options.deviceLimits },
  });
  const rollouts = new RolloutEngine({
    storage,
    library: core.library,
    jobs: runner,
    link,
    topics,
    clock,
    logger: logger.child({ feature: "rollouts" }),
    owner,
    leaseMs: timings.leaseMs,
    pollMs: timings.pollMs,
    maxAttempts: core.maxAttempts,
    deliveryOf,
    refusal: (release) => {
      if (!release) return deliveries.noneAvailable;
      try {
        return deliveries.get(core.library.kinds.of(release).delivery).unavailable?.request;
      } catch (error) {
        return (error as Error).message;
      }
    },
  });
  await features.start(feature("jobs", runner));
  await features.start(feature("devices", inbox));
  await features.start(feature("rollouts", rollouts));
  return { runner, inbox, rollouts, deliveryOf };
}

/** A named feature over an object with start() and stop(). */
function feature(name: string, part: { start(): Promise<void>; stop(): Promise<void> }): Feature {
  return { name, start: () => part.start(), stop: () => part.stop() };
}

/** The address devices reach the broker at (written into their settings when provisioned). */
function deviceBroker(core: Core): { host: string; port: number } {
  const choice = core.options.broker ?? { kind: "embedded" };
  if (core.broker !== undefined && choice.kind === "embedded") {
    const host = choice.host ?? "0.0.0.0";
    return { host: host === "0.0.0.0" || host === "::" ? lanAddress() : host, port: core.broker.port };
  }
  const u = new URL(core.connection.url);
  return { host: u.hostname, port: Number(u.port) || (u.protocol === "mqtts:" ? 8883 : 1883) };
}

/** Device credentials, command keys and the audit list, for the bridge and the HTTP API. */
function provisioningOf(core: Core): ProvisioningDeps {
  const { storage, topics, clock, logger, broker } = core;
  const address = deviceBroker(core);
  return {
    storage,
    base: topics.base,
    commandKeys: () => core.keyRing.trusted().map((k) => ({ modulusHex: k.modulusHex, kid: k.kid })),
    // The key `mpota app add` signs with unless --key names another; made here if missing, as there.
    appKeys: () => [loadAppKey(defaultAppKeyPath(core.dataDir), { create: true }).modulusHex],
    broker: () => address,
    now: () => clock.now(),
    credentialChanged: (id) => {
      if (broker?.disconnect(id)) logger.info({ device: id }, "device disconnected: its credential changed");
    },
  };
}

/** Home Assistant's update entities, installing through the shared handlers (audited as Home Assistant). */
function homeAssistantOf(
  core: Core,
  inbox: DeviceInbox,
  handlers: BridgeHandlers,
  apps: AppReleases,
): HomeAssistantFeature {
  const { storage, link, topics, clock, logger } = core;
  return new HomeAssistantFeature(
    {
      link,
      topics,
      storage,
      inbox,
      handlers: auditedHandlers(handlers, {
        audit: storage.audit,
        logger,
        now: () => clock.now(),
        actor: () => "home assistant install (mqtt)",
      }),
      kinds: core.library.kinds,
      version: core.info.version,
      logger: logger.child({ feature: "homeassistant" }),
      apps,
    },
    core.options.homeAssistant,
  );
}

/** The bridge API, the dashboard, Home Assistant, the heartbeat and the presence, over one set of handlers. */
async function startFrontEnds(core: Core, fleet: Fleet, server: MpotaServer, features: FeatureList) {
  const { options, storage, link, topics, clock, logger, library } = core;
  const { runner, inbox, rollouts, deliveryOf } = fleet;
  const provisioning = provisioningOf(core);
  const heartbeatMs = options.heartbeatMs ?? DEFAULT_HEARTBEAT_MS;
  const info = () => core.info;
  const status = () => statusView(storage, core.owner, heartbeatMs, clock.now());
  // One set of handlers for the bridge, the HTTP API and Home Assistant.
  const apps = core.apps;
  const handlers = bridgeHandlers({
    storage,
    library,
    runner,
    deliveryOf,
    rollouts,
    info,
    status,
    provisioning,
    apps,
  });
  const bridge = new Bridge({
    link,
    topics,
    handlers,
    logger: logger.child({ feature: "bridge" }),
    audit: storage.audit,
    now: () => clock.now(),
    trustCaller: core.broker !== undefined,
    infoTopics: { storage, info, settled: () => inbox.idle() },
  });
  await features.start(feature("bridge", bridge));
  if (options.http) {
    const deps = { storage, library, runner, rollouts, link, topics, inbox, info, provisioning, handlers };
    const http = new HttpFeature(
      { ...deps, dataDir: core.dataDir, logger: logger.child({ feature: "http" }) },
      options.http,
    );
    await features.start(feature("http", http));
    server.http = http;
  }
  if (options.homeAssistant) {
    server.homeAssistant = homeAssistantOf(core, inbox, handlers, apps);
    await features.start(feature("homeassistant", server.homeAssistant));
  }
  server.heartbeat = new InstanceHeartbeat({
    storage,
    id: core.owner,
    version: core.info.version,
    clock,
    logger: logger.child({ feature: "instances" }),
    intervalMs: heartbeatMs,
    http: () => server.http?.url ?? null,
    pushes: () => runner.activePushes,
  });
  await features.start(feature("instances", server.heartbeat));
  await features.start(
    new Presence({
      link,
      topics,
      logger,
      shared: options.sharedGroup !== undefined,
      republish: [() => runner.republish(), () => rollouts.republish()],
    }),
  );
}
