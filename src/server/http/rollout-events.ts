import type { Logger } from "pino";
import type { RolloutView } from "../api/rollout-api.ts";
import type { Topics } from "../api/topics.ts";
import type { MqttLink } from "../mqtt/mqtt-link.ts";
import { readBridgeResponse, readRolloutProgress } from "../mqtt/topic-readers.ts";
import type { RolloutEngine } from "../rollouts/rollout-engine.ts";
import { rolloutView } from "../rollouts/rollout-views.ts";
import type { Storage } from "../storage/storage.ts";
import type { EventStream } from "./event-stream.ts";

export interface RolloutEventsOptions {
  link: MqttLink;
  topics: Topics;
  storage: Storage;
  stream: EventStream;
  logger: Logger;
  /** Adds how the rollout's release travels, as the engine's list and show do. */
  rollouts: Pick<RolloutEngine, "withDelivery">;
  /** Changes within this window are looked at once (default 200 ms). */
  coalesceMs?: number;
}

const ENDED = new Set(["completed", "aborted"]);

/** Devices whose outcome may still change: an ended rollout is watched until it has none. */
function open(view: RolloutView): number {
  const c = view.counts;
  return c.pending + c.scheduled + c.pushing + c.verifying + c.overdue;
}

/**
 * Sends `rollout` events on the page's one stream: the rollout's view, as
 * `GET /api/v1/rollouts` and `mpota rollout show --json` show it (the same
 * function of storage, src/server/rollouts/rollout-views.ts), whenever it
 * changed. What says a rollout may have changed: its retained progress
 * topic (the engine publishes it after each step), a bridge reply to a
 * rollout request (the CLI's pause, resume, abort), an HTTP request, and
 * any job progress (a job going from pushing to verifying moves a device
 * between a rollout's columns without a step of the engine).
 *
 * Memory stays flat: one pending set of rollout ids, and the last view sent
 * of each rollout still being watched (the active ones, and ended ones with
 * devices still being updated); a view is sent only when it differs.
 */
export class RolloutEvents {
  private readonly pending = new Set<string>();
  private readonly lastSent = new Map<string, string>();
  private scanActive = false;
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;
  private stopped = false;
  private readonly filters: string[];

  constructor(private readonly o: RolloutEventsOptions) {
    const t = o.topics;
    this.filters = [t.allRolloutProgress, t.bridgeResponses("rollout")];
  }

  /** Rollouts whose last sent view is kept (active ones, and ended ones with devices still open). */
  get watched(): number {
    return this.lastSent.size;
  }

  async start(): Promise<void> {
    const { link, topics: t } = this.o;
    const progress = `${t.base}/bridge/rollouts/`;
    // Retained progress and replies replayed at subscription are history, not news.
    await link.subscribe(t.allRolloutProgress, readRolloutProgress, (m) => {
      if (!m.retained) this.changed(m.topic.slice(progress.length));
    });
    await link.subscribe(t.bridgeResponses("rollout"), readBridgeResponse, (m) => {
      const data = m.payload.data as { id?: unknown };
      if (!m.retained && m.payload.status === "ok" && typeof data.id === "string") this.changed(data.id);
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    for (const filter of this.filters) await this.o.link.unsubscribe(filter).catch(() => undefined);
    await this.flushing;
  }

  /**
   * With no page open there is nobody to tell, and nothing is read: in a
   * large rollout a look at every watched rollout each 200 ms cost about a
   * tenth of the server's CPU. A page that opens reads the rollouts over
   * HTTP; the rollouts watched stay watched, so the next change after it
   * opened sends each one that differs from the view sent last.
   */
  private unheard(): boolean {
    return this.o.stream.clientCount === 0;
  }

  /** A rollout changed (or may have): its view is sent soon if it differs from the last one sent. */
  changed(id: string): void {
    if (this.stopped || this.unheard()) return;
    if (this.pending.size < 1024) this.pending.add(id);
    else this.scanActive = true;
    this.schedule();
  }

  /** A job moved: every watched rollout is looked at soon. */
  jobChanged(): void {
    if (this.stopped || this.unheard()) return;
    this.scanActive = true;
    this.schedule();
  }

  private schedule(): void {
    if (this.timer === undefined && this.flushing === undefined)
      this.timer = setTimeout(() => this.startFlush(), this.o.coalesceMs ?? 200);
  }

  private startFlush(): void {
    this.timer = undefined;
    this.flushing = this.flush()
      .catch((error: unknown) =>
        this.o.logger.warn({ err: (error as Error).message }, "rollout event not sent"),
      )
      .finally(() => {
        this.flushing = undefined;
        if (!this.stopped && (this.pending.size > 0 || this.scanActive)) this.schedule();
      });
  }

  private async flush(): Promise<void> {
    const ids = new Set(this.pending);
    this.pending.clear();
    if (this.scanActive) {
      this.scanActive = false;
      for (const id of this.lastSent.keys()) ids.add(id);
      for (const r of await this.o.storage.rollouts.list({ active: true })) ids.add(r.id);
    }
    const rollouts = this.o.storage.rollouts;
    for (const id of ids) {
      if (this.stopped) return;
      const r = await rollouts.get(id);
      if (!r) {
        this.lastSent.delete(id);
        continue;
      }
      const view = await this.o.rollouts.withDelivery(r, rolloutView(r, await rollouts.snapshot(id)));
      const text = JSON.stringify(view);
      if (this.lastSent.get(id) !== text) this.o.stream.publish("rollout", view);
      if (ENDED.has(view.state) && open(view) === 0) this.lastSent.delete(id);
      else this.lastSent.set(id, text);
    }
  }
}
