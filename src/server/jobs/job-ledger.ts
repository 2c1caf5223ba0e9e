import type { Logger } from "pino";
import type { Clock } from "../../net/clock.ts";
import type {
  SignedAppCommand,
  SignedOtaCommand,
  SignedPullCommand,
} from "../../protocol/command-signature.ts";
import type { Json, Topics } from "../api/topics.ts";
import { jobProgressMessage } from "../api/views.ts";
import type { FetchCommand } from "../deliveries/delivery.ts";
import { type DeliveryWords, secondsText } from "../deliveries/delivery-words.ts";
import type { MqttLink } from "../mqtt/mqtt-link.ts";
import { type ReleaseKind, rolledBackOf, runningOf } from "../releases/release-kind.ts";
import type { JobPatch, JobRecord, NewJobStep, RetryMode, Storage } from "../storage/storage.ts";
import type { JobCanceller, JobPhase } from "../storage/types.ts";
import type { CommandSigner } from "../trust/command-signer.ts";
import { gaveUpMessage } from "./job-advice.ts";
import type { JobTimings } from "./job-timings.ts";

export interface JobLedgerOptions {
  storage: Storage;
  link: MqttLink;
  topics: Topics;
  /** Wall clock. */
  clock: Clock;
  logger: Logger;
  /** This instance's name in job leases. */
  owner: string;
  timings: JobTimings;
  /** Signs every command (contract v2). */
  signer: CommandSigner;
  /** What the signed command adds when the job's release is fetched by the device (contract v3's `pull`, `app`). */
  fetchCommand?: (job: JobRecord) => Promise<FetchCommand | undefined>;
  /** The kind of the job's release: what the device reports running of it, and how it reports going back. */
  kindOf: (job: JobRecord) => Promise<ReleaseKind>;
  /** The words of the job's delivery ("pushing again", "following the device's fetch again"). */
  wordsOf: (job: JobRecord) => Promise<DeliveryWords>;
  /** Told of every job that ended (succeeded, failed, cancelled), once it is stored. */
  onJobEnded?: (job: JobRecord) => void;
}

/**
 * How a job changes: under its lease, in storage (fields and steps in one
 * transaction), then announced on the job's retained progress topic; and
 * the outcomes every path shares (retry with backoff, fail, succeed), each
 * withdrawing the retained command when the job ends.
 */
export class JobLedger {
  /** The command this instance signed last per active job (republished as it is). */
  private readonly signed = new Map<string, Json<SignedOtaCommand | SignedPullCommand | SignedAppCommand>>();

  constructor(private readonly o: JobLedgerOptions) {}

  /** Whether the job's log has a step of this kind. */
  async hasStep(id: string, kind: string): Promise<boolean> {
    return (await this.o.storage.jobs.steps(id)).some((step) => step.kind === kind);
  }

  /** When the job's last step of this kind was written, or undefined when it has none. */
  async lastStepAt(id: string, kind: string): Promise<number | undefined> {
    return (await this.o.storage.jobs.steps(id)).findLast((step) => step.kind === kind)?.at;
  }

  get now(): number {
    return this.o.clock.now();
  }

  get owner(): string {
    return this.o.owner;
  }

  step(kind: string, message: string, data: Record<string, unknown> | null = null): NewJobStep {
    return { at: this.now, kind, message, data };
  }

  claim(id: string): Promise<JobRecord | undefined> {
    return this.o.storage.jobs.claim({
      id,
      owner: this.o.owner,
      now: this.now,
      leaseMs: this.o.timings.leaseMs,
    });
  }

  release(id: string): Promise<void> {
    return this.o.storage.jobs.release({ id, owner: this.o.owner });
  }

  renew(id: string): Promise<boolean> {
    return this.o.storage.jobs.renew({
      id,
      owner: this.o.owner,
      now: this.now,
      leaseMs: this.o.timings.leaseMs,
    });
  }

  /**
   * Stores the progress of a delivery under way, without a step or a
   * message (the caller published it): what a page opened later, or another
   * instance, lists until the delivery ends. Throws LeaseLostError.
   */
  async storeProgress(job: JobRecord, progress: JobRecord["progress"]): Promise<void> {
    await this.o.storage.jobs.update({ id: job.id, owner: this.o.owner, now: this.now, patch: { progress } });
  }

  /** Changes a job this instance holds, and publishes its progress message. */
  async update(
    job: JobRecord,
    change: { patch: JobPatch; steps?: NewJobStep[]; release?: boolean },
  ): Promise<JobRecord> {
    const updated = await this.o.storage.jobs.update({
      id: job.id,
      owner: this.o.owner,
      now: this.now,
      patch: change.patch,
      ...(change.steps ? { steps: change.steps } : {}),
      ...(change.release ? { release: true } : {}),
    });
    await this.publishProgress(updated);
    return updated;
  }

  /** Appends an informational step (no lease needed). */
  note(
    jobId: string,
    kind: string,
    message: string,
    data: Record<string, unknown> | null = null,
  ): Promise<void> {
    return this.o.storage.jobs.addStep(jobId, this.step(kind, message, data));
  }

  /**
   * Publishes the job's signed command (retained). `fresh`: a new try, with
   * a new counter; otherwise (republishing after a reconnect) the payload
   * this instance signed last for the job, so a device that took it already
   * does not see a second one. Throws {@link CommandSigningError}.
   */
  async publishCommand(job: JobRecord, fresh = true): Promise<void> {
    let payload = fresh ? undefined : this.signed.get(job.id);
    if (payload === undefined) {
      payload = await this.o.signer.sign(job, await this.o.fetchCommand?.(job));
      this.signed.set(job.id, payload);
    }
    await this.o.link.publish(this.o.topics.device(job.deviceId, "cmd"), payload, { retain: true });
  }

  async publishProgress(job: JobRecord, qos: 0 | 1 = 1): Promise<void> {
    await this.o.link.publishJson(this.o.topics.jobProgress(job.id), jobProgressMessage(job, this.now), {
      retain: true,
      qos,
    });
  }

  /** Ends a job; the retained command is withdrawn so the device does not take it again at its next wake. */
  async finish(
    job: JobRecord,
    phase: JobPhase,
    error: string | null,
    ...steps: NewJobStep[]
  ): Promise<JobRecord> {
    return this.end(job, { phase, error }, steps);
  }

  /** Ends a job that has not reached the device: cancelled on request, or taken back by a rollout. */
  cancel(job: JobRecord, by: JobCanceller): Promise<JobRecord> {
    const message = by === "request" ? "Cancelled on request." : "Taken back by its rollout.";
    return this.end(job, { phase: "cancelled", error: null, cancelledBy: by }, [
      this.step("cancelled", message),
    ]);
  }

  private async end(
    job: JobRecord,
    outcome: Pick<JobPatch, "phase" | "error" | "cancelledBy">,
    steps: NewJobStep[],
  ): Promise<JobRecord> {
    const done = await this.update(job, {
      patch: { ...outcome, dueAt: null, finishedAt: this.now, attempt: job.attempt },
      steps,
      release: true,
    });
    await this.o.link.publish(this.o.topics.device(job.deviceId, "cmd"), "", { retain: true });
    this.signed.delete(job.id);
    this.o.onJobEnded?.(done);
    return done;
  }

  /** Ends the job as failed; `job.attempt` is the number of tries to report. */
  async fail(job: JobRecord, reason: string, steps: NewJobStep[] = []): Promise<void> {
    const message = gaveUpMessage(job, reason, (await this.o.wordsOf(job)).byHand(job));
    this.o.logger.warn({ job: job.id, device: job.deviceId, reason }, "job failed");
    await this.finish(job, "failed", message, ...steps, this.step("failed", message));
  }

  /** A try failed: retry after the backoff, or give up when no tries are left. */
  async attemptFailed(
    job: JobRecord,
    reason: string,
    mode: RetryMode,
    kind: string,
    data: Record<string, unknown> | null = null,
  ): Promise<void> {
    if (job.attempt >= job.maxAttempts) {
      await this.fail(job, reason, [this.step(kind, reason, data)]);
      return;
    }
    const { retryBaseMs, retryMaxMs } = this.o.timings;
    const backoff = Math.min(retryMaxMs, retryBaseMs * 2 ** Math.max(0, job.attempt - 1));
    const next = mode === "push" ? (await this.o.wordsOf(job)).retryShort : "asking the device again";
    const early = mode === "command" ? " (or at once when the device takes the retained command)" : "";
    await this.update(job, {
      patch: {
        phase: "retrying",
        retryMode: mode,
        attempt: job.attempt,
        dueAt: this.now + backoff,
        error: reason,
        progress: job.progress,
      },
      steps: [
        this.step(kind, reason, data),
        this.step(
          "retry",
          `Try ${job.attempt} of ${job.maxAttempts} failed; ${next} in ${secondsText(backoff)}${early}.`,
          { backoffMs: backoff, mode },
        ),
      ],
    });
  }

  /**
   * Ends the job as failed when the device's last state (since it took the
   * command) says it went back from this job's release (contract v3: an
   * ESP32's bootloader, or an app's loader): the release started and never
   * confirmed, so another try would end the same way.
   */
  async failIfRolledBack(job: JobRecord): Promise<boolean> {
    const device = await this.o.storage.devices.get(job.deviceId);
    if (!device?.state) return false;
    if ((device.lastStateAt ?? 0) < (job.ackedAt ?? job.createdAt)) return false;
    const back = rolledBackOf(await this.o.kindOf(job), device.state, job.id);
    if (!back) return false;
    await this.fail(job, back.reason, [this.step("rolled-back", back.reason, back.data)]);
    return true;
  }

  /** Ends the job as succeeded when the device reported the job's release since it took the command. */
  async succeedIfReported(job: JobRecord): Promise<boolean> {
    const device = await this.o.storage.devices.get(job.deviceId);
    const state = device?.state;
    if (!state || runningOf(await this.o.kindOf(job), state).identity !== job.firmwareId) return false;
    if ((device.lastStateAt ?? 0) < (job.ackedAt ?? job.createdAt)) return false;
    await this.finish(
      job,
      "succeeded",
      null,
      this.step(
        "succeeded",
        `Device reports ${job.firmwareName} ${job.firmwareVersion} (${job.firmwareId}): updated.`,
        {
          fw: job.firmwareId,
          ip: state.ip,
        },
      ),
    );
    this.o.logger.info({ job: job.id, device: job.deviceId }, "job succeeded");
    return true;
  }
}
