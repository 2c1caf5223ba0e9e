import { MpotaError } from "../../errors.ts";
import { EXIT_CODES } from "../../exit-codes.ts";
import {
  type FetchCommand,
  type OtaCommandFields,
  type SignedAppCommand,
  type SignedOtaCommand,
  type SignedPullCommand,
  signCommand,
} from "../../protocol/command-signature.ts";
import type { DeviceState } from "../../protocol/mqtt-contract.ts";
import { type Json, toJson } from "../api/topics.ts";
import { jobReplacedApp } from "../releases/app-replace-policy.ts";
import { jobAllowsDowngrade } from "../releases/downgrade-policy.ts";
import type { JobRecord, Storage } from "../storage/storage.ts";
import type { CommandKeyRing } from "./command-key-ring.ts";

/** A command cannot be signed for this job: the device is not provisioned, or a field cannot be carried. */
export class CommandSigningError extends MpotaError {
  override readonly exitCode: number = EXIT_CODES.commandSigning.code;
}

/**
 * Signs the update commands the server publishes (MQTT contract v2): each
 * new command gets the device's next counter from storage (never reused,
 * above what the device reports to have accepted), so a retained or
 * captured command cannot be replayed, and the signature binds device,
 * job, target identity, size, version and the downgrade word together.
 */
export class CommandSigner {
  constructor(
    private readonly storage: Storage,
    private readonly keys: CommandKeyRing,
  ) {}

  /**
   * The payload of a fresh signed command for the job's current try (the
   * bytes of encodeCommand): `ota`, or with `fetch` contract v3's `pull`
   * (which only a v3 agent on an ESP32 takes) or `app` (a v3 agent that
   * reports its app).
   */
  async sign(
    job: JobRecord,
    fetch?: FetchCommand,
  ): Promise<Json<SignedOtaCommand | SignedPullCommand | SignedAppCommand>> {
    const device = await this.storage.devices.get(job.deviceId);
    const state = device?.state;
    const cannot = fetch && cannotTake(fetch.op, state);
    // A v2 agent ignores an op it does not know: the job would wait for nothing.
    if (cannot) throw new CommandSigningError(`Device ${job.deviceId} reports ${cannot}`);
    const reported = state && state.v >= 2 ? (state.seq ?? 0) : 0;
    const key = this.keys.keyFor(device?.state?.keys);
    const seq = await this.storage.credentials.nextCommandSeq(job.deviceId, reported);
    if (seq === undefined) {
      throw new CommandSigningError(
        `Device ${job.deviceId} is not provisioned, so the server keeps no command counter for it and cannot sign its commands. Provision it with \`mpota devices add ${job.deviceId}\` and put the mpota_config.py it writes on the device.`,
      );
    }
    const steps = await this.storage.jobs.steps(job.id);
    // A replaced app's version says nothing of the new one's, but the agent orders them: the user's word covers it.
    const down = jobAllowsDowngrade(steps) || jobReplacedApp(steps) !== undefined ? 1 : 0;
    const fields: OtaCommandFields = {
      op: "ota",
      dev: job.deviceId,
      seq,
      job: job.id,
      fw: job.firmwareId,
      size: job.firmwareSize,
      ver: job.firmwareVersion,
      down,
    };
    try {
      if (fetch?.op === "pull") {
        return toJson(signCommand({ ...fields, op: "pull", sha: fetch.sha, url: fetch.url }, key.privateKey));
      }
      if (fetch?.op === "app") {
        const { op, name, ver, sha, size, url } = fetch;
        const { dev, job: id } = fields;
        return toJson(
          signCommand({ op, dev, seq, job: id, name, ver, down, sha, size, url }, key.privateKey),
        );
      }
      return toJson(signCommand(fields, key.privateKey));
    } catch (error) {
      throw new CommandSigningError(
        `The update command for ${job.deviceId} cannot be signed: ${(error as Error).message}`,
      );
    }
  }
}

/** Why a device reporting `state` would not take a v3 command of `op` (the rest of "Device X reports ..."), or undefined. */
function cannotTake(op: FetchCommand["op"], state: DeviceState | null | undefined): string | undefined {
  if (!state) return "no state; install the current agent (device/) on it first.";
  if (op === "pull" && (state.v !== 3 || !state.chip?.startsWith("esp32"))) {
    return `contract v${state.v}${state.chip ? ` on ${state.chip}` : " without a chip"}; an ESP32 image is fetched by the v3 agent's pull (contract v3 on an ESP32). Install the current agent (device/) on it first.`;
  }
  if (op === "app" && (state.v !== 3 || state.app === undefined)) {
    // The job was taken while the board reported its app; it has since come back without the loader.
    return `contract v${state.v} without its app (the state's "app"): mpota's app loader is no longer on the board, so it cannot fetch an app release. Copy the app modules and examples/app_main.py as main.py to it beside the agent (device/README.md, "Apps") and restart it.`;
  }
  return undefined;
}
