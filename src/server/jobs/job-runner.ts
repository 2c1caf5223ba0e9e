import { randomBytes } from "node:crypto";
import type { Logger } from "pino";
import type { Clock } from "../../net/clock.ts";
import {
  type DeviceAck,
  type DeviceState,
  type DeviceStatus,
  shorten,
} from "../../protocol/mqtt-contract.ts";
import type { Topics } from "../api/topics.ts";
import { RequestError } from "../base/request-error.ts";
import { ScheduledFeature } from "../base/scheduled-feature.ts";
import type { Deliveries, Delivery, FetchCommand } from "../deliveries/delivery.ts";
import { type DeliveryWords, plainWords } from "../deliveries/delivery-words.ts";
import type { NetworkPolicy } from "../devices/network-policy.ts";
import type { MqttLink } from "../mqtt/mqtt-link.ts";
import { replacementNote } from "../releases/app-replace-policy.ts";
import { versionNote } from "../releases/downgrade-policy.ts";
import { FirmwareIntegrityError } from "../releases/firmware-files.ts";
import type { FirmwareLibrary } from "../releases/firmware-library.ts";
import {
  type DeviceRecord,
  type JobRecord,
  LeaseLostError,
  type Storage,
  StorageError,
  StorageUnavailableError,
} from "../storage/storage.ts";
import { isTerminal, type JobCanceller, type JobPhase } from "../storage/types.ts";
import { type CommandSigner, CommandSigningError } from "../trust/command-signer.ts";
import { noAckMessage } from "./job-advice.ts";
import { JobLedger } from "./job-ledger.ts";
import { JobMessages } from "./job-messages.ts";
import { JobPushes } from "./job-pushes.ts";
import { checkJobRequest, type JobCreateOptions } from "./job-request.ts";
import { DueScheduler } from "./job-scheduler.ts";
import type { JobTimings } from "./job-timings.ts";
import { releaseOnStop } from "./stop-release.ts";

export interface JobRunnerOptions {
  storage: Storage;
  link: MqttLink;
  topics: Topics;
  library: FirmwareLibrary;
  policy: NetworkPolicy;
  /** The deliveries this server has (a release's kind names its own); one may be unavailable (no signing key). */
  deliveries: Deliveries;
  /** Why a rollout holds a device against a manual update (from the composition root), or undefined. */
  rolloutHold?: (deviceId: string) => Promise<string | undefined>;
  /** Wall clock (times are stored). */
  clock: Clock;
  logger: Logger;
  /** This instance's name in job leases. */
  owner: string;
  timings: JobTimings;
  maxAttempts: number;
  maxConcurrentPushes: number;
  /**
   * Reads a device's retained state from the broker into storage (the
   * inbox's `refreshState`); called before a device is pushed again, so a
   * state no instance stored (it went to an instance that died, or came
   * while the database was down) is not missed.
   */
  refreshState?: (deviceId: string) => Promise<boolean>;
  /** Signs every command the runner publishes (contract v2). */
  signer: CommandSigner;
  /** Told of every job that ended, once it is stored (a rollout gives the freed slot its next device). */
  onJobEnded?: (job: JobRecord) => void;
  /**
   * Jobs that ended before this time have no retained progress to clear
   * (default 0: all of them may): an embedded broker that just started
   * holds none from before.
   */
  progressClearedBefore?: number;
}

/** Retained progress messages cleared in one look at most; the rest wait for the next. */
const PROGRESS_CLEAR_BATCH = 500;
/** How often the jobs that ended long enough ago are looked for. */
const PROGRESS_CLEAR_EVERY_MS = 10 * 60_000;

/** Pause between tries to take a job's lease that is held elsewhere. */
const LEASE_RETRY_MS = 25;

/**
 * Carries out update jobs per the contract: publish the retained command,
 * push on a ready ack, verify by the next state, push again when the device
 * stays silent (it probably sits in OTA mode), retry with backoff, give up
 * with the reason. Every change goes through storage under the job's lease,
 * so a restarted server (or another instance) carries on where it stopped;
 * nothing about a job lives only in memory.
 */
export class JobRunner extends ScheduledFeature {
  private readonly ledger: JobLedger;
  private readonly pushes: JobPushes;
  protected readonly scheduler: DueScheduler;
  private readonly messages: JobMessages;
  /** Jobs that ended before this have had their retained progress cleared. */
  private progressClearedUntil: number;
  private nextProgressClearAt = 0;
  /** The clearing under way, beside the looks: a slow broker or a failing query must not hold up due jobs. */
  private progressClearing: Promise<void> | undefined;

  constructor(private readonly o: JobRunnerOptions) {
    super();
    this.progressClearedUntil = o.progressClearedBefore ?? 0;
    const wordsOf = (job: JobRecord) => this.wordsOf(job);
    const kindOf = (job: JobRecord) => this.o.library.kindOf(job.firmwareId);
    this.ledger = new JobLedger({ ...o, fetchCommand: (job) => this.fetchCommand(job), kindOf, wordsOf });
    this.pushes = new JobPushes({
      ledger: this.ledger,
      library: o.library,
      deliveries: o.deliveries,
      timings: o.timings,
      clock: o.clock,
      maxConcurrent: o.maxConcurrentPushes,
      queue: this.queue,
      logger: o.logger,
      onEnded: () => this.scheduler.kick(0),
      onError: (jobId, error) => this.stepFailed(jobId, error),
    });
    this.messages = new JobMessages({
      storage: o.storage,
      ledger: this.ledger,
      policy: o.policy,
      timings: o.timings,
      logger: o.logger,
      queue: this.queue,
      withLease: (id, fn, waitMs) => this.withLease(id, fn, waitMs),
      kick: (delayMs) => this.scheduler.kick(delayMs),
      fetchedByDevice: (job) => this.fetchedByDevice(job),
      kindOf,
      wordsOf,
    });
    this.scheduler = new DueScheduler({
      clock: o.clock,
      pollMs: o.timings.pollMs,
      logger: o.logger,
      runDue: () => this.runDue(),
    });
  }

  /** The delivery of the job's release, or undefined when this server lacks it (the job then fails saying so). */
  private async deliveryOf(job: JobRecord): Promise<Delivery | undefined> {
    const kind = await this.o.library.kindOf(job.firmwareId);
    try {
      return this.o.deliveries.get(kind.delivery);
    } catch {
      return undefined;
    }
  }

  /** Whether the job's release is one the device fetches itself (an ESP32's image, an app). */
  async fetchedByDevice(job: JobRecord): Promise<boolean> {
    return (await this.deliveryOf(job))?.fetchedByDevice === true;
  }

  /** The words of the job's delivery; plain ones when this server lacks it. */
  private async wordsOf(job: JobRecord): Promise<DeliveryWords> {
    return (await this.deliveryOf(job))?.words ?? plainWords;
  }

  /** What the signed command adds when the job's release is one the device fetches itself. */
  private async fetchCommand(job: JobRecord): Promise<FetchCommand | undefined> {
    const delivery = await this.deliveryOf(job);
    if (!delivery?.command) return undefined; // without the delivery the push refuses the job with the reason
    const fields = delivery.command(job, await this.o.library.readRelease(job.firmwareId));
    if (!fields) {
      throw new CommandSigningError(
        "The command has no URL to fetch from yet: this server's HTTP listener (port 0) is not listening. Start the server with a fixed --http-port, or give --device-url.",
      );
    }
    return fields;
  }

  private get now(): number {
    return this.o.clock.now();
  }

  /**
   * Publishes the retained command and progress of every active job again:
   * a broker without persistence (the embedded one) forgets them when it
   * restarts. Called at start and after every reconnection.
   */
  async republish(): Promise<void> {
    for (const job of await this.o.storage.jobs.list({ active: true })) {
      if (job.phase !== "queued") {
        await this.ledger.publishCommand(job, false).catch((error: unknown) => {
          if (!(error instanceof CommandSigningError)) throw error;
          this.o.logger.warn(
            { job: job.id, device: job.deviceId, reason: error.message },
            "command not republished",
          );
        });
      }
      await this.ledger.publishProgress(job);
    }
  }

  /** Stops pushes at stop; their jobs are resumed by the next start. */
  protected override async stopWork(): Promise<void> {
    await this.progressClearing;
    await this.pushes.stop();
  }

  protected async releaseLeases(): Promise<void> {
    await releaseOnStop(() => this.o.storage.jobs.releaseAll(this.o.owner), this.o.logger, "job");
  }

  /** Pushes this instance is sending now. */
  get activePushes(): number {
    return this.pushes.count;
  }

  // ---- requests -------------------------------------------------------------

  /** Creates a job for a known device and a release in the store. */
  async create(deviceId: string, firmwareRef: string, options: JobCreateOptions = {}): Promise<JobRecord> {
    const { firmware, verdict, replaces, from } = await checkJobRequest(
      this.o,
      deviceId,
      firmwareRef,
      options,
    );
    const allowDowngrade = options.allowDowngrade === true;
    const id = `j-${randomBytes(5).toString("hex")}`;
    // A replacement's versions are of two apps: its note says what it replaces, not how they order.
    const note = replaces ? replacementNote(replaces) : versionNote(from, verdict, firmware, allowDowngrade);
    const result = await this.o.storage.jobs.create(
      {
        id,
        deviceId,
        firmwareId: firmware.id,
        firmwareName: firmware.name,
        firmwareVersion: firmware.version,
        firmwareSize: firmware.size,
        maxAttempts: options.maxAttempts ?? this.o.maxAttempts,
        createdAt: this.now,
      },
      this.ledger.step(
        "created",
        `Update of ${deviceId} to ${firmware.name} ${firmware.version} (${firmware.id}) requested${options.origin ? ` by ${options.origin}` : ""}.${note ? ` ${note}` : ""}`,
        {
          from,
          ...(allowDowngrade ? { allowDowngrade: true } : {}),
          ...(verdict.kind === "downgrade" ? { downgradeFrom: verdict.from } : {}),
          ...(replaces ? { replaceApp: true, replacesApp: replaces } : {}),
        },
      ),
    );
    if (!result.ok) {
      const a = result.active;
      throw new RequestError(
        `Device ${deviceId} already has job ${a.id} (${a.phase}, to ${a.firmwareName} ${a.firmwareVersion}). Wait for it, or cancel it first: \`mpota jobs cancel ${a.id}\`.`,
      );
    }
    this.o.logger.info({ job: id, device: deviceId, firmware: firmware.id }, "job created");
    await this.ledger.publishProgress(result.job);
    this.scheduler.kick(0);
    return result.job;
  }

  /** Cancels a job that has not reached the device yet, on someone's request or for a rollout taking it back. */
  async cancel(jobId: string, by: JobCanceller = "request"): Promise<JobRecord> {
    const job = typeof jobId === "string" ? await this.o.storage.jobs.get(jobId) : undefined;
    if (!job)
      throw new RequestError(`There is no job "${shorten(jobId)}". \`mpota jobs\` lists them.`, {
        notFound: true,
      });
    if (isTerminal(job.phase)) {
      throw new RequestError(
        `Job ${job.id} has already ${job.phase === "cancelled" ? "been cancelled" : job.phase}.`,
      );
    }
    return this.queue.run(job.id, async () => {
      const claimed = this.pushes.has(job.id) ? undefined : await this.ledger.claim(job.id);
      if (!claimed) {
        throw new RequestError(
          `Job ${job.id} is busy (being pushed, possibly by another server instance); try again when the push is over.`,
        );
      }
      if (!["queued", "waiting", "retrying"].includes(claimed.phase)) {
        await this.ledger.release(claimed.id);
        throw new RequestError(
          `Job ${job.id} cannot be cancelled now: it is ${claimed.phase} (the device has taken the command and ${(await this.wordsOf(claimed)).busy}). Cancelling would leave the device without a retry path; wait for the job to finish.`,
        );
      }
      const done = await this.ledger.cancel(claimed, by);
      this.o.logger.info({ job: job.id, by }, "job cancelled");
      return done;
    });
  }

  // ---- device messages (called in each device's message order) ----------------

  handleState(device: DeviceRecord, state: DeviceState, receivedAt?: number): Promise<void> {
    return this.messages.handleState(device, state, receivedAt);
  }

  handleStatus(device: DeviceRecord, status: DeviceStatus): Promise<void> {
    return this.messages.handleStatus(device, status);
  }

  handleAck(device: DeviceRecord, ack: DeviceAck): Promise<void> {
    return this.messages.handleAck(device, ack);
  }

  // ---- due jobs -------------------------------------------------------------

  /** Leases the jobs whose time has come and moves each; returns how long to sleep. */
  private async runDue(): Promise<number> {
    if (this.stopped) return this.o.timings.pollMs;
    this.startProgressClearing();
    const full = this.pushes.full;
    const due = await this.o.storage.jobs.claimDue({
      owner: this.o.owner,
      now: this.now,
      leaseMs: this.o.timings.leaseMs,
      limit: 32,
      ...(full ? { phases: ["queued", "waiting"] as JobPhase[] } : {}),
    });
    for (const job of due) {
      this.queue
        .run(job.id, () => this.advance(job.id))
        .catch((error: unknown) => this.stepFailed(job.id, error));
    }
    const next = await this.o.storage.jobs.nextDueAt();
    return full || next === null ? this.o.timings.pollMs : Math.max(10, next - this.now);
  }

  /** Starts clearing old progress when it is time and none is under way; its failure is logged, not the look's. */
  private startProgressClearing(): void {
    if (this.progressClearing || this.now < this.nextProgressClearAt) return;
    this.progressClearing = this.clearOldProgress()
      .catch((error: unknown) => {
        // Storage that cannot be reached is the scheduler's to report; the clearing tries again at the next look.
        const level = error instanceof StorageUnavailableError ? "debug" : "warn";
        this.o.logger[level]({ err: (error as Error).message }, "old job progress not cleared yet");
      })
      .finally(() => {
        this.progressClearing = undefined;
      });
  }

  /**
   * Clears the retained progress of the jobs that ended more than
   * progressKeptMs ago, a batch a time. Every instance does it (clearing
   * twice is harmless); a broker that cannot be reached leaves it for later.
   */
  private async clearOldProgress(): Promise<void> {
    const now = this.now;
    const { progressKeptMs } = this.o.timings;
    const to = now - progressKeptMs;
    const ended = await this.o.storage.jobs.endedBetween({
      from: this.progressClearedUntil,
      to,
      limit: PROGRESS_CLEAR_BATCH,
    });
    try {
      for (const job of ended)
        await this.o.link.publish(this.o.topics.jobProgress(job.id), "", { retain: true });
    } catch (error) {
      this.o.logger.debug({ err: (error as Error).message }, "old job progress not cleared yet");
      return;
    }
    const last = ended.at(-1);
    if (ended.length < PROGRESS_CLEAR_BATCH || last === undefined) {
      this.progressClearedUntil = to;
      this.nextProgressClearAt = now + Math.min(PROGRESS_CLEAR_EVERY_MS, progressKeptMs / 4);
    } else {
      // The next batch starts at the last one's end time (those at that time are cleared again), and moves on.
      this.progressClearedUntil = Math.max(last.finishedAt, this.progressClearedUntil + 1);
    }
  }

  private stepFailed(jobId: string, error: unknown): void {
    if (error instanceof LeaseLostError) {
      this.o.logger.warn({ job: jobId, err: error.message }, "job taken over by another instance");
      return;
    }
    this.o.logger.error(
      { job: jobId, err: (error as Error).stack ?? String(error) },
      "job step failed; it will be retried",
    );
    this.ledger.release(jobId).catch(() => undefined);
  }

  /**
   * Before pushing a device again: ends the job as succeeded when the device
   * already reports the target, in storage or in its retained state on the
   * broker.
   */
  private async reportsTarget(job: JobRecord): Promise<boolean> {
    if (await this.ledger.succeedIfReported(job)) return true;
    if (!this.o.refreshState) return false;
    try {
      await this.o.refreshState(job.deviceId);
    } catch (error) {
      // The database is away: the job stays as it is and is tried again on a later poll.
      if (error instanceof StorageError) throw error;
      this.o.logger.warn(
        { job: job.id, device: job.deviceId, err: (error as Error).message },
        "could not read the device's retained state",
      );
      return false;
    }
    // Checked again even when the refresh found nothing new: the inbox may have stored it meanwhile.
    return this.ledger.succeedIfReported(job);
  }

  /** Moves a job whose due time has come. Runs in the job's queue. */
  private async advance(jobId: string): Promise<void> {
    if (this.stopped) return;
    const { timings } = this.o;
    await this.withLease(jobId, async (job) => {
      if (job.dueAt === null || job.dueAt > this.now) return;
      switch (job.phase) {
        case "queued":
          await this.sendCommand(job, "Command published; waiting for the device to take it.");
          return;
        case "waiting": {
          const counted = { ...job, attempt: job.attempt + 1 };
          await this.ledger.attemptFailed(
            counted,
            noAckMessage(job, timings.ackTimeoutMs),
            "command",
            "ack-timeout",
          );
          return;
        }
        case "ready":
          await this.pushes.start(job, timings.firstAnswerMs, (words) => words.start);
          return;
        case "pushing":
          // The lease ran out mid-push: this or another instance stopped while pushing.
          // The push may have ended just before: the device then already reports the new firmware.
          if (await this.reportsTarget(job)) return;
          await this.ledger.update(job, {
            patch: { phase: "recovering", dueAt: this.now + timings.receiverResetMs },
            steps: [
              this.ledger.step("interrupted", (await this.wordsOf(job)).interrupted(timings.receiverResetMs)),
            ],
          });
          return;
        case "recovering":
          if (await this.reportsTarget(job)) return;
          await this.pushes.start(job, timings.repushAnswerMs, (words) => words.again);
          return;
        case "verifying": {
          if (await this.reportsTarget(job)) return;
          if (job.attempt >= job.maxAttempts) {
            await this.ledger.fail(job, (await this.wordsOf(job)).silentAfter(job));
            return;
          }
          const words = await this.wordsOf(job);
          await this.ledger.note(job.id, "verify-timeout", words.verifyTimeout(timings.verifyTimeoutMs));
          await this.pushes.start(job, timings.repushAnswerMs, (w) => w.afterSilence);
          return;
        }
        case "retrying":
          if (job.retryMode === "push")
            await this.pushes.start(job, timings.repushAnswerMs, (words) => words.retry);
          else await this.sendCommand(job, "Command published again; waiting for the device to take it.");
          return;
        default:
          return;
      }
    });
  }

  private async sendCommand(job: JobRecord, message: string): Promise<void> {
    try {
      await this.o.library.readRelease(job.firmwareId);
    } catch (error) {
      if (!(error instanceof FirmwareIntegrityError)) throw error;
      await this.ledger.fail(job, error.message);
      return;
    }
    const { ackTimeoutMs } = this.o.timings;
    const updated = await this.ledger.update(job, {
      patch: { phase: "waiting", dueAt: ackTimeoutMs > 0 ? this.now + ackTimeoutMs : null },
      steps: [this.ledger.step("command", message, { topic: this.o.topics.device(job.deviceId, "cmd") })],
    });
    try {
      await this.ledger.publishCommand(updated);
    } catch (error) {
      if (!(error instanceof CommandSigningError)) throw error;
      await this.ledger.fail(updated, error.message);
    }
  }

  /** Runs `fn` holding the job's lease; gives the lease up afterwards unless a push started. */
  /**
   * Runs `fn` holding the job's lease. With `waitMs` (device messages), a
   * lease held elsewhere is waited for: it is held for a step, milliseconds,
   * by another instance or a due check, and a device's ack must not be lost
   * to that moment.
   */
  private async withLease(id: string, fn: (job: JobRecord) => Promise<void>, waitMs = 0): Promise<void> {
    if (this.pushes.has(id)) return;
    let job = await this.ledger.claim(id);
    for (const until = this.now + waitMs; !job && this.now < until && !this.stopped; ) {
      await this.o.clock.sleep(LEASE_RETRY_MS);
      if (this.pushes.has(id)) return;
      job = await this.ledger.claim(id);
    }
    if (!job) {
      this.o.logger.debug({ job: id }, "job is leased elsewhere; leaving it");
      return;
    }
    try {
      await fn(job);
    } finally {
      if (!this.pushes.has(id)) await this.ledger.release(id);
    }
  }
}
