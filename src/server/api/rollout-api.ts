import type { PauseKind, RolloutSelector, RolloutState } from "../storage/rollout-store.ts";
import type { JobPhase } from "../storage/types.ts";

/**
 * The rollout part of the server's API: payloads of the `rollout/*` and
 * `device/tags` bridge requests and of the retained progress topic
 * `<base>/bridge/rollouts/<id>`. Plain JSON; the CLI's `--json` prints them.
 */

/** One group of a `rollout/create` request: exactly one of count, percent, rest. */
export interface RolloutGroupRequest {
  /** A number of devices (a canary of 1, 5, ...). */
  count?: number;
  /** A share (1-100) of all the rollout's devices. */
  percent?: number;
  /** Every device not in an earlier group. */
  rest?: boolean;
  successThreshold?: number;
  errorThreshold?: number;
  minExecuted?: number;
  /** Pause for a person's approval when this group has succeeded. */
  approve?: boolean;
}

export interface RolloutCreateRequest {
  /** Identity, prefix, name@version or name (the newest). */
  firmware: string;
  /** Selector: exactly one of devices, tag, line. */
  devices?: string[];
  tag?: string;
  /** Every device running a firmware of this name (from the store). */
  line?: string;
  /** Groups in order, or the short form "1,10%,rest" (default). */
  groups?: RolloutGroupRequest[] | string;
  /** Defaults for groups that do not set their own. */
  successThreshold?: number;
  errorThreshold?: number;
  minExecuted?: number;
  /** Tries after the first one, per device. */
  retries?: number;
  /** Seconds after a device's turn began before it counts as failed (sleepy devices: plus their sleep period). */
  timeout?: number;
  /** Devices updated at once. */
  concurrency?: number;
  allowDowngrade?: boolean;
  /** Replace the app of boards running an app of another name (default: leave them out). */
  replaceApp?: boolean;
  /** What crossing an error threshold does (default pause). */
  onError?: "pause" | "abort";
  /** When to start: ms since the epoch or an ISO 8601 time; default now. */
  startAt?: number | string;
  name?: string;
}

/**
 * Devices by where they are: pending (turn not come), scheduled (command
 * retained, waiting for the device), pushing, verifying, done, failed,
 * overdue (past its timeout mid-push: counted as failed unless it still
 * finishes), skipped, cancelled.
 */
export interface RolloutCounts {
  total: number;
  pending: number;
  scheduled: number;
  pushing: number;
  verifying: number;
  done: number;
  failed: number;
  overdue: number;
  skipped: number;
  cancelled: number;
}

export interface RolloutGroupView {
  index: number;
  /** As asked for: "1", "10%", "rest". */
  spec: string;
  size: number;
  successThreshold: number;
  errorThreshold: number;
  minExecuted: number;
  approve: boolean;
  /** waiting: not started; running: started, devices still open; finished: every device has an outcome. */
  state: "waiting" | "running" | "finished";
  counts: RolloutCounts;
}

export interface RolloutView {
  id: string;
  name: string | null;
  firmware: { id: string; name: string; version: string; size: number };
  /**
   * How the release reaches each device ("udp-push", "esp32-pull", "app-pull")
   * and whether the device fetches it itself, as a job's view says; absent
   * from older servers and from the retained progress topic.
   */
  delivery?: string;
  fetchedByDevice?: boolean;
  selector: RolloutSelector;
  state: RolloutState;
  pauseKind: PauseKind | null;
  reason: string | null;
  currentGroup: number;
  policy: {
    maxAttempts: number;
    /** Seconds. */
    timeout: number;
    concurrency: number;
    allowDowngrade: boolean;
    /** Present (true) when the rollout replaces apps of another name. */
    replaceApp?: boolean;
    onError: "pause" | "abort";
  };
  startAt: number;
  createdAt: number;
  updatedAt: number;
  startedAt: number | null;
  finishedAt: number | null;
  groups: RolloutGroupView[];
  counts: RolloutCounts;
}

export type RolloutDeviceStatus = Exclude<keyof RolloutCounts, "total">;

export interface RolloutDeviceView {
  device: string;
  group: number;
  status: RolloutDeviceStatus;
  job: string | null;
  jobState: JobPhase | null;
  fromFw: string | null;
  sleepy: boolean;
  turnAt: number | null;
  deadlineAt: number | null;
  finishedAt: number | null;
  reason: string | null;
}

export interface RolloutEventView {
  at: number;
  kind: string;
  message: string;
  data: Record<string, unknown> | null;
}

export interface RolloutDetail extends RolloutView {
  devices: RolloutDeviceView[];
  /** Newest first. */
  events: RolloutEventView[];
}

/** Published retained on `<base>/bridge/rollouts/<id>` at every change. */
export type RolloutProgressMessage = RolloutView;

export interface DeviceTagsView {
  id: string;
  tags: string[];
}

/** The bridge requests of rollouts, merged into the server's BridgeApi. */
export interface RolloutBridgeApi {
  "rollout/create": { request: RolloutCreateRequest; response: RolloutView };
  "rollout/list": { request: { active?: boolean; limit?: number }; response: RolloutView[] };
  "rollout/show": { request: { id: string; events?: number }; response: RolloutDetail };
  "rollout/pause": { request: { id: string; reason?: string }; response: RolloutView };
  "rollout/resume": { request: { id: string }; response: RolloutView };
  "rollout/abort": { request: { id: string; reason?: string }; response: RolloutView };
  "device/tags": { request: { id: string; tags?: string[] }; response: DeviceTagsView };
}

export const ROLLOUT_REQUEST_NAMES: ReadonlyArray<keyof RolloutBridgeApi> = [
  "rollout/create",
  "rollout/list",
  "rollout/show",
  "rollout/pause",
  "rollout/resume",
  "rollout/abort",
  "device/tags",
];
