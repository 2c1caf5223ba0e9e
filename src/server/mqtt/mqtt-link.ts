import type { IPublishPacket, MqttClient } from "mqtt";
import type { Logger } from "pino";
import { UsageError } from "../../errors.ts";
import { type Json, type Topic, toJson } from "../api/topics.ts";
import { type ConnectOptions, connectClient, type MqttConnection } from "./mqtt-connect.ts";
import type { Inbound, PayloadReader, RawMessage, Reading } from "./payload-reader.ts";

/** Longest wait for the broker's acknowledgement of a publish. */
export const PUBLISH_WAIT_MS = 5000;

/** Gets each message of a subscription whose payload its reader accepted. */
export type MessageHandler<P> = (message: Inbound<P>) => void | Promise<void>;

export interface SubscribeOptions {
  /** One instance of the group gets each message (see {@link MqttLink}). */
  shared?: boolean;
  /** Called for a payload the reader refused, instead of logging it (the bridge answers the sender). */
  refused?: (message: RawMessage, refusal: { reason: string; log?: string }) => void | Promise<void>;
}

/** A handler with the reader its payloads go through. */
interface Reader {
  read: PayloadReader<unknown>;
  handle: MessageHandler<unknown>;
  refused: SubscribeOptions["refused"];
}

/** True when `topic` matches the subscription `filter` (with `+` and `#`). */
export function topicMatches(filter: string, topic: string): boolean {
  const f = filter.split("/");
  const t = topic.split("/");
  for (let i = 0; i < f.length; i++) {
    if (f[i] === "#") return true;
    if (i >= t.length) return false;
    if (f[i] !== "+" && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}

/** A subscription of the link: one filter on the broker, any number of handlers. */
interface Subscription {
  /** What the broker gets: the filter, or `$share/<group>/<filter>`. */
  brokerFilter: string;
  /** The filter topics are matched against. */
  filter: string;
  /** MQTT 5 subscription identifier: tells which subscription a message came through. */
  id: number;
  handlers: Reader[];
}

/**
 * The server's one MQTT client, shared by its features: each feature
 * subscribes with its own handler; a handler that throws is logged and the
 * next message goes on.
 *
 * With `sharedGroup` (MQTT 5), subscriptions made with `shared: true` go to
 * `$share/<group>/<filter>`: the broker hands each message to one instance
 * of the group. The other subscriptions still get every message. A message
 * goes only to the handlers of the subscription it came through (MQTT 5
 * subscription identifiers), so a topic covered by a shared and a plain
 * subscription is not handled twice.
 */
export class MqttLink {
  private readonly subscriptions = new Map<string, Subscription>();
  private readonly byId = new Map<number, Subscription>();
  private nextId = 1;
  private closed = false;
  /** Topics readRetained is reading, with how many reads (MQTT 3.1.1 cannot tell subscriptions apart). */
  private readonly reading = new Map<string, number>();
  private readonly mqtt5: boolean;

  constructor(
    readonly client: MqttClient,
    private readonly logger: Logger,
    /** The shared-subscription group of the server instances (MQTT 5 only). */
    readonly sharedGroup?: string,
  ) {
    this.mqtt5 = client.options.protocolVersion === 5;
    if (sharedGroup !== undefined && !this.mqtt5)
      throw new UsageError("Shared subscriptions need an MQTT 5 connection.");
    client.on("message", (topic, payload, packet) => this.dispatch(topic, payload, packet));
    client.on("error", (error) => {
      // Writes that race the link's own close ("write after end") are not news.
      if (!this.closed) this.logger.warn({ err: error.message }, "MQTT error");
    });
    client.on("offline", () => this.logger.warn("MQTT connection lost; reconnecting"));
    client.on("reconnect", () => this.logger.debug("MQTT reconnecting"));
    client.on("connect", () => this.logger.debug("MQTT connected"));
  }

  static async connect(
    connection: MqttConnection,
    options: ConnectOptions & { sharedGroup?: string },
    logger: Logger,
  ): Promise<MqttLink> {
    const mqtt5 = options.mqtt5 ?? options.sharedGroup !== undefined;
    return new MqttLink(await connectClient(connection, { ...options, mqtt5 }), logger, options.sharedGroup);
  }

  /**
   * Subscribes `handler` to `filter`: each message's payload goes through
   * `read` (the contract's checks for the topic), and the handler gets the
   * payloads it accepts, typed as the topic says (or narrower, when the
   * reader skips some, such as cleared retained messages). `shared`: one instance of
   * the group gets each message (device messages and requests, which must be
   * handled once); without a group it is a plain subscription.
   */
  async subscribe<P, R extends P>(
    filter: Topic<P>,
    read: PayloadReader<R>,
    handler: MessageHandler<NoInfer<R>>,
    options: SubscribeOptions = {},
  ): Promise<void> {
    const brokerFilter =
      options.shared && this.sharedGroup !== undefined ? `$share/${this.sharedGroup}/${filter}` : filter;
    const reader: Reader = {
      read,
      handle: handler as MessageHandler<unknown>,
      refused: options.refused,
    };
    const existing = this.subscriptions.get(brokerFilter);
    if (existing) {
      existing.handlers.push(reader);
      return;
    }
    const subscription: Subscription = { brokerFilter, filter, id: this.nextId++, handlers: [reader] };
    this.subscriptions.set(brokerFilter, subscription);
    this.byId.set(subscription.id, subscription);
    await this.client.subscribeAsync(brokerFilter, {
      qos: 1,
      ...(this.mqtt5 ? { properties: { subscriptionIdentifier: subscription.id } } : {}),
    });
  }

  /**
   * The message retained on `topic`, read by `read`, or null when there is
   * none, the reader refused it (logged as a subscription would), or the
   * broker is not connected. Shared subscriptions never get retained
   * messages, so an instance reads one this way when it must know what a
   * device said last: a plain subscription of its own, dropped again after
   * the broker's answer (retained messages follow the SUBACK) or `waitMs`.
   * The message reaches no other handler of the link.
   */
  async readRetained<P, R extends P>(
    topic: Topic<P>,
    read: PayloadReader<R>,
    waitMs = 1000,
  ): Promise<Inbound<R> | null> {
    if (this.closed || !this.client.connected || /[+#]/.test(topic)) return null;
    // A topic the link already holds a plain subscription on must keep it.
    const keep = this.subscriptions.has(topic);
    let found: { payload: Buffer; packet: IPublishPacket } | null = null;
    let arrived: () => void = () => undefined;
    const arrival = new Promise<void>((resolve) => {
      arrived = resolve;
    });
    const id = this.nextId++;
    const listener = (t: string, payload: Buffer, packet: IPublishPacket) => {
      if (t !== topic || packet.retain !== true) return;
      const ids = packet.properties?.subscriptionIdentifier;
      if (ids !== undefined && !(Array.isArray(ids) ? ids : [ids]).includes(id)) return;
      found = { payload, packet };
      arrived();
    };
    this.client.on("message", listener);
    this.reading.set(topic, (this.reading.get(topic) ?? 0) + 1);
    let timer: NodeJS.Timeout | undefined;
    try {
      await this.client.subscribeAsync(topic, {
        qos: 1,
        ...(this.mqtt5 ? { properties: { subscriptionIdentifier: id } } : {}),
      });
      await Promise.race([
        arrival,
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, waitMs);
        }),
      ]);
    } finally {
      clearTimeout(timer);
      this.client.off("message", listener);
      const left = (this.reading.get(topic) ?? 1) - 1;
      if (left > 0) this.reading.set(topic, left);
      else this.reading.delete(topic);
      if (!keep && this.client.connected) await this.client.unsubscribeAsync(topic).catch(() => undefined);
    }
    if (found === null) return null;
    const { payload, packet } = found;
    const raw: RawMessage = { topic, bytes: payload, retained: true };
    const reading = read(raw);
    if (reading === null) return null;
    if (!reading.ok) {
      this.refusedLog(raw, reading);
      return null;
    }
    return { ...raw, payload: reading.value, warnings: reading.warnings, packet };
  }

  /** Drops every handler of `filter` (shared or not); unsubscribes at the broker. */
  async unsubscribe(filter: string): Promise<void> {
    for (const subscription of [...this.subscriptions.values()]) {
      if (subscription.filter !== filter) continue;
      this.subscriptions.delete(subscription.brokerFilter);
      this.byId.delete(subscription.id);
      if (!this.closed && this.client.connected)
        await this.client.unsubscribeAsync(subscription.brokerFilter);
    }
  }

  /**
   * Publishes; resolves when the broker acknowledged it, or after
   * `PUBLISH_WAIT_MS` (or at once while disconnected): MQTT.js keeps the
   * message and sends it when the connection is back, so a broker outage
   * never stalls the server's work.
   */
  async publish<P>(
    topic: Topic<P>,
    payload: NoInfer<Json<P> | Extract<P, string>>,
    options: { retain?: boolean; qos?: 0 | 1 } = {},
  ): Promise<void> {
    if (this.closed) return;
    const sent = this.client.publishAsync(topic, Buffer.from(payload), {
      qos: options.qos ?? 1,
      retain: options.retain ?? false,
    });
    sent.catch((error: unknown) =>
      this.logger.warn({ topic, err: (error as Error).message }, "publish failed"),
    );
    if (!this.client.connected) {
      this.logger.debug({ topic }, "broker not connected; message queued");
      return;
    }
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      sent.then(
        () => undefined,
        () => undefined,
      ),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, PUBLISH_WAIT_MS);
      }),
    ]);
    clearTimeout(timer);
  }

  /** Publishes `value` as JSON: the payload type of `topic` is checked at compile time. */
  publishJson<P>(
    topic: Topic<P>,
    value: NoInfer<P>,
    options: { retain?: boolean; qos?: 0 | 1 } = {},
  ): Promise<void> {
    return this.publish(topic, toJson(value), options);
  }

  private dispatch(topic: string, payload: Buffer, packet: IPublishPacket): void {
    const ids = packet.properties?.subscriptionIdentifier;
    // Without subscription identifiers, a retained message on a topic being read is readRetained's.
    if (ids === undefined && packet.retain && this.reading.has(topic)) return;
    const through =
      ids === undefined
        ? [...this.subscriptions.values()].filter((s) => topicMatches(s.filter, topic))
        : (Array.isArray(ids) ? ids : [ids]).flatMap((id) => this.byId.get(id) ?? []);
    const raw: RawMessage = { topic, bytes: payload, retained: packet.retain === true };
    // One reading per reader: two features reading a message alike parse it (and log a refusal) once.
    const readings = new Map<PayloadReader<unknown>, Reading<unknown>>();
    for (const subscription of through) {
      for (const { read, handle, refused } of subscription.handlers) {
        try {
          const seen = readings.has(read);
          const reading = seen ? (readings.get(read) ?? null) : read(raw);
          if (!seen) readings.set(read, reading);
          if (reading === null) continue;
          if (!reading.ok) {
            // A refusal is answered by its subscriber, or logged once per message.
            const result = refused ? refused(raw, reading) : seen ? undefined : this.refusedLog(raw, reading);
            if (result) result.catch((error: unknown) => this.handlerFailed(topic, error));
            continue;
          }
          const result = handle({ ...raw, payload: reading.value, warnings: reading.warnings, packet });
          if (result) result.catch((error: unknown) => this.handlerFailed(topic, error));
        } catch (error) {
          this.handlerFailed(topic, error);
        }
      }
    }
  }

  private refusedLog(message: RawMessage, reading: { reason: string; log?: string }): undefined {
    this.logger.warn(
      { topic: message.topic.slice(0, 200), reason: reading.reason },
      reading.log ?? "message ignored",
    );
    return undefined;
  }

  private handlerFailed(topic: string, error: unknown): void {
    this.logger.error(
      { topic, err: error instanceof Error ? error.stack : String(error) },
      "message handler failed",
    );
  }

  /** Disconnects; pending publishes get `timeoutMs` to finish. */
  async close(timeoutMs = 2000): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.race([
      this.client.endAsync(false),
      new Promise<void>((resolve) => setTimeout(resolve, timeoutMs).unref()),
    ]);
    if (!this.client.disconnected) await this.client.endAsync(true);
  }
}
