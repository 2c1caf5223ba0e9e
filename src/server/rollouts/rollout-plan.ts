import { RequestError } from "../base/request-error.ts";
import {
  type Downgrade,
  DowngradeRefusedError,
  downgradeRefusalText,
  type FirmwareName,
  type TargetFirmware,
  versionVerdict,
} from "../releases/downgrade-policy.ts";
import type { NewRolloutDevice, RolloutGroupPlan } from "../storage/rollout-store.ts";
import { DEFAULT_MIN_EXECUTED, type GroupInput, type RolloutInput } from "./rollout-request.ts";

/** A selected device as the plan sees it: its running firmware and sleep period. */
export interface Candidate {
  id: string;
  fw: string;
  /** Seconds between wakes; 0: always on. */
  sleep: number;
}

function sizeSpec(group: GroupInput): string {
  const s = group.size;
  return s.kind === "count" ? String(s.count) : s.kind === "percent" ? `${s.percent}%` : "rest";
}

/**
 * Group sizes for `total` devices: a count is that many devices, a percent
 * is that share of all devices (rounded up, at least one), "rest" all that
 * remain. Devices left over after the last group form a final "rest" group;
 * groups that would be empty are dropped.
 */
export function planGroups(
  groups: readonly GroupInput[],
  total: number,
  defaults: { successThreshold: number; errorThreshold: number; minExecuted: number | undefined },
): RolloutGroupPlan[] {
  const out: RolloutGroupPlan[] = [];
  let remaining = total;
  const withRest: GroupInput[] = groups.some((g) => g.size.kind === "rest")
    ? [...groups]
    : [...groups, { size: { kind: "rest" }, approve: false }];
  for (const g of withRest) {
    if (remaining <= 0) break;
    const s = g.size;
    const wanted =
      s.kind === "count"
        ? s.count
        : s.kind === "percent"
          ? Math.max(1, Math.ceil((s.percent * total) / 100))
          : remaining;
    const size = Math.min(remaining, wanted);
    remaining -= size;
    out.push({
      spec: sizeSpec(g),
      size,
      successThreshold: g.successThreshold ?? defaults.successThreshold,
      errorThreshold: g.errorThreshold ?? defaults.errorThreshold,
      minExecuted: Math.min(size, g.minExecuted ?? defaults.minExecuted ?? DEFAULT_MIN_EXECUTED),
      approve: g.approve,
    });
  }
  return out;
}

export interface RolloutPlan {
  groups: RolloutGroupPlan[];
  devices: NewRolloutDevice[];
  already: number;
}

/**
 * Puts the selected devices in order and into groups. Devices to update
 * come first (a canary that already runs the target would prove nothing):
 * for a list of ids in the order given, otherwise always-on devices before
 * sleepy ones (a canary should answer quickly), then by id. Devices already
 * on the target come last and count as done at once. A downgrade without
 * `allowDowngrade` refuses the whole rollout, naming the devices.
 */
export function planRollout(
  input: RolloutInput,
  target: TargetFirmware,
  candidates: readonly Candidate[],
  firmware: ReadonlyMap<string, FirmwareName>,
  now: number,
): RolloutPlan {
  const update: Candidate[] = [];
  const already: Candidate[] = [];
  const downgrades: Downgrade[] = [];
  for (const c of candidates) {
    const verdict = versionVerdict(c.fw, firmware.get(c.fw), target);
    if (verdict.kind === "already") already.push(c);
    else {
      if (verdict.kind === "downgrade") downgrades.push({ deviceId: c.id, from: verdict.from });
      update.push(c);
    }
  }
  if (downgrades.length > 0 && !input.allowDowngrade) {
    throw new DowngradeRefusedError(
      downgradeRefusalText(
        `roll out ${target.name} ${target.version}`,
        target,
        downgrades,
        `leave ${downgrades.length > 1 ? "these devices" : "this device"} out`,
      ),
    );
  }
  if (update.length === 0) {
    throw new RequestError(
      `${already.length === 1 ? `The selected device (${already[0]?.id}) already runs` : `All ${already.length} selected devices already run`} ${target.name} ${target.version}: there is nothing to roll out.`,
    );
  }
  if (input.selector.kind !== "devices") {
    update.sort(
      (a, b) => Number(a.sleep > 0) - Number(b.sleep > 0) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0),
    );
  }
  const ordered = [...update, ...already];
  const groups = planGroups(input.groups, ordered.length, input);
  const devices: NewRolloutDevice[] = [];
  let position = 0;
  for (const [index, group] of groups.entries()) {
    for (let i = 0; i < group.size; i++) {
      const c = ordered[position] as Candidate;
      const done = c.fw === target.id;
      devices.push({
        deviceId: c.id,
        group: index,
        position,
        fromFw: c.fw,
        state: done ? "done" : "pending",
        reason: done ? `Already ran ${target.name} ${target.version} when the rollout was created.` : null,
        finishedAt: done ? now : null,
      });
      position++;
    }
  }
  return { groups, devices, already: already.length };
}
