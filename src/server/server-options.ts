import type { Logger } from "pino";
import type { Clock } from "../net/clock.ts";
import type { UdpNetwork } from "../net/udp-channel.ts";
import type { SigningKey } from "../protocol/rsa-key.ts";
import type { PushTuning } from "../transfer/sender.ts";
import type { Delivery } from "./deliveries/delivery.ts";
import type { SignedImageCache } from "./deliveries/signed-image-cache.ts";
import type { DeviceLimits } from "./devices/new-device-gate.ts";
import type { HomeAssistantOptions } from "./homeassistant/homeassistant.ts";
import type { HttpOptions } from "./http/http-feature.ts";
import type { JobTimings } from "./jobs/job-timings.ts";
import type { BrokerLimits } from "./mqtt/broker-limits.ts";
import type { TlsListenOptions } from "./mqtt/broker-tls-listener.ts";
import type { MqttConnection } from "./mqtt/mqtt-connect.ts";
import type { ReleaseKind } from "./releases/release-kind.ts";
import type { Storage } from "./storage/storage.ts";
import type { CommandKey } from "./trust/command-key.ts";

export const DEFAULT_DATA_DIR = "./.mpota";

export type BrokerChoice =
  /** Start an Aedes broker in this process (default: 0.0.0.0:1883), with `tls` also mqtts (default 0.0.0.0:8883). */
  | {
      kind: "embedded";
      host?: string;
      port?: number;
      tls?: TlsListenOptions;
      /** Its bounds: packet size per principal, retained bytes (docs/limits.md). */
      limits?: Partial<BrokerLimits>;
    }
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
  /** How many devices the server registers, and how fast new ones (docs/limits.md). */
  deviceLimits?: Partial<DeviceLimits>;
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
  /**
   * The base URL devices reach the HTTP listener at, for the `url` of an
   * ESP32's pull command (default: http://<the HTTP host, or the first
   * non-internal IPv4 when it listens on all>:<port>).
   */
  deviceUrl?: string;
  /** An ESP32 pull with no progress report for this long has broken off (default 60 s). */
  pullStallMs?: number;
  /** Home Assistant MQTT discovery (off unless given). */
  homeAssistant?: HomeAssistantOptions;
  /**
   * Release kinds besides the ESP8266 yaota8266 image (the default kind),
   * and the deliveries they name besides the UDP push: how another kind of
   * update plugs in (docs/architecture.md, "Seams").
   */
  releaseKinds?: readonly ReleaseKind[];
  deliveries?: readonly Delivery[];
}
