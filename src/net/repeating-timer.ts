import type { Clock, Timer } from "./clock.ts";

/**
 * Runs `fn` every `ms` on `clock` until cancelled: the injected-clock form
 * of setInterval, so what repeats (lease renewal, heartbeats) runs in
 * virtual time in tests.
 */
export function repeat(clock: Clock, ms: number, fn: () => void): Timer {
  let timer: Timer | undefined;
  let cancelled = false;
  const arm = () => {
    timer = clock.setTimer(ms, () => {
      if (cancelled) return;
      arm();
      fn();
    });
  };
  arm();
  return {
    cancel: () => {
      cancelled = true;
      timer?.cancel();
    },
  };
}
