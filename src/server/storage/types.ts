/**
 * The words the job and rollout stores share (storage.ts, rollout-store.ts
 * both import them; neither imports the other for them).
 */

/**
 * Where a job is. Terminal: succeeded, failed, cancelled.
 * - queued: created; the command is not published yet.
 * - waiting: command published (retained); waiting for the device to take it.
 * - ready: the device acknowledged and is resetting into OTA mode (boot delay).
 * - pushing: the image is being sent.
 * - verifying: sent; waiting for the device's next state.
 * - recovering: a push broke off; waiting for the receiver to reset before pushing again.
 * - retrying: an attempt failed; waiting (backoff) before the next one.
 */
export type JobPhase =
  | "queued"
  | "waiting"
  | "ready"
  | "pushing"
  | "verifying"
  | "recovering"
  | "retrying"
  | "succeeded"
  | "failed"
  | "cancelled";

/** Who cancels a job: a request (the CLI, the dashboard, the bridge) or a rollout taking its job back. */
export type JobCanceller = "request" | "rollout";

export const TERMINAL_PHASES: readonly JobPhase[] = ["succeeded", "failed", "cancelled"];
export const ACTIVE_PHASES: readonly JobPhase[] = [
  "queued",
  "waiting",
  "ready",
  "pushing",
  "verifying",
  "recovering",
  "retrying",
];

export function isTerminal(phase: JobPhase): boolean {
  return TERMINAL_PHASES.includes(phase);
}

/** A job's or rollout's lease: who holds it. */
export interface HeldLease {
  id: string;
  owner: string;
}
