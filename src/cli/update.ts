import type { Command } from "commander";
import { MpotaError } from "../errors.ts";
import { EXIT_CODES } from "../exit-codes.ts";
import type { JobProgressMessage, JobView } from "../server/api/api.ts";
import { RequestError } from "../server/base/request-error.ts";
import type { BridgeClient } from "../server/bridge/bridge-client.ts";
import {
  addBridgeOptions,
  type BridgeCommandOptions,
  printJson,
  relativeTime,
  withBridge,
} from "./devices.ts";
import type { CliIo } from "./io.ts";
import { deviceFetches, isAppJob, phaseWord, releaseWords } from "./job-words.ts";
import { progressText } from "./jobs.ts";

/** `update --follow` saw the job end without success. */
export class JobFailedError extends MpotaError {
  override readonly exitCode: number = EXIT_CODES.jobFailed.code;
}

interface UpdateOptions extends BridgeCommandOptions {
  follow?: boolean;
  allowDowngrade?: boolean;
  replaceApp?: boolean;
}

const FINAL = ["succeeded", "failed", "cancelled"];

/** Prints the job's progress messages until it ends; resolves with the last one. */
async function follow(
  bridge: BridgeClient,
  job: JobView,
  io: CliIo,
  json: boolean,
): Promise<JobProgressMessage> {
  let last = "";
  let resolveEnd: (message: JobProgressMessage) => void = () => undefined;
  const ended = new Promise<JobProgressMessage>((resolve) => {
    resolveEnd = resolve;
  });
  const unsubscribe = await bridge.watchJob(job.id, (message) => {
    if (json) io.out(`${JSON.stringify(message)}\n`);
    else {
      const app = isAppJob(message, job);
      const state = phaseWord(message.state, deviceFetches(job, app));
      const line = `${state}${message.state === "pushing" ? `${app ? ", " : " "}${progressText(message, job)}` : ""}${message.attempt > 1 ? ` (try ${message.attempt} of ${message.maxAttempts})` : ""}`;
      // One line per state, and per 10 % while pushing.
      const key = `${message.state}/${message.attempt}/${message.state === "pushing" ? Math.floor(message.percent / 10) : ""}`;
      if (key !== last) io.err(`${job.id}: ${line}\n`);
      last = key;
    }
    if (FINAL.includes(message.state)) resolveEnd(message);
  });
  try {
    return await ended;
  } finally {
    await unsubscribe();
  }
}

/** When the device was last seen, if its last status says offline; an unknown device is the update's to report. */
async function offlineSince(bridge: BridgeClient, id: string): Promise<number | undefined> {
  try {
    const device = await bridge.request("device", { id });
    return device.status === "offline" ? device.lastSeen : undefined;
  } catch (error) {
    // A refusal (no such device) is the update's to report, in its own words.
    if (error instanceof RequestError) return undefined;
    throw error;
  }
}

export async function updateCommand(
  device: string,
  firmware: string,
  options: UpdateOptions,
  io: CliIo,
): Promise<JobView> {
  return withBridge(options, async (bridge) => {
    // "An awake device takes it now" reads as a promise; for a device that
    // went offline the job waits, and the user should know it will. Asked
    // before the update, so that --follow subscribes without delay.
    const offline = options.json ? undefined : await offlineSince(bridge, device);
    const job = await bridge.request("update", {
      device,
      firmware,
      ...(options.allowDowngrade ? { allowDowngrade: true } : {}),
      ...(options.replaceApp ? { replaceApp: true } : {}),
    });
    if (options.json && !options.follow) printJson(io, job);
    if (!options.json) {
      io.out(
        `Job ${job.id}: update ${job.device} to ${releaseWords(job.firmware, job)} (${job.firmware.id}).\n` +
          "The command is retained on the broker: an awake device takes it now, a sleeping one at its next wake.\n" +
          (offline === undefined
            ? ""
            : `${job.device} is offline (last seen ${relativeTime(offline)}): the job waits until it connects again; \`mpota jobs cancel ${job.id}\` withdraws it.\n`) +
          (isAppJob(job, job)
            ? "The board fetches the signed manifest and only the files it does not hold; the others it stages from its own flash. Progress counts the files staged.\n"
            : "") +
          (options.follow
            ? ""
            : `Follow it with \`mpota jobs show ${job.id}\`, or watch ${options.base}/bridge/jobs/${job.id}.\n`),
      );
    }
    if (!options.follow) return job;
    const end = await follow(bridge, job, io, options.json === true);
    if (end.state !== "succeeded") {
      throw new JobFailedError(`Job ${job.id} ${end.state}${end.error ? `: ${end.error}` : "."}`);
    }
    if (!options.json) io.out(`${job.device} now runs ${releaseWords(job.firmware, job)}.\n`);
    return job;
  });
}

export function registerUpdateCommand(program: Command, io: CliIo): void {
  addBridgeOptions(
    program
      .command("update")
      .description(
        "Ask the running server to update a device to a release from its store (over MQTT): a firmware, or an app (`mpota app add`).",
      )
      .argument("<device>", "device id, as `mpota devices` lists it")
      .argument(
        "<release>",
        "firmware or app: its identity (or its first 6+ digits), name@version, or name (the newest)",
      ),
  )
    .option("--follow", "wait and show progress until the job ends (exit 28 if it fails)")
    .option(
      "--allow-downgrade",
      "install the firmware even if it is older than the one the device runs (refused otherwise)",
    )
    .option(
      "--replace-app",
      "install an app even if the board runs an app of another name, which it replaces (refused otherwise)",
    )
    .addHelpText(
      "after",
      `
The server publishes a retained command for the device; the device acknowledges it,
resets into OTA mode, the server pushes the image and waits for the device to report
the new firmware. An ESP32 fetches its image instead, and a board an app's manifest and
changed files, from the server's HTTP device routes. A sleeping device takes the command
at its next wake: the job waits.

A firmware older than the one the device runs (same name, lower version) is refused
unless --allow-downgrade is given. A device running firmware the store does not know
cannot be compared: the update goes ahead, and a device with a v2 agent still refuses
a version older than the highest it has accepted.

An app whose name differs from the app the board runs would replace that app: it is
refused unless --replace-app is given. A board with no app installed needs no word.`,
    )
    .action(async (device: string, firmware: string, options: UpdateOptions) => {
      await updateCommand(device, firmware, options, io);
    });
}
