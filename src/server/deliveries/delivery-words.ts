import type { JobRecord } from "../storage/storage.ts";

/**
 * What a job's steps and advice say about a delivery: the ESP8266's words
 * ("the push", "OTA mode", "the receiver") are the UDP push's own, an
 * ESP32's ("the fetch", "its other slot") the pull's. The job core picks
 * the words of the job's delivery, so it speaks of neither.
 */
export interface DeliveryWords {
  /** The first delivery of a try ("Pushing the image."). */
  readonly start: string;
  /** Again after a delivery broke off and the wait for the device (`recovering`). */
  readonly again: string;
  /** Again after the device did not report within the verify window. */
  readonly afterSilence: string;
  /** A retry of the delivery alone, without a new command. */
  readonly retry: string;
  /** "pushing again", in a retry's step. */
  readonly retryShort: string;
  /** The delivery's noun, in "during the push". */
  readonly noun: string;
  /** Where the delivery goes or comes from, for the step that starts it: ", to 10.0.0.5:8266". */
  where(job: JobRecord): string;
  /** What a device that took the command may be doing, in "it ... (the device has taken the command and ...)". */
  readonly busy: string;
  /** The device says it is busy with the delivery (status `ota`). */
  readonly statusOta: string;
  /** The server stopped during a delivery; it goes on after `waitMs`. */
  interrupted(waitMs: number): string;
  /** The device did not come back after a complete delivery. */
  silentAfter(job: JobRecord): string;
  /** The device came back running `fw`, not the job's release. */
  wrongFirmware(job: JobRecord, fw: string): string;
  /** No state within the verify window after a complete delivery. */
  verifyTimeout(waitedMs: number): string;
  /** A second way in, appended to the give-up hint (", or ..."), or "". */
  byHand(job: JobRecord): string;
  /**
   * Said when a device stays silent after an earlier delivery of this job
   * was cut off and the delivery should simply be tried again after the
   * reset wait; undefined when a new command is the better retry.
   */
  readonly cutOff?: string;
}

export function timeText(at: number): string {
  return new Date(at)
    .toISOString()
    .replace("T", " ")
    .replace(/\.\d+Z$/, " UTC");
}

/** "0.3 s", "6.0 s", "80 s". */
export function secondsText(ms: number): string {
  return ms < 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms / 1000)} s`;
}

/** Words for a delivery that has none of its own (or one this server lacks): they name no chip. */
export const plainWords: DeliveryWords = {
  start: "Delivering the release.",
  again: "Delivering the release again.",
  afterSilence: "Delivering the release again.",
  retry: "Delivering again.",
  retryShort: "delivering again",
  noun: "delivery",
  where: (job) => (job.targetIp === null ? "" : `, to the device at ${job.targetIp}`),
  busy: "may be taking the release",
  statusOta: "Device says it is taking the update.",
  interrupted: (waitMs) =>
    `The delivery was interrupted (the server stopped). Delivering again in ${secondsText(waitMs)}.`,
  silentAfter: (job) =>
    `Device ${job.deviceId} has not come back since the delivery${job.pushedAt === null ? "" : ` at ${timeText(job.pushedAt)}`}: no state on its topic. It may not boot the new release (watch its serial console), or it lost power or WiFi.`,
  wrongFirmware: (job, fw) =>
    `Device ${job.deviceId} came back running ${fw}, not ${job.firmwareId} (${job.firmwareName} ${job.firmwareVersion}): the new release did not take.`,
  verifyTimeout: (waitedMs) => `No state from the device within ${secondsText(waitedMs)} of the delivery.`,
  byHand: () => "",
};
