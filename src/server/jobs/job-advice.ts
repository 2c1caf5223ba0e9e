import type { JobRecord } from "../storage/storage.ts";

/**
 * The words of job failures: what happened and what to do. Kept together so
 * the timeline, the CLI and the progress topic all say the same thing.
 */

const time = (at: number) =>
  new Date(at)
    .toISOString()
    .replace("T", " ")
    .replace(/\.\d+Z$/, " UTC");

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

export function silentAfterPushMessage(job: JobRecord, target: string): string {
  return `Device ${job.deviceId} has not come back since the push${job.pushedAt === null ? "" : ` at ${time(job.pushedAt)}`}: no state on its topic and no answer in OTA mode at ${target}. It may not boot the new firmware (watch its serial console), or it lost power or WiFi.`;
}

export function wrongFirmwareMessage(job: JobRecord, fw: string): string {
  return `Device ${job.deviceId} came back running ${fw}, not ${job.firmwareId} (${job.firmwareName} ${job.firmwareVersion}): the new image did not take (the push may not have reached it before its OTA receiver gave up).`;
}

export function noAckMessage(job: JobRecord, waitedMs: number): string {
  return `Device ${job.deviceId} did not take the command within ${Math.round(waitedMs / 1000)} s. A sleepy device takes it at its next wake; check that it is powered and connects to the broker with base topic and id as the server expects.`;
}

export function gaveUpMessage(job: JobRecord, reason: string): string {
  return `${reason} Gave up after ${job.attempt} ${job.attempt === 1 ? "try" : "tries"}. When the cause is fixed, run \`mpota update ${job.deviceId} ${job.firmwareName}@${job.firmwareVersion}\` again${job.targetIp ? `, or push by hand to a device that sits in OTA mode: \`mpota push FILE --to ${job.targetIp}\`` : ""}.`;
}

/** "0.3 s", "6.0 s", "80 s". */
export function secondsText(ms: number): string {
  return ms < 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms / 1000)} s`;
}

/** The job's push address as "ip:port". */
export function targetText(job: JobRecord): string {
  return job.targetIp === null ? "(no address)" : `${job.targetIp}:${job.targetPort}`;
}

export function interruptedMessage(waitMs: number): string {
  return `The push was interrupted (the server stopped). Waiting ${secondsText(waitMs)} for the receiver to reset, then pushing the whole image again.`;
}

export function verifyTimeoutMessage(waitedMs: number): string {
  return `No state from the device within ${secondsText(waitedMs)} of the push: it probably sits in OTA mode (its checksum failed).`;
}

/** An ESP32's bootloader went back to the old firmware (contract v3's `rb` in the device's state). */
export function rolledBackMessage(fw: string, running: string): string {
  return `rolled back: firmware ${fw} booted but did not confirm; the bootloader went back to ${running}. The new firmware crashed or could not reach the broker before its agent confirmed it: try it on one device by serial first.`;
}
