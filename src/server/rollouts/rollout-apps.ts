/** Which selected boards run an app of another name, which a rollout of an app release would replace. */

import type { DeviceState } from "../../protocol/mqtt-contract.ts";
import { shorten } from "../../protocol/mqtt-contract.ts";
import { AppReplaceRefusedError, replacedApp, replacedAppText } from "../releases/app-replace-policy.ts";
import type { FirmwareName } from "../releases/downgrade-policy.ts";
import { type ReleaseKind, runningOf } from "../releases/release-kind.ts";

/** At most this many boards are named in a refusal or a left-out note; the rest are counted. */
const NAMED = 5;

function listed(replaced: ReadonlyArray<{ id: string; from: FirmwareName }>): string {
  const shown = replaced
    .slice(0, NAMED)
    .map((r) => replacedAppText(shorten(r.id), r.from))
    .join("; ");
  return `${shown}${replaced.length > NAMED ? `; and ${replaced.length - NAMED} more` : ""}`;
}

/**
 * Splits the selected boards into those the app release may go to and those
 * running an app of another name, which it would replace (app-replace-policy.ts).
 * With `replaceApp` every board may take it. Otherwise, as for chips, a list
 * of ids naming such a board is refused (the user named it), and so is a
 * selection where no other board is left; from a tag or a line they are
 * left out, with the reason returned for the rollout's log. Boards without
 * an app installed take it without the word.
 */
export function byAppName<C extends { id: string }>(
  kind: ReleaseKind,
  target: FirmwareName,
  candidates: readonly C[],
  states: ReadonlyMap<string, DeviceState>,
  named: boolean,
  replaceApp: boolean,
): { fit: C[]; leftOut: string | undefined } {
  if (replaceApp) return { fit: [...candidates], leftOut: undefined };
  const fit: C[] = [];
  const replaced: Array<{ id: string; from: FirmwareName }> = [];
  for (const c of candidates) {
    const state = states.get(c.id);
    const from = replacedApp(state && runningOf(kind, state), target);
    if (from) replaced.push({ id: c.id, from });
    else fit.push(c);
  }
  const n = replaced.length;
  if (n === 0) return { fit, leftOut: undefined };
  const boards = `${n} board${n === 1 ? "" : "s"}`;
  if (named || fit.length === 0) {
    throw new AppReplaceRefusedError(
      `Refusing to roll out ${target.name} ${target.version}: it would replace the app of ${boards} (${listed(replaced)}). If that is what you want, pass --replace-app (replaceApp: true), or leave ${n === 1 ? "this board" : "these boards"} out.`,
    );
  }
  return {
    fit,
    leftOut: `${boards} running another app left out (${listed(replaced)}; ${target.name} would replace it: pass --replace-app to include ${n === 1 ? "it" : "them"})`,
  };
}
