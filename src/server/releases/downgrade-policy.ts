import { RequestError } from "../base/request-error.ts";
import type { JobStep } from "../storage/storage.ts";
import { compareVersions } from "./version-order.ts";

/**
 * The downgrade policy every path that updates a device shares (single
 * update over HTTP, the bridge, the CLI, the dashboard and Home Assistant;
 * line updates and rollouts): a firmware older than the one the device runs
 * is refused unless the request says `allowDowngrade`, always in the words
 * built here.
 *
 * "The firmware the device runs" is the identity (MD5 `fw`) of its last
 * state, named by the store. Versions are ordered within a line (one
 * firmware name) by `compareVersions`. A device running an identity the
 * store does not know, or a firmware of another line, cannot be ordered:
 * the update goes ahead, and the job's log says why the server could not
 * tell (a v2 agent still refuses a version older than the highest it has
 * accepted, unless the signed command allows a downgrade).
 */

export interface FirmwareName {
  name: string;
  version: string;
}

export interface TargetFirmware extends FirmwareName {
  id: string;
}

export type VersionVerdict =
  | { kind: "update" }
  | { kind: "already" }
  | { kind: "downgrade"; from: FirmwareName }
  /** The running firmware is not in the store, or of another line: no order between them. */
  | { kind: "unordered"; from: FirmwareName | undefined };

/** A device a request would downgrade, and what it runs. */
export interface Downgrade {
  deviceId: string;
  from: FirmwareName;
}

/**
 * What the version policy says about updating a device running `fw`
 * (`running`: the store's name for it, if it has one) to `target`.
 */
export function versionVerdict(
  fw: string,
  running: FirmwareName | undefined,
  target: TargetFirmware,
): VersionVerdict {
  if (fw === target.id) return { kind: "already" };
  const from = running && { name: running.name, version: running.version };
  if (!from || from.name !== target.name) return { kind: "unordered", from };
  if (compareVersions(from.version, target.version) > 0) return { kind: "downgrade", from };
  return { kind: "update" };
}

/** "sim-1 runs sensor 2.0, newer than 1.5" */
export function downgradeText(deviceId: string, from: FirmwareName, target: FirmwareName): string {
  return `${deviceId} runs ${from.name} ${from.version}, newer than ${target.version}`;
}

/**
 * The refusal: what was asked (`action`, "roll out sensor 1.5" or "update
 * sim-1 to sensor 1.5"), the devices it would downgrade (at most five
 * named), how to go ahead anyway, and `otherwise` (another way out) if any.
 */
export function downgradeRefusalText(
  action: string,
  target: FirmwareName,
  downgrades: readonly Downgrade[],
  otherwise?: string,
): string {
  const n = downgrades.length;
  const shown = downgrades
    .slice(0, 5)
    .map((d) => downgradeText(d.deviceId, d.from, target))
    .join("; ");
  const more = n > 5 ? `; and ${n - 5} more` : "";
  return `Refusing to ${action}: it would downgrade ${n} device${n === 1 ? "" : "s"} (${shown}${more}). If that is what you want, pass --allow-downgrade (allowDowngrade: true)${otherwise ? `, or ${otherwise}` : ""}.`;
}

/** The refusal of updating one device: the same words for every path (CLI, HTTP, bridge, dashboard, Home Assistant). */
export function updateRefusalText(deviceId: string, from: FirmwareName, target: FirmwareName): string {
  return downgradeRefusalText(`update ${deviceId} to ${target.name} ${target.version}`, target, [
    { deviceId, from },
  ]);
}

/** A request would downgrade devices and did not say `allowDowngrade`. */
export class DowngradeRefusedError extends RequestError {}

/**
 * What the job's first step says about the versions: a downgrade allowed
 * on request, or why the server could not order them. Undefined for a
 * plain update.
 */
export function versionNote(
  fw: string,
  verdict: VersionVerdict,
  target: FirmwareName,
  allowDowngrade: boolean,
): string | undefined {
  if (verdict.kind === "downgrade") {
    return `A downgrade from ${verdict.from.name} ${verdict.from.version}, allowed on request (allowDowngrade).`;
  }
  if (verdict.kind !== "unordered") return undefined;
  const runs = verdict.from
    ? `runs ${verdict.from.name} ${verdict.from.version}, another line than ${target.name}, so the versions are not compared`
    : `runs firmware ${fw} that the store does not know, so the server cannot tell whether ${target.version} is older`;
  return `The device ${runs}${allowDowngrade ? "; a downgrade is allowed on request (allowDowngrade)" : "; a v2 agent still refuses a version older than the highest it has accepted (then ask again with --allow-downgrade if that is what you want)"}.`;
}

/** Whether a job was created with `allowDowngrade` (its first step, "created", records it). */
export function jobAllowsDowngrade(steps: readonly JobStep[]): boolean {
  return steps.find((s) => s.kind === "created")?.data?.allowDowngrade === true;
}
