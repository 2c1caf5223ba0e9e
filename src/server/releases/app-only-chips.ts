import type { DeviceState } from "../../protocol/mqtt-contract.ts";
import { RequestError } from "../base/request-error.ts";

/**
 * Chips whose agent takes app releases only: mpota has no firmware kind
 * for them and their agent refuses every firmware command (ready:false).
 * A firmware job for one is refused before anything is sent.
 */
const APP_ONLY_CHIPS: Record<string, string> = { rp2: "a Raspberry Pi Pico W (rp2)" };

/** Throws {@link RequestError} when the device's chip takes app updates only. */
export function refuseAppOnlyChip(state: DeviceState, source: string): void {
  const board = state.chip === undefined ? undefined : APP_ONLY_CHIPS[state.chip];
  if (board === undefined) return;
  throw new RequestError(
    `${source}: the device is ${board}, which takes app updates only: mpota does not update its firmware. Update its app with an app release (mpota update <device> <app>@<version>); flash its MicroPython by USB.`,
  );
}
