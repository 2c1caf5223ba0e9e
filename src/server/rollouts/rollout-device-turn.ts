/** A device's turn in a rollout: a job of its own, the job it already has, or the reason it fails. */
import { RequestError } from "../base/request-error.ts";
import { AppReplaceRefusedError } from "../releases/app-replace-policy.ts";
import type { NewRolloutEvent, RolloutDevicePatch, RolloutRecord } from "../storage/rollout-store.ts";
import type { JobRecord } from "../storage/storage.ts";
import type { RolloutEngineOptions } from "./rollout-engine-options.ts";
import { type DeviceStart, groupName } from "./rollout-step.ts";

/** Gives a device its turn: a job of its own (or the job it already has for the same firmware). */
export async function startDevice(
  o: Pick<RolloutEngineOptions, "storage" | "jobs">,
  r: RolloutRecord,
  s: DeviceStart,
  now: number,
): Promise<{ patch: RolloutDevicePatch; event: NewRolloutEvent; job?: JobRecord }> {
  const group = s.group;
  const scheduled = (job: JobRecord, message: string) => ({
    patch: {
      deviceId: s.deviceId,
      state: "scheduled" as const,
      jobId: job.id,
      turnAt: s.turnAt,
      deadlineAt: s.deadlineAt,
      sleepy: s.sleepy,
      fromFw: s.fromFw,
      reason: null,
    },
    event: { at: now, kind: "device-turn", message, data: { device: s.deviceId, job: job.id, group } },
    job,
  });
  const failed = (reason: string) => ({
    patch: { deviceId: s.deviceId, state: "failed" as const, finishedAt: now, fromFw: s.fromFw, reason },
    event: {
      at: now,
      kind: "device-failed",
      message: `${s.deviceId} failed: ${reason}`,
      data: { device: s.deviceId },
    },
  });
  // Not updated on purpose, as a device the rollout would downgrade (rollout-step.ts).
  const skipped = (reason: string) => ({
    patch: { deviceId: s.deviceId, state: "skipped" as const, finishedAt: now, fromFw: s.fromFw, reason },
    event: { at: now, kind: "device-skipped", message: reason, data: { device: s.deviceId } },
  });
  const active = await o.storage.jobs.activeForDevice(s.deviceId);
  if (active) {
    if (active.firmwareId === r.firmwareId) {
      return scheduled(
        active,
        `${s.deviceId}: its turn; it already had job ${active.id} to the same firmware, which the rollout follows.`,
      );
    }
    return failed(
      `It has job ${active.id} (${active.phase}) to ${active.firmwareName} ${active.firmwareVersion}, not this rollout's firmware. Cancel that job (\`mpota jobs cancel ${active.id}\`) or let it finish; the device was not updated by this rollout.`,
    );
  }
  try {
    const job = await o.jobs.create(s.deviceId, r.firmwareId, {
      maxAttempts: r.policy.maxAttempts,
      origin: `rollout ${r.id}, ${groupName(r, group).toLowerCase()}`,
      rollout: r.id,
      allowDowngrade: r.policy.allowDowngrade,
      ...(r.policy.replaceApp ? { replaceApp: true } : {}),
    });
    return scheduled(
      job,
      `${s.deviceId}: its turn; job ${job.id}${s.sleepy ? " (sleepy: it takes the command at its next wake)" : ""}.`,
    );
  } catch (error) {
    if (!(error instanceof RequestError)) throw error;
    if (error instanceof AppReplaceRefusedError) {
      return skipped(
        `Skipped: ${s.deviceId} now runs another app than when the rollout was created, and the rollout replaces no app without replace-app. ${error.message}`,
      );
    }
    // Another instance gave the device its turn at the same moment (this one's lease ran out
    // mid-step): follow that job rather than fail the device.
    const raced = await o.storage.jobs.activeForDevice(s.deviceId);
    if (raced?.firmwareId === r.firmwareId)
      return scheduled(raced, `${s.deviceId}: its turn; job ${raced.id}.`);
    return failed(error.message);
  }
}
