/** Which selected devices a release cannot go to: another chip (the kind's `chips`), or what the kind checks. */

import type { DeviceState } from "../../protocol/mqtt-contract.ts";
import { shorten } from "../../protocol/mqtt-contract.ts";
import { RequestError } from "../base/request-error.ts";
import { appOnlyChip, chipRefusal, servesChip } from "../releases/chip-refusal.ts";
import type { ReleaseKind, ReleaseKinds } from "../releases/release-kind.ts";
import type { FirmwareRecord } from "../storage/storage.ts";

export interface ChipCandidate {
  id: string;
  /** The firmware it runs. */
  fw: string;
  /** The chip it reports (contract v3), if any. */
  chip?: string | undefined;
}

/**
 * The hardware a device runs, as far as the server knows: the target of the
 * release it runs (the same test a job request makes), else the chip it
 * reports; undefined when neither says (its job request then decides).
 */
function deviceTarget(
  kinds: ReleaseKinds,
  release: FirmwareRecord,
  c: ChipCandidate,
  store: ReadonlyMap<string, FirmwareRecord>,
): { target: string; fits: boolean } | undefined {
  const running = store.get(c.fw);
  if (running) {
    const target = kinds.targetOf(running);
    return { target, fits: target === kinds.targetOf(release) };
  }
  if (c.chip === undefined) return undefined;
  return { target: c.chip, fits: servesChip(kinds.of(release), c.chip) };
}

/**
 * A selection holding devices whose chip only app releases serve (a Pico W,
 * given a firmware) is refused in the job request's words (chip-refusal.ts)
 * when the user named them, or when no other device is left; from a tag or
 * a line they are left out, as devices of another chip are.
 */
function refuseAppOnly(
  kinds: ReleaseKinds,
  release: FirmwareRecord,
  others: readonly ChipCandidate[],
  named: boolean,
): void {
  const refused = others.flatMap((c) => {
    if (c.chip === undefined || !appOnlyChip(kinds, c.chip)) return [];
    const why = chipRefusal(
      kinds,
      release,
      c.chip,
      `${release.name} ${release.version} for ${shorten(c.id)}`,
    );
    return why === undefined ? [] : [why];
  });
  const first = refused[0];
  if (first === undefined) return;
  const more = refused.length - 1;
  throw new RequestError(
    `Refused: ${first}${more > 0 ? ` ${more} more selected device${more === 1 ? " takes" : "s take"} app updates only too.` : ""}${named ? ` Leave ${refused.length === 1 ? "it" : "them"} out of the list.` : ""}`,
  );
}

/**
 * Splits the selected devices into those the release is built for and those
 * of another chip. A list of ids naming a device of another chip is refused
 * (the user named it: a mistake worth a word); a tag or a line may hold
 * ESP8266 and ESP32 devices side by side, and the others are left out, with
 * the reason returned for the rollout's log.
 */
export function byChip<C extends ChipCandidate>(
  kinds: ReleaseKinds,
  release: FirmwareRecord,
  candidates: readonly C[],
  store: ReadonlyMap<string, FirmwareRecord>,
  named: boolean,
): { fit: C[]; leftOut: string | undefined } {
  const target = kinds.targetOf(release);
  const fit: C[] = [];
  const other = new Map<string, string[]>();
  const others: C[] = [];
  for (const c of candidates) {
    const found = deviceTarget(kinds, release, c, store);
    if (!found || found.fits) fit.push(c);
    else {
      other.set(found.target, [...(other.get(found.target) ?? []), c.id]);
      others.push(c);
    }
  }
  if (other.size === 0) return { fit, leftOut: undefined };
  if (named || fit.length === 0) refuseAppOnly(kinds, release, others, named);
  const what = `${release.name} ${release.version} is built for ${target}`;
  const lists = [...other.entries()].map(
    ([chip, ids]) =>
      `${ids
        .slice(0, 5)
        .map((id) => shorten(id))
        .join(
          ", ",
        )}${ids.length > 5 ? ` and ${ids.length - 5} more` : ""} ${ids.length === 1 ? "runs" : "run"} ${chip}`,
  );
  if (named) {
    throw new RequestError(
      `Refused: ${what}, and ${lists.join("; ")}. Leave ${count(other) === 1 ? "that device" : "those devices"} out, or roll out a release built for ${count(other) === 1 ? "its" : "their"} chip to ${count(other) === 1 ? "it" : "them"} in a rollout of its own.`,
    );
  }
  if (fit.length === 0) {
    throw new RequestError(
      `Refused: ${what}, and no selected device runs ${target} (${lists.join("; ")}). Pick a release built for their chip.`,
    );
  }
  return {
    fit,
    leftOut: `${count(other)} device${count(other) === 1 ? "" : "s"} of another chip left out (${what}): ${lists.join("; ")}`,
  };
}

function count(other: ReadonlyMap<string, string[]>): number {
  return [...other.values()].reduce((n, ids) => n + ids.length, 0);
}

/**
 * Splits the selected devices by the release kind's own check of each one
 * (ReleaseKind.checkDevice: an app's board, `.mpy`, room and agent). As for
 * chips, a list of ids naming a device that cannot take it is refused with
 * the first reason; from a tag or a line those devices are left out.
 */
export function byDevice<C extends ChipCandidate>(
  kind: ReleaseKind,
  artifact: Uint8Array,
  release: FirmwareRecord,
  candidates: readonly C[],
  states: ReadonlyMap<string, DeviceState>,
  named: boolean,
): { fit: C[]; leftOut: string | undefined } {
  const fit: C[] = [];
  const refused: Array<{ id: string; why: string }> = [];
  for (const c of candidates) {
    const state = states.get(c.id);
    try {
      if (state) kind.checkDevice(artifact, state, `${release.name} ${release.version} for ${c.id}`);
      fit.push(c);
    } catch (error) {
      if (!(error instanceof RequestError)) throw error;
      refused.push({ id: c.id, why: error.message });
    }
  }
  if (refused.length === 0) return { fit, leftOut: undefined };
  if (named) {
    const first = refused[0] as { id: string; why: string };
    throw new RequestError(
      `Refused: ${first.why.replace(/\.$/, "")}${refused.length > 1 ? ` (and ${refused.length - 1} more named device${refused.length > 2 ? "s" : ""} cannot take it)` : ""}. Leave ${refused.length === 1 ? "it" : "them"} out of the list.`,
    );
  }
  const ids = refused.map((r) => r.id);
  return {
    fit,
    leftOut: `${ids.length} device${ids.length === 1 ? "" : "s"} left out that cannot take ${release.name} ${release.version} (${ids.slice(0, 5).join(", ")}${ids.length > 5 ? ` and ${ids.length - 5} more` : ""}; first reason: ${shorten(refused[0]?.why ?? "", 160)})`,
  };
}
