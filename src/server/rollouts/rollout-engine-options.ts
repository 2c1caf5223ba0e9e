/** What the rollout engine is built from: storage, the job runner, the broker link, time and its settings. */
import type { Logger } from "pino";
import type { Clock } from "../../net/clock.ts";
import type { Topics } from "../api/topics.ts";
import type { JobCreateOptions } from "../jobs/job-request.ts";
import type { MqttLink } from "../mqtt/mqtt-link.ts";
import type { FirmwareLibrary } from "../releases/firmware-library.ts";
import type { FirmwareRecord, JobRecord, Storage } from "../storage/storage.ts";
import type { JobCanceller } from "../storage/types.ts";

/** What a rollout needs of the job runner: it creates and cancels the per-device jobs, and nothing else. */
export interface RolloutJobs {
  create(deviceId: string, firmwareRef: string, options: JobCreateOptions): Promise<JobRecord>;
  /** Takes a job back (`by`: "rollout"), so that a look tells it from a job someone else cancelled. */
  cancel(jobId: string, by: JobCanceller): Promise<JobRecord>;
}

export interface RolloutEngineOptions {
  storage: Storage;
  library: FirmwareLibrary;
  jobs: RolloutJobs;
  link: MqttLink;
  topics: Topics;
  /** Wall clock (times are stored). */
  clock: Clock;
  logger: Logger;
  /** This instance's name in leases. */
  owner: string;
  leaseMs: number;
  /** How often open rollouts are looked at. */
  pollMs: number;
  /** Tries per device when a rollout does not say (the server's default). */
  maxAttempts: number;
  /**
   * Why this server cannot deliver `release` (no signing key, no HTTP
   * listener for an ESP32's pull), or without one any release at all; undefined when it can.
   */
  refusal?: (release?: FirmwareRecord) => string | undefined;
  /** How `release` reaches a device: its delivery's name and whether the device fetches it (shown in the rollout's views). */
  deliveryOf: (release: FirmwareRecord) => { delivery: string; fetchedByDevice: boolean };
}
