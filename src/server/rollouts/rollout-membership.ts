import type { RolloutDeviceState, RolloutRecord } from "../storage/rollout-store.ts";
import type { Storage } from "../storage/storage.ts";

/** Rollout device states in which the rollout still means to update (or is updating) the device. */
const OPEN_DEVICE_STATES: readonly RolloutDeviceState[] = ["pending", "scheduled", "overdue"];

export interface RolloutHold {
  rollout: RolloutRecord;
  state: RolloutDeviceState;
}

const label = (r: RolloutRecord) => (r.name ? `${r.id} ("${r.name}")` : r.id);

/**
 * The active rollout that will still update `deviceId`, if any. Active
 * rollouts are few (one per device at most), so this reads them rather than
 * keeping an index of its own.
 */
export async function rolloutHolding(storage: Storage, deviceId: string): Promise<RolloutHold | undefined> {
  for (const rollout of await storage.rollouts.list({ active: true })) {
    const entry = (await storage.rollouts.snapshot(rollout.id)).find((d) => d.deviceId === deviceId);
    if (entry && OPEN_DEVICE_STATES.includes(entry.state)) return { rollout, state: entry.state };
  }
  return undefined;
}

/** Why a manual update of the device is refused while a rollout holds it. */
export function heldByRolloutText(deviceId: string, hold: RolloutHold): string {
  const r = hold.rollout;
  return `Device ${deviceId} is in rollout ${label(r)} (${r.state}; the device is ${hold.state} there), which updates it to ${r.firmwareName} ${r.firmwareVersion}. Let the rollout do it, or abort the rollout first (\`mpota rollout abort ${r.id}\`).`;
}

/** The active rollouts whose target is the firmware `id`. */
export async function rolloutsTargeting(storage: Storage, id: string): Promise<RolloutRecord[]> {
  return (await storage.rollouts.list({ active: true })).filter((r) => r.firmwareId === id);
}

export function targetOfRolloutsText(what: string, rollouts: readonly RolloutRecord[]): string {
  const many = rollouts.length > 1;
  return `${what} is the target of active rollout${many ? "s" : ""} ${rollouts.map(label).join(", ")}. Let ${many ? "them" : "it"} finish or abort ${many ? "them" : "it"} first (\`mpota rollout abort ${rollouts[0]?.id}\`).`;
}
