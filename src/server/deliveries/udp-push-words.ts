import type { JobRecord } from "../storage/storage.ts";
import { type DeliveryWords, secondsText, timeText } from "./delivery-words.ts";

const target = (job: JobRecord) =>
  job.targetIp === null ? "(no address)" : `${job.targetIp}:${job.targetPort}`;

/** The ESP8266's words: the server pushes to the yaota8266 receiver, which sits in OTA mode. */
export const udpPushWords: DeliveryWords = {
  start: "Pushing the image.",
  again: "Pushing again to the receiver after its reset.",
  afterSilence: "Pushing again to the same address.",
  retry: "Pushing again.",
  retryShort: "pushing again",
  noun: "push",
  where: (job) => `, to ${target(job)}`,
  busy: "may sit in OTA mode",
  statusOta: "Device says it is entering OTA mode.",
  interrupted: (waitMs) =>
    `The push was interrupted (the server stopped). Waiting ${secondsText(waitMs)} for the receiver to reset, then pushing the whole image again.`,
  silentAfter: (job) =>
    `Device ${job.deviceId} has not come back since the push${job.pushedAt === null ? "" : ` at ${timeText(job.pushedAt)}`}: no state on its topic and no answer in OTA mode at ${target(job)}. It may not boot the new firmware (watch its serial console), or it lost power or WiFi.`,
  wrongFirmware: (job, fw) =>
    `Device ${job.deviceId} came back running ${fw}, not ${job.firmwareId} (${job.firmwareName} ${job.firmwareVersion}): the new image did not take (the push may not have reached it before its OTA receiver gave up).`,
  verifyTimeout: (waitedMs) =>
    `No state from the device within ${secondsText(waitedMs)} of the push: it probably sits in OTA mode (its checksum failed).`,
  byHand: (job) =>
    job.targetIp
      ? `, or push by hand to a device that sits in OTA mode: \`mpota push FILE --to ${job.targetIp}\``
      : "",
  cutOff:
    "An earlier push was cut off, so it may be waiting in OTA mode with a stale buffer: pushing again after the receiver resets.",
};
