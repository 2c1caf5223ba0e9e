import type { Logger } from "pino";
import type { Clock, Timer } from "../../net/clock.ts";
import { repeat } from "../../net/repeating-timer.ts";
import type { KeyedQueue } from "../base/keyed-queue.ts";
import type { Deliveries, Delivery, DeliveryOutcome, DeliveryProgress } from "../deliveries/delivery.ts";
import type { DeliveryWords } from "../deliveries/delivery-words.ts";
import { FirmwareIntegrityError } from "../releases/firmware-files.ts";
import type { FirmwareLibrary } from "../releases/firmware-library.ts";
import type { CheckedArtifact } from "../releases/release-kind.ts";
import type { JobRecord } from "../storage/storage.ts";
import { targetText } from "./job-advice.ts";
import type { JobLedger } from "./job-ledger.ts";
import type { JobTimings } from "./job-timings.ts";

/**
 * While a firmware's push or an ESP32's pull runs, its progress is stored at
 * most this often (ms), its first message at once; each store is a commit.
 */
const PROGRESS_STORE_MS = 5000;

export interface JobPushesOptions {
  ledger: JobLedger;
  library: FirmwareLibrary;
  /** The deliveries by name: a release's kind names the one that brings it to the device. */
  deliveries: Deliveries;
  timings: JobTimings;
  /** Wall clock: lease renewal runs on it. */
  clock: Clock;
  maxConcurrent: number;
  /** The job runner's per-job queue: results are recorded in the job's order. */
  queue: KeyedQueue;
  logger: Logger;
  /** A delivery ended: a slot is free. */
  onEnded: () => void;
  /** Recording a result failed. */
  onError: (jobId: string, error: unknown) => void;
}

interface RunningPush {
  abort: AbortController;
  done: Promise<void>;
}

/**
 * The deliveries ("pushes") this instance runs: each asks the release
 * kind's delivery to bring the release to the device, holds its job's lease
 * (renewed while it runs), publishes progress, and records the outcome:
 * verifying after a complete delivery; recovering after a broken-off one
 * (the receiver needs a reset); a retry when the device never answered.
 */
export class JobPushes {
  private readonly running = new Map<string, RunningPush>();

  constructor(private readonly o: JobPushesOptions) {}

  has(jobId: string): boolean {
    return this.running.has(jobId);
  }

  /** Pushes being sent now. */
  get count(): number {
    return this.running.size;
  }

  get full(): boolean {
    return this.running.size >= this.o.maxConcurrent;
  }

  /** Stops every push; their jobs stay "pushing" for whoever takes them next. */
  async stop(): Promise<void> {
    for (const push of this.running.values()) push.abort.abort();
    await Promise.all([...this.running.values()].map((p) => p.done));
  }

  /** Starts a delivery of a job the caller holds; `message` picks the step's words. Returns without waiting for it. */
  async start(job: JobRecord, waitMs: number, message: (words: DeliveryWords) => string): Promise<void> {
    const { ledger } = this.o;
    let delivery: Delivery;
    try {
      delivery = this.o.deliveries.get((await this.o.library.kindOf(job.firmwareId)).delivery);
    } catch (error) {
      await ledger.fail(job, (error as Error).message);
      return;
    }
    if (delivery.unavailable) {
      await ledger.fail(job, delivery.unavailable.job);
      return;
    }
    if (this.full) return; // stays due; taken again when a push ends
    if (job.attempt >= job.maxAttempts) {
      await ledger.fail(job, job.error ?? "No tries left.");
      return;
    }
    const ip = job.targetIp;
    const port = job.targetPort;
    if (ip === null || port === null) {
      const reason = "The job has no address to push to; waiting for the device to take the command again.";
      await ledger.attemptFailed(job, reason, "command", "retry");
      return;
    }
    // The address was checked against the network policy when the device acked from it (JobRunner.accept).
    let artifact: CheckedArtifact;
    try {
      artifact = await this.o.library.readRelease(job.firmwareId);
    } catch (error) {
      if (!(error instanceof FirmwareIntegrityError)) throw error;
      await ledger.fail(job, error.message);
      return;
    }
    const started = await ledger.update(job, {
      patch: {
        phase: "pushing",
        attempt: job.attempt + 1,
        dueAt: ledger.now,
        progress: { bytes: 0, total: job.firmwareSize, rate: 0, retransmits: 0 },
      },
      steps: [
        ledger.step(
          "push-started",
          `${message(delivery.words)} Try ${job.attempt + 1} of ${job.maxAttempts}${delivery.words.where(job)}, by ${ledger.owner}.`,
          {
            ip,
            port,
            instance: ledger.owner,
          },
        ),
      ],
    });
    const abort = new AbortController();
    const push: RunningPush = { abort, done: Promise.resolve() };
    this.running.set(job.id, push);
    push.done = this.run(started, delivery, artifact, waitMs, abort).finally(() => {
      this.running.delete(job.id);
      this.o.onEnded();
    });
  }

  private async run(
    job: JobRecord,
    delivery: Delivery,
    artifact: CheckedArtifact,
    waitMs: number,
    abort: AbortController,
  ): Promise<void> {
    const { timings, ledger, logger } = this.o;
    let lastPublish = 0;
    let lastStore = Number.NEGATIVE_INFINITY;
    let live: DeliveryProgress = { bytes: 0, total: job.firmwareSize, rate: 0, retransmits: 0 };
    // Stores one after the other, so an older progress never lands over a newer one or the outcome.
    let storing = Promise.resolve();
    const renew = this.renewWhilePushing(job, abort);
    let outcome: DeliveryOutcome;
    try {
      logger.info(
        { job: job.id, device: job.deviceId, target: targetText(job), attempt: job.attempt },
        "push started",
      );
      outcome = await delivery.deliver({
        job,
        artifact,
        waitMs,
        signal: abort.signal,
        onProgress: (p) => {
          live = p;
          const now = ledger.now;
          if (now - lastPublish < timings.progressIntervalMs && p.bytes < p.total) return;
          lastPublish = now;
          ledger.publishProgress({ ...job, progress: p }, 0).catch(() => undefined);
          // Also stored as it goes, so a page opened meanwhile (or on another instance) lists it:
          // an app's fetch with each message (its files staged: a board reports once a file it
          // fetched, or every 8 files or 64 KiB, a few hundred reports at most), a firmware's push
          // or an ESP32's pull at most every PROGRESS_STORE_MS (a push's messages come twice a second).
          if (p.files === undefined && now - lastStore < PROGRESS_STORE_MS) return;
          lastStore = now;
          storing = storing.then(() =>
            ledger.storeProgress(job, p).catch((error: unknown) => {
              // The lease is renewed apart from this and stops the delivery when it is lost.
              logger.warn({ job: job.id, err: (error as Error).message }, "job progress not stored");
            }),
          );
        },
        // Read once the lease is being renewed: the delivery asks only when the device fetches.
        commandAt: () =>
          ledger.lastStepAt(job.id, "command").catch((error: unknown) => {
            // Without it a report kept from before the command counts, as it did before there was this check.
            logger.warn(
              { job: job.id, err: (error as Error).message },
              "could not read the job's command step",
            );
            return undefined;
          }),
        note: (kind, message, data) => {
          ledger.note(job.id, kind, message, data).catch((error: unknown) => {
            logger.warn({ job: job.id, kind, err: (error as Error).message }, "job note not stored");
          });
        },
      });
    } catch (error) {
      outcome = {
        kind: "failed",
        reason: `The push to ${targetText(job)} failed: ${(error as Error).message}`,
      };
    } finally {
      renew.cancel();
    }
    await storing;
    if (outcome.kind === "aborted") {
      // The server is stopping: leave the job in "pushing" for whoever takes it next, showing how
      // far this push came (a lost lease refuses the store: the job is another instance's by now).
      await ledger.storeProgress(job, live).catch(() => undefined);
      await ledger.release(job.id).catch(() => undefined);
      return;
    }
    const ended = outcome;
    await this.o.queue
      .run(job.id, () => this.record(job, live, ended, delivery.words))
      .catch((error: unknown) => this.o.onError(job.id, error));
  }

  /**
   * The lease must be proven while pushing: when it cannot be renewed (lost
   * to another instance, or the database is unreachable) the push stops
   * before the lease can run out, so two instances never send to one
   * receiver. On the injected clock, so tests can run it in virtual time.
   *
   * The lease runs from when it was taken (`leaseExpiresAt`), not from the
   * start of the push; the push stops at the first tick within two ticks
   * of its end, so at least one tick before it (a test in virtual time
   * found it stopping at the very moment the lease expired).
   */
  private renewWhilePushing(job: JobRecord, abort: AbortController): Timer {
    const { timings, ledger, logger, clock } = this.o;
    const jobId = job.id;
    const tick = Math.max(50, Math.floor(timings.leaseMs / 6));
    let leaseValidUntil = job.leaseExpiresAt ?? clock.now() + timings.leaseMs;
    return repeat(clock, tick, () => {
      if (clock.now() >= leaseValidUntil - 2 * tick && !abort.signal.aborted) {
        logger.error({ job: jobId }, "lease on a job could not be renewed in time; stopping the push");
        abort.abort();
        return;
      }
      const asked = clock.now();
      ledger.renew(jobId).then(
        (held) => {
          if (held) {
            leaseValidUntil = asked + timings.leaseMs;
            return;
          }
          logger.error({ job: jobId }, "lease on a job lost during its push; stopping the push");
          abort.abort();
        },
        () => undefined,
      );
    });
  }

  private async record(
    pushed: JobRecord,
    live: DeliveryProgress,
    outcome: Exclude<DeliveryOutcome, { kind: "aborted" }>,
    words: DeliveryWords,
  ): Promise<void> {
    const { ledger, timings, logger } = this.o;
    // The push is over: from here on, device messages for the job are handled normally.
    this.running.delete(pushed.id);
    const job = await ledger.claim(pushed.id);
    if (job?.phase !== "pushing") {
      logger.warn({ job: pushed.id }, "push finished, but the job changed meanwhile; result not recorded");
      if (job) await ledger.release(job.id);
      return;
    }
    // An ESP32 that switched, booted the new firmware and rolled back may report so before this is recorded.
    if (await ledger.failIfRolledBack(job)) return;
    const progress = { ...live };
    switch (outcome.kind) {
      case "delivered": {
        const done = outcome.progress;
        const verifying = await ledger.update(job, {
          patch: {
            phase: "verifying",
            pushedAt: ledger.now,
            dueAt: ledger.now + timings.verifyTimeoutMs,
            progress: done,
          },
          steps: [
            ledger.step("push-done", `${outcome.summary} Waiting for the device to boot it and report.`, {
              ...done,
              ...outcome.details,
              elapsedMs: Math.round(outcome.elapsedMs),
            }),
          ],
        });
        logger.info({ job: job.id, ...done }, "push done");
        // The receiver reboots at the first end datagram: a quick device may have reported before the push returned.
        await ledger.succeedIfReported(verifying);
        break;
      }
      case "stopped":
        await ledger.update(job, {
          patch: {
            phase: "recovering",
            dueAt: ledger.now + timings.receiverResetMs,
            progress,
            error: outcome.reason,
          },
          steps: [ledger.step("push-failed", outcome.reason, { bytes: live.bytes })],
        });
        break;
      case "silent":
        await this.silent(job, progress, outcome.neverAnswered, words);
        break;
      case "failed":
        if (outcome.final)
          await ledger.fail({ ...job, progress }, outcome.reason, [
            ledger.step("push-failed", outcome.reason),
          ]);
        else await ledger.attemptFailed({ ...job, progress }, outcome.reason, "command", "push-failed");
        break;
    }
    await ledger.release(job.id);
  }

  /** The device did not answer: silent since an earlier delivery, or never since it took the command. */
  private async silent(
    job: JobRecord,
    progress: DeliveryProgress,
    neverAnswered: string,
    words: DeliveryWords,
  ): Promise<void> {
    const { ledger, timings } = this.o;
    // Silent after an earlier push (not since the ack): it did not come back, and is not in OTA mode either.
    const silentDevice = job.pushedAt !== null && (job.ackedAt === null || job.pushedAt > job.ackedAt);
    const reason = silentDevice ? words.silentAfter(job) : neverAnswered;
    // A push of this job was cut off earlier (its instance died or lost its lease): part of
    // the app may be overwritten, and boot8266 then keeps the device in OTA mode, where it
    // never takes a command; and a receiver that keeps getting datagrams never resets its
    // stale buffer. So wait for the receiver's reset again and push again, while tries last.
    // (A device that fetches itself has no such receiver: a new command is its retry.)
    if (
      words.cutOff !== undefined &&
      !silentDevice &&
      job.attempt < job.maxAttempts &&
      (await ledger.hasStep(job.id, "interrupted"))
    ) {
      const text = `${reason} ${words.cutOff}`;
      await ledger.update(job, {
        patch: { phase: "recovering", dueAt: ledger.now + timings.receiverResetMs, progress, error: text },
        steps: [ledger.step("push-failed", text, { bytes: progress.bytes })],
      });
      return;
    }
    await ledger.attemptFailed(
      { ...job, progress },
      reason,
      silentDevice ? "push" : "command",
      "push-failed",
    );
  }
}
