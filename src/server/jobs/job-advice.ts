import type { JobRecord } from "../storage/storage.ts";

export { secondsText } from "../deliveries/delivery-words.ts";

/**
 * The words of job failures: what happened and what to do. Kept together so
 * the timeline, the CLI and the progress topic all say the same thing. What
 * a delivery calls itself and its troubles ("the push", "OTA mode", "the
 * fetch") is the delivery's own (deliveries/delivery-words.ts).
 */

/** A device's decline that trying again will not fix (no room, unsupported...). */
const PERMANENT_DECLINE =
  /flash|space|room|too (large|big)|size|unsupported|not supported|refus|denied|disabled|forbidden/i;

export function isPermanentDecline(reason: string): boolean {
  return PERMANENT_DECLINE.test(reason);
}

export function declinedMessage(job: JobRecord, reason: string): string {
  return `Device ${job.deviceId} declined the update: "${reason}".${/battery/i.test(reason) ? " It will be asked again; charge it or power it to let the update go ahead." : ""}`;
}

export function declinedPermanentlyMessage(job: JobRecord, reason: string): string {
  if (/downgrade/i.test(reason)) {
    return `Device ${job.deviceId} declined the update: "${reason}". Its agent refuses a version older than the highest it has accepted unless the command allows a downgrade: if installing ${job.firmwareName} ${job.firmwareVersion} is what you want, run \`mpota update ${job.deviceId} ${job.firmwareName}@${job.firmwareVersion} --allow-downgrade\`.`;
  }
  return `Device ${job.deviceId} declined the update: "${reason}". Trying again will not change that: fix the cause on the device, or pick a firmware that suits it.`;
}

export function noAckMessage(job: JobRecord, waitedMs: number): string {
  return `Device ${job.deviceId} did not take the command within ${Math.round(waitedMs / 1000)} s. A sleepy device takes it at its next wake; check that it is powered and connects to the broker with base topic and id as the server expects.`;
}

/** `byHand`: the delivery's second way in (", or push by hand ..."), or "". */
export function gaveUpMessage(job: JobRecord, reason: string, byHand: string): string {
  return `${reason} Gave up after ${job.attempt} ${job.attempt === 1 ? "try" : "tries"}. When the cause is fixed, run \`mpota update ${job.deviceId} ${job.firmwareName}@${job.firmwareVersion}\` again${byHand}.`;
}

/** The job's push address as "ip:port". */
export function targetText(job: JobRecord): string {
  return job.targetIp === null ? "(no address)" : `${job.targetIp}:${job.targetPort}`;
}
