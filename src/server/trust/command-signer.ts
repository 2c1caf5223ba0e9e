import { MpotaError } from "../../errors.ts";
import { EXIT_CODES } from "../../exit-codes.ts";
import {
  type OtaCommandFields,
  type SignedOtaCommand,
  signCommand,
} from "../../protocol/command-signature.ts";
import { type Json, toJson } from "../api/topics.ts";
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

  /** The payload of a fresh signed command for the job's current try (the bytes of encodeCommand). */
  async sign(job: JobRecord): Promise<Json<SignedOtaCommand>> {
    const device = await this.storage.devices.get(job.deviceId);
    const reported = device?.state?.v === 2 ? (device.state.seq ?? 0) : 0;
    const key = this.keys.keyFor(device?.state?.keys);
    const seq = await this.storage.credentials.nextCommandSeq(job.deviceId, reported);
    if (seq === undefined) {
      throw new CommandSigningError(
        `Device ${job.deviceId} is not provisioned, so the server keeps no command counter for it and cannot sign its commands. Provision it with \`mpota devices add ${job.deviceId}\` and put the mpota_config.py it writes on the device.`,
      );
    }
    const down = jobAllowsDowngrade(await this.storage.jobs.steps(job.id)) ? 1 : 0;
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
      return toJson(signCommand(fields, key.privateKey));
    } catch (error) {
      throw new CommandSigningError(
        `The update command for ${job.deviceId} cannot be signed: ${(error as Error).message}`,
      );
    }
  }
}
