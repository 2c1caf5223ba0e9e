import {
  type DeviceAck,
  type DeviceState,
  type DeviceStatus,
  deviceIdProblem,
  isPullReport,
  type Parsed,
  type PullReport,
  parseAck,
  parseState,
  parseStatus,
  RESERVED_DEVICE_IDS,
} from "../../protocol/mqtt-contract.ts";
import type { BridgeStateMessage, JobProgressMessage } from "../api/api.ts";
import type { RolloutProgressMessage } from "../api/rollout-api.ts";
import type { BridgeResponse } from "../api/topics.ts";
import { type PayloadReader, type RawMessage, type Reading, serverJson } from "./payload-reader.ts";

/**
 * The readers of the {@link TopicMap}'s topics: the device contract's
 * validation for what devices send, and shape checks for what servers send.
 */

/** `<base>/<id>/<kind>`: the id is the level before the kind, whatever the base. */
function deviceIdOf(topic: string): string {
  return topic.split("/").at(-2) ?? "";
}

/**
 * A device message's id checked before its payload: `<base>/bridge/...` is
 * the server's own namespace (skipped), a bad id is refused with its own
 * log line.
 */
function fromDevice<P>(
  what: string,
  parse: (bytes: Buffer) => Parsed<P>,
  empty: (message: RawMessage) => Reading<P>,
  retained?: (message: RawMessage) => Reading<P> | undefined,
): PayloadReader<P> {
  return (message) => {
    const id = deviceIdOf(message.topic);
    if (RESERVED_DEVICE_IDS.has(id)) return null;
    const problem = deviceIdProblem(id);
    if (problem) return { ok: false, reason: problem, log: "device message ignored: bad device id" };
    const stale = message.retained ? retained?.(message) : undefined;
    if (stale !== undefined) return stale;
    if (message.bytes.length === 0) return empty(message);
    const parsed = parse(message.bytes);
    return parsed.ok ? parsed : { ok: false, reason: parsed.reason, log: `${what} ignored` };
  };
}

const skip = (): null => null;

/** A device's state, valid by the contract; a cleared (empty) state is skipped. */
export const readState: PayloadReader<DeviceState> = fromDevice("state", parseState, skip);

/** As {@link readState}, and a cleared state as "": the device was taken out of service. */
export const readStateOrCleared: PayloadReader<DeviceState | ""> = fromDevice<DeviceState | "">(
  "state",
  parseState,
  () => ({ ok: true, value: "", warnings: [] }),
);

/** A device's status, valid by the contract; an empty one is skipped. */
export const readStatus: PayloadReader<DeviceStatus> = fromDevice("status", parseStatus, skip);

/** A device's ack, valid by the contract. Acks are never retained: a retained one is stale and refused. */
export const readAck: PayloadReader<DeviceAck> = fromDevice<DeviceAck>(
  "ack",
  parseAck,
  (message) => {
    const parsed = parseAck(message.bytes);
    return parsed.ok ? parsed : { ok: false, reason: parsed.reason, log: "ack ignored" };
  },
  () => ({ ok: false, reason: "", log: "retained ack ignored" }),
);

/**
 * A pull's report on a device's `ack` (contract v3), for the ESP32 delivery;
 * anything else is the device inbox's to read (and to log when refused).
 */
export const readPullReport: PayloadReader<PullReport> = (message) => {
  const reading = readAck(message);
  return reading?.ok && isPullReport(reading.value) ? { ...reading, value: reading.value } : null;
};

/** `<base>/bridge/state` as a server publishes it. */
export const readBridgeState: PayloadReader<BridgeStateMessage> = serverJson(
  (v) => v.state === "online" || v.state === "offline",
);

/** `<base>/bridge/jobs/<job>` as a server publishes it (a job and its device). */
export const readJobProgress: PayloadReader<JobProgressMessage> = serverJson(
  (v) => typeof v.job === "string" && typeof v.device === "string",
);

/** `<base>/bridge/rollouts/<rollout>` as a server publishes it. */
export const readRolloutProgress: PayloadReader<RolloutProgressMessage> = serverJson(
  (v) => typeof v.id === "string",
);

/** `<base>/bridge/response/<name>`: a reply envelope. */
export const readBridgeResponse: PayloadReader<BridgeResponse> = serverJson(
  (v) => v.status === "ok" || v.status === "error",
);

/** A plain-text payload (Home Assistant's birth message, its install command). */
export const readText: PayloadReader<string> = ({ bytes }) => ({
  ok: true,
  value: bytes.toString("utf8"),
  warnings: [],
});
