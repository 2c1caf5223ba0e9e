import type { RolloutView } from "../api/rollout-api.ts";
import { RequestError } from "../base/request-error.ts";
import type { FirmwareLibrary } from "../releases/firmware-library.ts";
import type { RolloutEngine } from "../rollouts/rollout-engine.ts";

export const MAX_LINE_CONCURRENCY = 20;
export const DEFAULT_LINE_CONCURRENCY = 2;

export interface LineUpdateResult {
  firmware: { id: string; name: string; version: string };
  concurrency: number;
  /** The rollout that carries the update out (one group: every device of the line). */
  rollout: RolloutView;
}

/**
 * "Update every device on firmware line X" is a rollout with one group:
 * every device running a firmware of that name, at most `concurrency` at a
 * time. Being a rollout, it is stored (a restart resumes it), it holds its
 * limit across server instances, skips devices already on the target,
 * refuses downgrades (unless `allowDowngrade`), and pauses when too many
 * devices fail.
 */
export class LineUpdates {
  constructor(private readonly o: { library: FirmwareLibrary; rollouts: RolloutEngine }) {}

  /** `allowDowngrade`: also install it on devices of the line that run a newer version. */
  async start(
    firmwareRef: string,
    concurrency = DEFAULT_LINE_CONCURRENCY,
    allowDowngrade = false,
  ): Promise<LineUpdateResult> {
    if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > MAX_LINE_CONCURRENCY) {
      throw new RequestError(`"concurrency" must be a whole number from 1 to ${MAX_LINE_CONCURRENCY}.`);
    }
    const target = await this.o.library.resolve(firmwareRef);
    const rollout = await this.o.rollouts.create({
      firmware: target.id,
      line: target.name,
      groups: "rest",
      concurrency,
      ...(allowDowngrade ? { allowDowngrade } : {}),
      name: `update ${target.name} to ${target.version}`,
    });
    return { firmware: { id: target.id, name: target.name, version: target.version }, concurrency, rollout };
  }
}
