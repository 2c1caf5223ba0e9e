import { UsageError } from "../../errors.ts";
import type {
  BridgeApi,
  BridgeDeviceEntry,
  BridgeEnvelope,
  BridgeInfoMessage,
  BridgeRequestName,
  BridgeStateMessage,
  JobProgressMessage,
} from "../bridge/api.ts";
import type { RolloutProgressMessage } from "../rollouts/rollout-api.ts";
import type { DeviceAck, DeviceState, DeviceStatus, OtaCommand } from "./contract.ts";

export const DEFAULT_BASE_TOPIC = "mpota";

/**
 * Every MQTT topic mpota uses, with its payload type, who publishes it, and
 * whether it is retained. `<base>` is the base topic (default `mpota`),
 * `<id>` a device id, `<job>` a job id, `<name>` a {@link BridgeRequestName}.
 */
export interface TopicMap {
  /** Device contract v1 (docs/mqtt.md). */
  "<base>/<id>/state": { from: "device"; retained: true; payload: DeviceState };
  "<base>/<id>/status": { from: "device"; retained: true; payload: DeviceStatus };
  /** Empty payload clears it. */
  "<base>/<id>/cmd": { from: "server"; retained: true; payload: OtaCommand | "" };
  "<base>/<id>/ack": { from: "device"; retained: false; payload: DeviceAck };
  /** Server API. */
  "<base>/bridge/state": { from: "server"; retained: true; payload: BridgeStateMessage };
  "<base>/bridge/info": { from: "server"; retained: true; payload: BridgeInfoMessage };
  "<base>/bridge/devices": { from: "server"; retained: true; payload: BridgeDeviceEntry[] };
  "<base>/bridge/request/<name>": {
    from: "client";
    retained: false;
    payload: BridgeApi[BridgeRequestName]["request"] & { transaction?: string | number };
  };
  "<base>/bridge/response/<name>": {
    from: "server";
    retained: false;
    payload: BridgeEnvelope<BridgeApi[BridgeRequestName]["response"]>;
  };
  "<base>/bridge/jobs/<job>": { from: "server"; retained: true; payload: JobProgressMessage };
  "<base>/bridge/rollouts/<rollout>": { from: "server"; retained: true; payload: RolloutProgressMessage };
}

export type DeviceTopicKind = "state" | "status" | "cmd" | "ack";

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

  device(id: string, kind: DeviceTopicKind): string {
    return `${this.base}/${id}/${kind}`;
  }

  /** `<base>/+/<kind>`: one kind of message from every device. */
  allDevices(kind: DeviceTopicKind): string {
    return `${this.base}/+/${kind}`;
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

  get bridgeState(): string {
    return `${this.base}/bridge/state`;
  }

  get bridgeInfo(): string {
    return `${this.base}/bridge/info`;
  }

  get bridgeDevices(): string {
    return `${this.base}/bridge/devices`;
  }

  bridgeRequest(name: string): string {
    return `${this.base}/bridge/request/${name}`;
  }

  get allBridgeRequests(): string {
    return `${this.base}/bridge/request/#`;
  }

  /** The request name of a request topic (`firmware/add` from `<base>/bridge/request/firmware/add`). */
  parseBridgeRequest(topic: string): string | undefined {
    const prefix = `${this.base}/bridge/request/`;
    return topic.startsWith(prefix) && topic.length > prefix.length ? topic.slice(prefix.length) : undefined;
  }

  bridgeResponse(name: string): string {
    return `${this.base}/bridge/response/${name}`;
  }

  jobProgress(jobId: string): string {
    return `${this.base}/bridge/jobs/${jobId}`;
  }

  get allJobProgress(): string {
    return `${this.base}/bridge/jobs/+`;
  }

  rolloutProgress(rolloutId: string): string {
    return `${this.base}/bridge/rollouts/${rolloutId}`;
  }

  get allRolloutProgress(): string {
    return `${this.base}/bridge/rollouts/+`;
  }
}
