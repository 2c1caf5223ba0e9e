import { UsageError } from "../../errors.ts";
import type { SignedCommand } from "../../protocol/command-signature.ts";
import type { DeviceAck, DeviceState, DeviceStatus } from "../../protocol/mqtt-contract.ts";
import type {
  BridgeApi,
  BridgeDeviceEntry,
  BridgeEnvelope,
  BridgeInfoMessage,
  BridgeRequestName,
  BridgeStateMessage,
  JobProgressMessage,
} from "./api.ts";
import type { HaUpdateConfig, HaUpdateState } from "./ha-entity.ts";
import type { RolloutProgressMessage } from "./rollout-api.ts";

export const DEFAULT_BASE_TOPIC = "mpota";

/**
 * Every MQTT topic of mpota's contract, with its payload type, who publishes
 * it, and whether it is retained. `<base>` is the base topic (default
 * `mpota`), `<id>` a device id, `<job>` a job id, `<name>` a
 * {@link BridgeRequestName}. {@link Topics} builds the topics with these
 * payload types, so {@link MqttLink}'s publish and subscribe calls check
 * payloads at compile time.
 */
export interface TopicMap {
  /** Device contract (docs/mqtt.md). An empty state or status clears it: the device was taken out of service. */
  "<base>/<id>/state": { from: "device"; retained: true; payload: DeviceState | "" };
  "<base>/<id>/status": { from: "device"; retained: true; payload: DeviceStatus | "" };
  /** A signed command (contract v2); an empty payload clears it. */
  "<base>/<id>/cmd": { from: "server"; retained: true; payload: SignedCommand | "" };
  "<base>/<id>/ack": { from: "device"; retained: false; payload: DeviceAck };
  /** Server API. */
  "<base>/bridge/state": { from: "server"; retained: true; payload: BridgeStateMessage };
  "<base>/bridge/info": { from: "server"; retained: true; payload: BridgeInfoMessage };
  "<base>/bridge/devices": { from: "server"; retained: true; payload: BridgeDeviceEntry[] };
  "<base>/bridge/request/<name>": { from: "client"; retained: false; payload: BridgeRequest };
  "<base>/bridge/response/<name>": { from: "server"; retained: false; payload: BridgeResponse };
  /** "" once the job ended long enough ago (JobTimings.progressKeptMs): the retained message is cleared. */
  "<base>/bridge/jobs/<job>": { from: "server"; retained: true; payload: JobProgressMessage | "" };
  "<base>/bridge/rollouts/<rollout>": { from: "server"; retained: true; payload: RolloutProgressMessage };
  /** Home Assistant's MQTT update entity per device; `<ha>` is its discovery prefix (default `homeassistant`). */
  "<ha>/update/<id>/config": { from: "server"; retained: true; payload: HaUpdateConfig | "" };
  "<base>/bridge/homeassistant/<id>/state": { from: "server"; retained: true; payload: HaUpdateState | "" };
  "<base>/bridge/homeassistant/<id>/install": { from: "homeassistant"; retained: false; payload: string };
  /** The second update entity of a device that reports an app (docs/app-updates.md). */
  "<ha>/update/<id>/app/config": { from: "server"; retained: true; payload: HaUpdateConfig | "" };
  "<base>/bridge/homeassistant/<id>/app/state": {
    from: "server";
    retained: true;
    payload: HaUpdateState | "";
  };
  "<base>/bridge/homeassistant/<id>/app/install": { from: "homeassistant"; retained: false; payload: string };
  /** Home Assistant's birth and last will: `online`, `offline`. */
  "<ha>/status": { from: "homeassistant"; retained: true; payload: string };
}

/**
 * What a bridge request carries: a JSON object, read as such (each request's
 * handler checks its fields, {@link BridgeApi} says which; a string or number
 * `transaction` comes back in the reply).
 */
export type BridgeRequest = Record<string, unknown>;
/** Every bridge reply is an envelope `{status, data, error, transaction}`. */
export type BridgeResponse = BridgeEnvelope<BridgeApi[BridgeRequestName]["response"] | Record<string, never>>;

/** The payload type of a topic of the {@link TopicMap}. */
export type PayloadOf<K extends keyof TopicMap> = TopicMap[K]["payload"];

declare const carries: unique symbol;
declare const encodes: unique symbol;

/**
 * A topic name or filter whose messages carry `P`: a plain string at run
 * time; at compile time it ties the publish and subscribe calls to `P`.
 * Only the builders of {@link Topics} make them.
 */
export type Topic<P> = string & { readonly [carries]: P };

/** The JSON text of a `P`, for payloads encoded ahead of the publish (a signed command, kept to republish). */
export type Json<P> = string & { readonly [encodes]: P };

/** Encodes `value` as the JSON text its topic carries (the same bytes as `JSON.stringify`). */
export function toJson<P>(value: P): Json<P> {
  return JSON.stringify(value) as Json<P>;
}

/** The payload types of a device's four topics, by kind. */
export interface DeviceTopicPayloads {
  state: PayloadOf<"<base>/<id>/state">;
  status: PayloadOf<"<base>/<id>/status">;
  cmd: PayloadOf<"<base>/<id>/cmd">;
  ack: PayloadOf<"<base>/<id>/ack">;
}

function topic<K extends keyof TopicMap>(name: string): Topic<PayloadOf<K>> {
  return name as Topic<PayloadOf<K>>;
}

export type DeviceTopicKind = keyof DeviceTopicPayloads;

const BASE_PATTERN = /^[A-Za-z0-9_-]+(\/[A-Za-z0-9_-]+)*$/;

/** Checks a base topic: levels of letters, digits, "_" and "-", no wildcards. */
export function checkBaseTopic(base: string): string {
  if (!BASE_PATTERN.test(base)) {
    throw new UsageError(
      `"${base}" cannot be the base topic: use one or more levels of letters, digits, "_" and "-" separated by "/" (default ${DEFAULT_BASE_TOPIC}), the same as the devices' agents use.`,
    );
  }
  return base;
}

/** Builds and recognises the topics of one base. */
export class Topics {
  private readonly levels: number;

  constructor(readonly base: string = DEFAULT_BASE_TOPIC) {
    checkBaseTopic(base);
    this.levels = base.split("/").length;
  }

  device<K extends DeviceTopicKind>(id: string, kind: K): Topic<DeviceTopicPayloads[K]> {
    return `${this.base}/${id}/${kind}` as Topic<DeviceTopicPayloads[K]>;
  }

  /** `<base>/+/<kind>`: one kind of message from every device. */
  allDevices<K extends DeviceTopicKind>(kind: K): Topic<DeviceTopicPayloads[K]> {
    return `${this.base}/+/${kind}` as Topic<DeviceTopicPayloads[K]>;
  }

  /** Splits `<base>/<id>/<kind>`; the id is returned as it is (callers validate it). */
  parseDevice(topic: string): { id: string; kind: DeviceTopicKind } | undefined {
    const parts = topic.split("/");
    if (parts.length !== this.levels + 2 || parts.slice(0, this.levels).join("/") !== this.base)
      return undefined;
    const kind = parts[this.levels + 1] as DeviceTopicKind;
    if (!["state", "status", "cmd", "ack"].includes(kind)) return undefined;
    return { id: parts[this.levels] as string, kind };
  }

  get bridgeState(): Topic<BridgeStateMessage> {
    return topic<"<base>/bridge/state">(`${this.base}/bridge/state`);
  }

  get bridgeInfo(): Topic<BridgeInfoMessage> {
    return topic<"<base>/bridge/info">(`${this.base}/bridge/info`);
  }

  get bridgeDevices(): Topic<BridgeDeviceEntry[]> {
    return topic<"<base>/bridge/devices">(`${this.base}/bridge/devices`);
  }

  bridgeRequest(name: string): Topic<BridgeRequest> {
    return topic<"<base>/bridge/request/<name>">(`${this.base}/bridge/request/${name}`);
  }

  get allBridgeRequests(): Topic<BridgeRequest> {
    return topic<"<base>/bridge/request/<name>">(`${this.base}/bridge/request/#`);
  }

  /** The request name of a request topic (`firmware/add` from `<base>/bridge/request/firmware/add`). */
  parseBridgeRequest(topic: string): string | undefined {
    const prefix = `${this.base}/bridge/request/`;
    return topic.startsWith(prefix) && topic.length > prefix.length ? topic.slice(prefix.length) : undefined;
  }

  bridgeResponse(name: string): Topic<BridgeResponse> {
    return topic<"<base>/bridge/response/<name>">(`${this.base}/bridge/response/${name}`);
  }

  /** `<base>/bridge/response/<group>/+`: the replies to one group of requests (`firmware`, `rollout`). */
  bridgeResponses(group: string): Topic<BridgeResponse> {
    return topic<"<base>/bridge/response/<name>">(`${this.base}/bridge/response/${group}/+`);
  }

  jobProgress(jobId: string): Topic<JobProgressMessage | ""> {
    return topic<"<base>/bridge/jobs/<job>">(`${this.base}/bridge/jobs/${jobId}`);
  }

  get allJobProgress(): Topic<JobProgressMessage | ""> {
    return topic<"<base>/bridge/jobs/<job>">(`${this.base}/bridge/jobs/+`);
  }

  rolloutProgress(rolloutId: string): Topic<RolloutProgressMessage> {
    return topic<"<base>/bridge/rollouts/<rollout>">(`${this.base}/bridge/rollouts/${rolloutId}`);
  }

  get allRolloutProgress(): Topic<RolloutProgressMessage> {
    return topic<"<base>/bridge/rollouts/<rollout>">(`${this.base}/bridge/rollouts/+`);
  }

  /** Home Assistant's discovery config of a device's update entity, under its `prefix`. */
  haConfig(prefix: string, id: string): Topic<PayloadOf<"<ha>/update/<id>/config">> {
    return topic<"<ha>/update/<id>/config">(`${prefix}/update/${id}/config`);
  }

  haStatus(prefix: string): Topic<PayloadOf<"<ha>/status">> {
    return topic<"<ha>/status">(`${prefix}/status`);
  }

  haState(id: string): Topic<PayloadOf<"<base>/bridge/homeassistant/<id>/state">> {
    return topic<"<base>/bridge/homeassistant/<id>/state">(`${this.base}/bridge/homeassistant/${id}/state`);
  }

  haInstall(id: string): Topic<PayloadOf<"<base>/bridge/homeassistant/<id>/install">> {
    return topic<"<base>/bridge/homeassistant/<id>/install">(
      `${this.base}/bridge/homeassistant/${id}/install`,
    );
  }

  /** The app entity's discovery config: node id the device, object id `app`. */
  haAppConfig(prefix: string, id: string): Topic<PayloadOf<"<ha>/update/<id>/app/config">> {
    return topic<"<ha>/update/<id>/app/config">(`${prefix}/update/${id}/app/config`);
  }

  haAppState(id: string): Topic<PayloadOf<"<base>/bridge/homeassistant/<id>/app/state">> {
    return topic<"<base>/bridge/homeassistant/<id>/app/state">(
      `${this.base}/bridge/homeassistant/${id}/app/state`,
    );
  }

  haAppInstall(id: string): Topic<PayloadOf<"<base>/bridge/homeassistant/<id>/app/install">> {
    return topic<"<base>/bridge/homeassistant/<id>/app/install">(
      `${this.base}/bridge/homeassistant/${id}/app/install`,
    );
  }
}
