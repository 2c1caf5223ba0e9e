import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import type { Logger } from "pino";
import type { Clock } from "../net/clock.ts";
import { wallClock } from "../net/wall-clock.ts";
import type { ServerInfo } from "./api/api.ts";
import { DEFAULT_BASE_TOPIC, Topics } from "./api/topics.ts";
import { type FeatureList, running } from "./base/features.ts";
import { offlineWill } from "./cluster/presence.ts";
import { DEFAULT_ALLOWED_NETWORKS, NetworkPolicy } from "./devices/network-policy.ts";
import { DEFAULT_HA_PREFIX } from "./homeassistant/homeassistant.ts";
import { AdminToken, ensureAdminToken } from "./http/admin-token.ts";
import { DEFAULT_JOB_TIMINGS, DEFAULT_MAX_ATTEMPTS, type JobTimings } from "./jobs/job-timings.ts";
import { BrokerAccess } from "./mqtt/broker-access.ts";
import { DEFAULT_MQTT_PORT, EmbeddedBroker } from "./mqtt/embedded-broker.ts";
import type { MqttConnection } from "./mqtt/mqtt-connect.ts";
import { MqttLink } from "./mqtt/mqtt-link.ts";
import { SERVER_USERNAME } from "./mqtt/principals.ts";
import { AppFiles } from "./releases/app-files.ts";
import { appKind } from "./releases/app-kind.ts";
import { AppReleases } from "./releases/app-releases.ts";
import { esp32AppKind } from "./releases/esp32-app-kind.ts";
import { esp8266OtaKind } from "./releases/esp8266-ota-kind.ts";
import { FirmwareLibrary } from "./releases/firmware-library.ts";
import { ReleaseKinds } from "./releases/release-kind.ts";
import { rolloutsTargeting, targetOfRolloutsText } from "./rollouts/rollout-membership.ts";
import { DEFAULT_DATA_DIR, type ServerOptions } from "./server-options.ts";
import { openStorage } from "./storage/open-storage.ts";
import type { FirmwareRecord, Storage } from "./storage/storage.ts";
import { CommandKeyRing } from "./trust/command-key-ring.ts";

/**
 * The first half of the composition root (server.ts): what every feature
 * is built over, opened in order and each registered in the feature list
 * as it opens, so a failed start closes what was opened.
 */

export function packageVersion(): string {
  try {
    return (
      JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string }
    ).version;
  } catch {
    return "unknown";
  }
}

/** What every feature is built over: the store, the broker connection and the settings. */
export interface Core {
  options: ServerOptions;
  logger: Logger;
  clock: Clock;
  topics: Topics;
  policy: NetworkPolicy;
  dataDir: string;
  timings: JobTimings;
  maxAttempts: number;
  storage: Storage;
  library: FirmwareLibrary;
  apps: AppReleases;
  keyRing: CommandKeyRing;
  adminTokenPath: string;
  newAdminToken: string | undefined;
  broker: EmbeddedBroker | undefined;
  connection: MqttConnection;
  link: MqttLink;
  /** This instance's name in leases. */
  owner: string;
  info: ServerInfo;
}

/** Storage, the release store, the keys, the broker and the server's connection to it. */
export async function openCore(options: ServerOptions, logger: Logger, features: FeatureList): Promise<Core> {
  const clock = options.clock ?? wallClock;
  const topics = new Topics(options.base ?? DEFAULT_BASE_TOPIC);
  const dataDir = options.dataDir ?? DEFAULT_DATA_DIR;
  const storage =
    options.storage ??
    (await openStorage({
      db: options.db,
      dataDir,
      ...(options.dbWaitMs !== undefined ? { startRetryMs: options.dbWaitMs } : {}),
    }));
  if (!options.storage) await features.start(running("storage", () => storage.close()));
  const library = new FirmwareLibrary(storage, dataDir, () => clock.now(), {
    ...(options.firmwareDir !== undefined ? { firmwareDir: options.firmwareDir } : {}),
    kinds: new ReleaseKinds([esp8266OtaKind, esp32AppKind, appKind, ...(options.releaseKinds ?? [])]),
    rolloutsTargeting: async (id, what) => {
      const rollouts = await rolloutsTargeting(storage, id);
      return rollouts.length > 0 ? targetOfRolloutsText(what, rollouts) : undefined;
    },
    // An update or rollout may name an app `mpota app add` stored beside the server.
    takeIn: (ref): Promise<FirmwareRecord | undefined> => apps.takeIn(ref),
  });
  const apps: AppReleases = new AppReleases(library, dataDir, new AppFiles(dataDir, storage.images));
  await library.checkShared();
  // The admin token: the HTTP API's token and the password of the MQTT user mpota-admin.
  const ensured = ensureAdminToken(dataDir);
  // The command key signs every command to a device (devices hold its public half in CMD_KEYS).
  const keyRing = options.commandKey ? new CommandKeyRing(options.commandKey) : CommandKeyRing.load(dataDir);
  for (const k of keyRing.trusted()) if (k.warning) logger.warn({ path: k.path }, k.warning);
  const { broker, connection } = await startBroker(
    options,
    topics,
    storage,
    ensured.path,
    logger,
    features,
    clock,
  );
  const link = await MqttLink.connect(
    connection,
    {
      clientId: `mpota-server-${randomBytes(4).toString("hex")}`,
      timeoutMs: 10_000,
      reconnect: true,
      will: offlineWill(topics),
      ...(options.sharedGroup !== undefined ? { sharedGroup: options.sharedGroup } : {}),
    },
    logger,
  );
  await features.start(running("mqtt", () => link.close()));
  const policy = new NetworkPolicy(options.allowNetworks ?? DEFAULT_ALLOWED_NETWORKS);
  return {
    options,
    logger,
    clock,
    topics,
    policy,
    dataDir,
    timings: { ...DEFAULT_JOB_TIMINGS, ...options.timings },
    maxAttempts: options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS,
    storage,
    library,
    apps,
    keyRing,
    adminTokenPath: ensured.path,
    newAdminToken: ensured.created ? ensured.token : undefined,
    broker,
    connection,
    link,
    owner: options.instanceId ?? `${hostname()}:${process.pid}:${randomBytes(3).toString("hex")}`,
    info: {
      version: packageVersion(),
      base: topics.base,
      storage: storage.description,
      networks: [...policy.networks],
      keyBits: options.key?.bits ?? null,
      startedAt: clock.now(),
    },
  };
}

/** The embedded broker (with its access rules) when chosen, and how this server connects. */
async function startBroker(
  options: ServerOptions,
  topics: Topics,
  storage: Storage,
  adminTokenPath: string,
  logger: Logger,
  features: FeatureList,
  clock: Clock,
): Promise<{ broker: EmbeddedBroker | undefined; connection: MqttConnection }> {
  const choice = options.broker ?? { kind: "embedded" };
  if (choice.kind === "external") return { broker: undefined, connection: choice.connection };
  const serverSecret = randomBytes(24).toString("base64url");
  const adminToken = new AdminToken(adminTokenPath);
  const access = new BrokerAccess({
    topics,
    haPrefix: options.homeAssistant?.prefix ?? DEFAULT_HA_PREFIX,
    serverSecret,
    adminTokenMatches: (candidate) => adminToken.matches(candidate),
    credential: (id) => storage.credentials.get(id),
    logger: logger.child({ feature: "broker" }),
  });
  const broker = await EmbeddedBroker.start({
    host: choice.host ?? "0.0.0.0",
    port: choice.port ?? DEFAULT_MQTT_PORT,
    logger,
    access,
    ...(choice.tls ? { tls: choice.tls } : {}),
    ...(choice.limits ? { limits: choice.limits } : {}),
  });
  await features.start(running("broker", () => broker.close()));
  // A new embedded broker holds no sessions and no retained messages, and the
  // wills of the devices connected to the old one died with it: those stored
  // as online are not, until they connect again (the devices inbox is not
  // subscribed yet, so a device that connects meanwhile is seen after this).
  const offline = await storage.devices.markOnlineOffline(clock.now());
  if (offline > 0)
    logger.info(
      { devices: offline },
      "devices stored as online are offline until they connect to this broker",
    );
  return { broker, connection: { url: broker.localUrl, username: SERVER_USERNAME, password: serverSecret } };
}
