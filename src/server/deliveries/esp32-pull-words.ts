import { type DeliveryWords, secondsText, timeText } from "./delivery-words.ts";

/** The ESP32's words: the device fetches the image itself into its other app slot and switches to it. */
export const esp32PullWords: DeliveryWords = {
  start: "Following the device's fetch of the image.",
  again: "Following the device's fetch again; it resumes from the blocks it already wrote (HTTP Range).",
  afterSilence: "Following the device's fetch again.",
  retry: "Following the device's fetch again.",
  retryShort: "following the device's fetch again",
  noun: "fetch",
  where: (job) => (job.targetIp === null ? "" : `, fetched by the device at ${job.targetIp}`),
  busy: "may be fetching the image or booting it",
  statusOta: "Device says it is fetching the image into its other slot.",
  interrupted: (waitMs) =>
    `The server stopped while the device fetched the image. Following the fetch again in ${secondsText(waitMs)}: the device keeps the blocks it wrote and resumes from there (HTTP Range).`,
  silentAfter: (job) =>
    `Device ${job.deviceId} has not come back since it fetched the image and switched to it${job.pushedAt === null ? "" : ` at ${timeText(job.pushedAt)}`}: no state on its topic. The new firmware may not boot or not reach the broker (the bootloader then goes back to the old one at the next reset, and the agent reports the rollback), or the device lost power or WiFi.`,
  wrongFirmware: (job, fw) =>
    `Device ${job.deviceId} came back running ${fw}, not ${job.firmwareId} (${job.firmwareName} ${job.firmwareVersion}): the new image did not take (the device booted its old slot without reporting a rollback; a deep sleep right after set_boot boots the old slot again).`,
  verifyTimeout: (waitedMs) =>
    `No state from the device within ${secondsText(waitedMs)} of its fetch: the new firmware has not connected yet (it may still be booting, or cannot reach the broker).`,
  byHand: () => "",
};
