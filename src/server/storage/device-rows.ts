import type { DeviceState, DeviceStatus } from "../../protocol/mqtt-contract.ts";
import type { DeviceRecord, DeviceStateEntry } from "./storage.ts";

/** The rows of `devices` and `device_states` as records, for both backends. */

type Row = Record<string, unknown>;

export function deviceFromRow(row: Row): DeviceRecord {
  return {
    id: row.id as string,
    state: row.state === null ? null : (JSON.parse(row.state as string) as DeviceState),
    status: row.status as DeviceStatus | null,
    statusAt: row.status_at as number | null,
    firstSeen: row.first_seen as number,
    lastSeen: row.last_seen as number,
    lastStateAt: row.last_state_at as number | null,
    nextWakeAt: row.next_wake_at as number | null,
    stateDigest: row.state_digest as string | null,
  };
}

/**
 * The condition on a state's upsert that keeps the stored state when it was received after the
 * new one, by at most `window` ms (a SQL parameter): see DeviceStore.recordState.
 */
export const notStale = (window: string): string =>
  `devices.state_received_at IS NULL OR excluded.state_received_at >= devices.state_received_at
     OR devices.state_received_at - excluded.state_received_at > ${window}`;

export function deviceStateFromRow(row: Row): DeviceStateEntry {
  return {
    deviceId: row.device_id as string,
    at: row.at as number,
    state: JSON.parse(row.state as string),
  };
}
