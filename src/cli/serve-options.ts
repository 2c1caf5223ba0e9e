// The options of `mpota serve` and the log levels it accepts.
import type { MqttCliOptions } from "./mqtt-options.ts";

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
  pushWindow?: number;
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
  /** Embedded broker and device registry limits (docs/limits.md). */
  mqttMaxPacket?: number;
  mqttMaxRetained?: number;
  mqttMaxConnections?: number;
  maxDevices?: number;
  newDevicesPerMinute?: number;
  homeassistant?: boolean;
  haPrefix?: string;
  /** Where devices reach the HTTP API (an ESP32's pull command names a URL below it). */
  deviceUrl?: string;
  /** Where people reach the dashboard (links in Home Assistant). */
  publicUrl?: string;
}

export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];
