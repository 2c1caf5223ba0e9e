import { KeyedQueue } from "./keyed-queue.ts";

/** What wakes a scheduled feature when work is due (the jobs' `DueScheduler`). */
export interface WakeScheduler {
  start(): void;
  stop(): Promise<void>;
  kick(delayMs: number): void;
}

/**
 * The life cycle shared by the features that drive leased work from storage
 * (jobs, rollouts): start publishes the retained state again (a broker
 * without persistence forgot it) and then lets the scheduler look at what is
 * due; stop halts the scheduler, lets the work in hand finish, and gives this
 * instance's leases back so another can take the work over at once.
 */
export abstract class ScheduledFeature {
  /** One step at a time per item (job, rollout). */
  protected readonly queue = new KeyedQueue();
  /** True before start and after stop: due work is left for the next start. */
  protected stopped = true;
  protected abstract readonly scheduler: WakeScheduler;

  /** Publishes the retained state of the active items again; at start and after every reconnection. */
  abstract republish(): Promise<void>;

  /** Gives back every lease this instance holds (the last step of stop). */
  protected abstract releaseLeases(): Promise<void>;

  /** Stops work that runs outside the queue (pushes); between the scheduler and the queue. */
  protected async stopWork(): Promise<void> {}

  async start(): Promise<void> {
    this.stopped = false;
    await this.republish();
    this.scheduler.start();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.scheduler.stop();
    await this.stopWork();
    await this.queue.idle();
    await this.releaseLeases();
  }
}
