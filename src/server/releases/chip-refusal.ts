import type { FirmwareRecord } from "../storage/storage.ts";
import type { ReleaseKind, ReleaseKinds } from "./release-kind.ts";

/**
 * Boards worth naming whose chip no firmware kind serves: their agent takes
 * app releases only and refuses every firmware command (ready:false).
 */
const APP_ONLY_BOARDS: Record<string, string> = { rp2: "a Raspberry Pi Pico W (rp2)" };

/**
 * Whether a device reporting `chip` can take releases of `kind` (its
 * `chips`). A device that names no chip (an agent before contract v3) is
 * left to the kind's checkDevice, which knows what else to ask of it.
 */
export function servesChip(kind: ReleaseKind, chip: string | undefined): boolean {
  return chip === undefined || kind.chips === "any" || kind.chips.has(chip);
}

/** Whether only kinds of any chip (app releases) serve `chip`: no kind of this server updates its firmware. */
export function appOnlyChip(kinds: ReleaseKinds, chip: string): boolean {
  return !kinds.all.some((k) => k.chips !== "any" && k.chips.has(chip));
}

/**
 * Why a device reporting `chip` cannot take `release`, because the
 * release's kind does not serve that chip; undefined when it does. The one
 * rule behind a job request's refusal, a rollout's choice of devices and
 * the dashboard's (which reads the kind's chips from the release view).
 */
export function chipRefusal(
  kinds: ReleaseKinds,
  release: FirmwareRecord,
  chip: string | undefined,
  source: string,
): string | undefined {
  const kind = kinds.of(release);
  if (chip === undefined || servesChip(kind, chip)) return undefined;
  if (appOnlyChip(kinds, chip) && kinds.all.some((k) => k.chips === "any")) {
    const board = APP_ONLY_BOARDS[chip] ?? `a board with chip ${chip}`;
    return `${source}: the device is ${board}, which takes app updates only: mpota does not update its firmware. Update its app with an app release (mpota update <device> <app>@<version>); flash its MicroPython by USB.`;
  }
  return `${source}: the release is built for ${kinds.targetOf(release)}, the device reports ${chip}. Pick a release built for ${chip}.`;
}
