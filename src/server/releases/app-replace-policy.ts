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

/**
 * The app an update to `target` would replace on a board that runs `running`
 * (what its release kind reads from the state: only an app's kind names what
 * runs), or undefined: no app installed, the same app, or no app release.
 */
export function replacedApp(
  running: { name?: string; version?: string } | undefined,
  target: FirmwareName,
): FirmwareName | undefined {
  if (running?.name === undefined || running.version === undefined || running.name === target.name)
    return undefined;
  return { name: running.name, version: running.version };
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
