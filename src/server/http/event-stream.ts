import { randomBytes } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { HttpError } from "./http-error.ts";

/** The named events of `/api/v1/events`. */
export type StreamEventName = "device" | "job" | "firmware" | "rollout" | "reset";

export interface StreamEvent {
  id: string;
  name: StreamEventName;
  data: string;
}

export interface EventStreamOptions {
  /** Events kept for `Last-Event-ID` resume (default 500). */
  replay?: number;
  /** Comment line sent to idle streams so proxies and browsers keep them open (default 15 s). */
  heartbeatMs?: number;
  /** A client whose socket buffers more than this is dropped (it reconnects and resumes). */
  maxBufferedBytes?: number;
  /** Streams open at once at most (default 64); one more is refused with 503 and a JSON error. */
  maxClients?: number;
}

/**
 * One Server-Sent Events stream per page, multiplexing every live change
 * as named events with ids. A bounded ring of the last events lets a
 * reconnecting page resume with `Last-Event-ID`; one too old for the ring
 * (or from an earlier server process) gets a `reset` event and reloads.
 * Memory stays flat: the ring is bounded, a slow client is dropped rather
 * than buffered for, and a closed stream leaves nothing behind.
 */
export class EventStream {
  /** Ids are `<epoch>-<n>`: an id from an earlier process never matches. */
  private readonly epoch = randomBytes(3).toString("hex");
  private seq = 0;
  private readonly ring: StreamEvent[] = [];
  private readonly clients = new Set<ServerResponse>();
  private readonly replay: number;
  private readonly maxBuffered: number;
  private readonly maxClients: number;
  private heartbeat: NodeJS.Timeout | undefined;

  constructor(options: EventStreamOptions = {}) {
    this.replay = options.replay ?? 500;
    this.maxBuffered = options.maxBufferedBytes ?? 1024 * 1024;
    this.maxClients = options.maxClients ?? 64;
    this.heartbeat = setInterval(() => this.ping(), options.heartbeatMs ?? 15_000);
    this.heartbeat.unref();
  }

  get clientCount(): number {
    return this.clients.size;
  }

  get bufferedEvents(): number {
    return this.ring.length;
  }

  publish(name: StreamEventName, value: unknown): void {
    const event: StreamEvent = { id: `${this.epoch}-${++this.seq}`, name, data: JSON.stringify(value) };
    this.ring.push(event);
    if (this.ring.length > this.replay) this.ring.shift();
    const text = format(event);
    for (const client of this.clients) this.write(client, text);
  }

  /** Answers `GET /api/v1/events`: replays what the client missed, then streams. */
  open(request: IncomingMessage, response: ServerResponse): void {
    // Refused rather than dropping an open one: a crowd of new streams must not cut off the pages people watch.
    if (this.clients.size >= this.maxClients) {
      throw new HttpError(
        503,
        `The server has ${this.clients.size} event streams open, its limit (--http-max-event-clients); this one was not opened. Close a dashboard tab or raise the limit.`,
        { limit: this.maxClients },
        { "retry-after": "30" },
      );
    }
    response.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-store",
      connection: "keep-alive",
      "x-accel-buffering": "no",
    });
    response.write("retry: 2000\n\n");
    const header = request.headers["last-event-id"];
    const lastId = Array.isArray(header) ? header[0] : header;
    if (lastId) {
      const missed = this.since(lastId);
      if (missed === undefined) response.write(format({ id: this.lastId(), name: "reset", data: "{}" }));
      else for (const event of missed) response.write(format(event));
    }
    // A client that went away before its stream opened has no close event left to come.
    if (request.destroyed || response.destroyed || response.socket?.destroyed !== false) {
      response.destroy();
      return;
    }
    this.clients.add(response);
    const close = () => this.clients.delete(response);
    request.once("close", close);
    response.once("close", close);
  }

  /** Ends every stream (server stopping). */
  close(): void {
    clearInterval(this.heartbeat);
    this.heartbeat = undefined;
    for (const client of [...this.clients]) this.drop(client);
  }

  private lastId(): string {
    return `${this.epoch}-${this.seq}`;
  }

  /** The events after `id`, or undefined when they are no longer all in the ring. */
  private since(id: string): StreamEvent[] | undefined {
    const [epoch, n] = id.split("-");
    const seq = Number(n);
    if (epoch !== this.epoch || !Number.isSafeInteger(seq) || seq > this.seq) return undefined;
    if (seq === this.seq) return [];
    const first = this.ring[0];
    const firstSeq = first ? Number(first.id.split("-")[1]) : this.seq + 1;
    if (seq + 1 < firstSeq) return undefined;
    return this.ring.slice(seq + 1 - firstSeq);
  }

  private ping(): void {
    for (const client of this.clients) this.write(client, ": ping\n\n");
  }

  private write(client: ServerResponse, text: string): void {
    if (client.writableLength > this.maxBuffered) {
      this.drop(client);
      return;
    }
    client.write(text);
  }

  private drop(client: ServerResponse): void {
    this.clients.delete(client);
    client.end();
    client.socket?.destroySoon?.();
  }
}

function format(event: StreamEvent): string {
  return `id: ${event.id}\nevent: ${event.name}\ndata: ${event.data}\n\n`;
}
