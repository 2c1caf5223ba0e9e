// Checks `mpota serve`'s options and turns them into what MpotaServer.start takes.
import { UsageError } from "../errors.ts";
import { isLoopbackHost } from "../net/listen-addresses.ts";
import { PULL_URL_PATTERN } from "../protocol/command-signature.ts";
import { checkBlockSize } from "../protocol/datagram.ts";
import { checkBaseTopic } from "../server/api/topics.ts";
import { DEFAULT_ALLOWED_NETWORKS, NetworkPolicy } from "../server/devices/network-policy.ts";
import { DEVICE_FIRMWARE_PREFIX } from "../server/http/device-firmware-route.ts";
import { DEFAULT_HTTP_HOST } from "../server/http/http-feature.ts";
import { type JobTimings, MAX_CONCURRENT_PUSHES as MAX_PUSHES } from "../server/jobs/job-timings.ts";
import { DEFAULT_MQTT_PORT } from "../server/mqtt/embedded-broker.ts";
import type { BrokerChoice } from "../server/server-options.ts";
import { tuningWithWindow } from "../transfer/sender.ts";
import { brokerTlsRequest } from "./broker-tls-request.ts";
import { httpLimitOptions, httpWanted } from "./http-limit-options.ts";
import { mqttConnection } from "./mqtt-options.ts";
import { brokerLimitOptions, deviceLimitOptions } from "./serve-limit-options.ts";
import { LOG_LEVELS, type ServeOptions } from "./serve-options.ts";
import { sharedGroupOf } from "./shared-group.ts";

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
  const pushTuning =
    options.pushWindow !== undefined ? tuningWithWindow(options.pushWindow, "--push-window") : undefined;
  checkBaseTopic(options.base);
  const allowNetworks =
    options.allowNet && options.allowNet.length > 0 ? options.allowNet : DEFAULT_ALLOWED_NETWORKS;
  new NetworkPolicy(allowNetworks); // fails early on a bad CIDR
  const brokerLimits = brokerLimitOptions(options);
  const deviceLimits = deviceLimitOptions(options);
  const broker: BrokerChoice =
    options.mqtt !== undefined
      ? { kind: "external", connection: mqttConnection(options, options.mqtt) }
      : {
          kind: "embedded",
          host: options.mqttHost ?? "0.0.0.0",
          port: options.mqttPort ?? DEFAULT_MQTT_PORT,
          ...(brokerLimits ? { limits: brokerLimits } : {}),
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
  const deviceUrl = deviceUrlOf(options);
  return {
    broker,
    allowNetworks,
    timings,
    sharedGroup,
    brokerTls,
    httpLimits,
    deviceLimits,
    deviceUrl,
    pushTuning,
  };
}

/** --device-url: an http(s) URL short enough that `<url>/device/firmware/<fw>` fits a signed pull command. */
function deviceUrlOf(options: ServeOptions): string | undefined {
  if (options.deviceUrl === undefined) return undefined;
  if (!httpWanted(options)) {
    throw new UsageError(
      "--device-url names where devices reach the HTTP API, but --no-http turns that off. Leave out one of them.",
    );
  }
  const url = options.deviceUrl.replace(/\/+$/, "");
  let parsed: URL | undefined;
  try {
    parsed = new URL(url);
  } catch {
    parsed = undefined;
  }
  const example = `${url}${DEVICE_FIRMWARE_PREFIX}${"0".repeat(32)}`;
  if (
    !parsed ||
    !/^https?:$/.test(parsed.protocol) ||
    parsed.search !== "" ||
    parsed.hash !== "" ||
    !PULL_URL_PATTERN.test(example)
  ) {
    throw new UsageError(
      `--device-url ${JSON.stringify(options.deviceUrl.slice(0, 80))} is not usable: give an http:// or https:// URL without spaces, commas, query or fragment, short enough that ${DEVICE_FIRMWARE_PREFIX}<fw> fits 240 characters after the scheme (http://192.168.1.10:8080).`,
    );
  }
  return url;
}
