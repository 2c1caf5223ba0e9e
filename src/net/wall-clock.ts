import { type Clock, systemClock } from "./clock.ts";

/**
 * The server's clock: like {@link systemClock}, but `now()` is wall time
 * (ms since the epoch), because the server stores times (due times, leases,
 * last seen) that must mean the same after a restart and to other instances.
 */
export const wallClock: Clock = {
  now: () => Date.now(),
  setTimer: (ms, fn) => systemClock.setTimer(ms, fn),
  sleep: (ms) => systemClock.sleep(ms),
};
