import { RequestError } from "../base/request-error.ts";
import type { JobStep } from "../storage/storage.ts";
import type { FirmwareName } from "./downgrade-policy.ts";

/**
 * The app-replacement policy every path that updates a board shares (single
 * update over HTTP, the bridge and the CLI; rollouts): an app release whose
 * name is not the name of the app a board runs would wipe that app for
 * another, so it is refused unless the request says `replaceApp`, in the
 * words built here. A board that runs no app yet takes any app without the
 * word. The board itself does not compare names: the server decides, before
 * any command is sent.
 */

/** What an update would do to a board's app: nothing of note, or replace an app of another name. */
export type AppReplacement = { kind: "none" } | { kind: "replace"; from: FirmwareName };

/**
 * Whether updating a board that runs the app `running` (undefined: none,
 * or the release is no app) to the app release `target` replaces it.
 */
export function appReplacement(running: FirmwareName | undefined, target: FirmwareName): AppReplacement {
  if (running === undefined || running.name === target.name) return { kind: "none" };
  return { kind: "replace", from: { name: running.name, version: running.version } };
}

/** "board1 runs the app thermostat 1.4.0" */
export function replacedAppText(deviceId: string, from: FirmwareName): string {
  return `${deviceId} runs the app ${from.name} ${from.version}`;
}

/** The refusal of one board's update: the same words on every path (CLI, HTTP, bridge, a rollout's turn). */
export function appReplaceRefusalText(deviceId: string, from: FirmwareName, target: FirmwareName): string {
  return `Refusing to update ${deviceId} to ${target.name} ${target.version}: ${replacedAppText(deviceId, from)}, which the app ${target.name}, of another name, would replace. If that is what you want, pass --replace-app (replaceApp: true); to update the installed app, pick a release of ${from.name}.`;
}

/** A request would replace a board's app by one of another name and did not say `replaceApp`. */
export class AppReplaceRefusedError extends RequestError {}

/** What the job's first step says of a replacement the request allowed. */
export function replacementNote(from: FirmwareName): string {
  return `It replaces the app ${from.name} ${from.version}, on request (replaceApp).`;
}

/** The app a job replaced on request (its first step records it), or undefined. */
export function jobReplacedApp(steps: readonly JobStep[]): FirmwareName | undefined {
  const data = steps.find((s) => s.kind === "created")?.data;
  const from = data?.replacesApp as Partial<FirmwareName> | undefined;
  if (data?.replaceApp !== true || typeof from?.name !== "string" || typeof from.version !== "string")
    return undefined;
  return { name: from.name, version: from.version };
}

/**
 * Whether a job replaces an app of another name on request (its first step,
 * "created", records it). Such a job's command is signed with `down 1`: the
 * agent orders the new app's version against the installed app's whatever
 * their names, and the user's word to replace the app covers its version.
 */
export function jobReplacesApp(steps: readonly JobStep[]): boolean {
  return steps.find((s) => s.kind === "created")?.data?.replaceApp === true;
}
