// The words every job and rollout table uses for what a job installs and how
// its bytes move: one place, so `jobs`, `devices show`, `rollout` and
// `update --follow` say the same thing.
import type { JobView } from "../server/api/api.ts";

/** How the job's release travels, as a newer server's `update`, `job`, `jobs`, `device` and `rollout/*` answers say. */
export type DeliveryFacts = Pick<JobView, "delivery" | "fetchedByDevice">;

// The delivery whose board fetches an app's manifest and changed files (src/server/deliveries/app-pull.ts).
const APP_PULL = "app-pull";

/** Whether the job's release is an app (its board reports files staged; older servers say so only that way). */
export function isAppJob(j: { state: string; files?: number; of?: number }, how: DeliveryFacts): boolean {
  return how.delivery === APP_PULL || (j.files !== undefined && j.of !== undefined);
}

/** Whether the device moves the bytes itself (an ESP32's image, an app) rather than the server pushing them. */
export function deviceFetches(how: DeliveryFacts, app = how.delivery === APP_PULL): boolean {
  return how.fetchedByDevice ?? app;
}

/**
 * A job's phase for people. The job machine calls its transfer phase
 * "pushing" whoever moves the bytes; a device that fetches them is said to
 * fetch. Other phases keep their names.
 */
export function phaseWord(phase: string, fetches: boolean): string {
  return phase === "pushing" && fetches ? "fetching" : phase;
}

/**
 * What a job or rollout installs: "app thermostat 1.4.0" or "firmware sensor
 * 2.0". An older server's answer has no delivery: the name and version alone.
 * With `width` (a table cell), a long name is cut so the version still shows.
 */
export function releaseWords(
  release: { name: string; version: string },
  how: DeliveryFacts,
  width = Number.POSITIVE_INFINITY,
): string {
  const kind = how.delivery === undefined ? "" : how.delivery === APP_PULL ? "app " : "firmware ";
  const text = `${kind}${release.name} ${release.version}`;
  if (text.length <= width) return text;
  const room = Math.max(1, width - kind.length - release.version.length - 4);
  return `${kind}${release.name.slice(0, room)}... ${release.version}`;
}

/** The widest a release's words may be in a table cell: the rest of a row fits 100 columns. */
export const RELEASE_CELL = 26;
