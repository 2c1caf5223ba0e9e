import { type DeliveryWords, secondsText, timeText } from "./delivery-words.ts";

/** An app's words: the board fetches the manifest and the files it lacks, stages them and switches. */
export const appPullWords: DeliveryWords = {
  start: "Following the board's fetch of the app's changed files.",
  again: "Following the board's fetch again; it keeps the files it already staged and checked.",
  afterSilence: "Following the board's fetch again.",
  retry: "Following the board's fetch again.",
  retryShort: "following the board's fetch again",
  noun: "app fetch",
  where: (job) => (job.targetIp === null ? "" : `, fetched by the board at ${job.targetIp}`),
  busy: "may be fetching the app's files or starting the new app",
  statusOta: "Board says it is fetching the app's files into its other slot.",
  interrupted: (waitMs) =>
    `The server stopped while the board fetched the app. Following the fetch again in ${secondsText(waitMs)}: the board keeps the files it staged and checked.`,
  silentAfter: (job) =>
    `Board ${job.deviceId} has not come back since it staged ${job.firmwareName} ${job.firmwareVersion} and switched to it${job.pushedAt === null ? "" : ` at ${timeText(job.pushedAt)}`}: no state on its topic. The new app may hang before the agent runs (the loader goes back to the previous app after 3 boots without a confirmation, and the agent reports it), or the board lost power or WiFi.`,
  wrongFirmware: (job, running) =>
    `Board ${job.deviceId} came back running app ${running}, not ${job.firmwareName} ${job.firmwareVersion} (${job.firmwareId}): the switch did not take.`,
  verifyTimeout: (waitedMs) =>
    `No state from the board within ${secondsText(waitedMs)} of its switch: the new app has not started the agent yet (it may still be booting, or cannot reach the broker).`,
  byHand: () => "",
};
