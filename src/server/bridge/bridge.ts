import type { Logger } from "pino";
import { MpotaError } from "../../errors.ts";
import { shorten } from "../../protocol/mqtt-contract.ts";
import { BRIDGE_REQUEST_NAMES, type BridgeApi, type BridgeRequestName } from "../api/api.ts";
import type { BridgeRequest, BridgeResponse, Topics } from "../api/topics.ts";
import { jsonNestingProblem } from "../base/json-nesting.ts";
import { CALLER_FIELD } from "../mqtt/broker-access.ts";
import type { MqttLink } from "../mqtt/mqtt-link.ts";
import type { Inbound, RawMessage, Reading } from "../mqtt/payload-reader.ts";
import { DiskFullError } from "../storage/disk-full.ts";
import type { AuditStore } from "../storage/storage.ts";
import { recordAudit } from "../trust/audit.ts";
import { type BridgeInfoOptions, BridgeInfoPublisher } from "./bridge-info.ts";

/** A handler per request name: takes the request (unvalidated JSON object), returns the response data. */
export type BridgeHandlers = {
  [K in BridgeRequestName]: (request: Record<string, unknown>) => Promise<BridgeApi[K]["response"]>;
};

/** Largest request payloads: firmware/add carries an image (base64), the others a few fields. */
export const MAX_REQUEST_BYTES = 64 * 1024;
/** 3 MiB of base64 carry 2.25 MiB: an ESP32 app near its 1.5 MiB slot, and a too-large one reaches the slot check. */
export const MAX_FIRMWARE_REQUEST_BYTES = 3 * 1024 * 1024;

export function maxRequestBytes(name: string): number {
  return name === "firmware/add" || name === "app/add" ? MAX_FIRMWARE_REQUEST_BYTES : MAX_REQUEST_BYTES;
}

export interface BridgeOptions {
  link: MqttLink;
  topics: Topics;
  handlers: BridgeHandlers;
  logger: Logger;
  /** Where requests that change something are recorded with who asked. */
  audit: AuditStore;
  now: () => number;
  /**
   * True when the broker is the embedded one, which writes who sent each
   * request into it (`$caller`); on another broker the sender is whoever the
   * broker's ACL lets publish requests, and a `$caller` field is ignored.
   */
  trustCaller: boolean;
  /** Publishes the retained bridge/info and bridge/devices (when given). */
  infoTopics?: Omit<BridgeInfoOptions, "link" | "topics" | "logger">;
}

/**
 * Request/response topics in Zigbee2MQTT's style: a JSON request on
 * `<base>/bridge/request/<name>` (with an optional `transaction`), the reply
 * on `<base>/bridge/response/<name>` as `{status, data, error, transaction}`.
 * Every request gets a reply, bad ones an error reply; none can stop the server.
 */
export class Bridge {
  private readonly infoTopics: BridgeInfoPublisher | undefined;

  constructor(private readonly o: BridgeOptions) {
    this.infoTopics = o.infoTopics
      ? new BridgeInfoPublisher({ ...o.infoTopics, link: o.link, topics: o.topics, logger: o.logger })
      : undefined;
  }

  async start(): Promise<void> {
    await this.infoTopics?.start();
    // Shared among the server instances: each request is answered once.
    await this.o.link.subscribe(
      this.o.topics.allBridgeRequests,
      (message) => this.readRequest(message),
      (message) => this.onRequest(message),
      { shared: true, refused: (message, refusal) => this.refuse(message, refusal) },
    );
  }

  async stop(): Promise<void> {
    await this.infoTopics?.stop();
    await this.o.link.unsubscribe(this.o.topics.allBridgeRequests).catch(() => undefined);
  }

  /** A request as a JSON object (its handler checks the fields); a refusal is answered by {@link refuse}. */
  private readRequest(message: RawMessage): Reading<BridgeRequest> {
    const name = this.o.topics.parseBridgeRequest(message.topic);
    if (name === undefined) return null;
    if (message.retained) {
      // A retained request would run again at every start of every server: refuse it.
      return {
        ok: false,
        log: "retained request ignored",
        reason:
          "Requests must not be retained (they would run again at every server start). Publish without the retain flag.",
      };
    }
    const { bytes } = message;
    const limit = maxRequestBytes(name);
    if (bytes.length > limit) {
      return {
        ok: false,
        log: "request too large",
        reason: `The request is ${bytes.length} bytes; ${name} takes at most ${limit}.`,
      };
    }
    if (bytes.length === 0) return { ok: true, value: {}, warnings: [] };
    const text = bytes.toString("utf8");
    // Before $caller is read: the broker leaves such a request unstamped (broker-access.ts).
    const tooDeep = jsonNestingProblem(text, "The request");
    if (tooDeep) return { ok: false, log: "request nested too deep", reason: tooDeep };
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (error) {
      return {
        ok: false,
        log: "request is not JSON",
        reason: `The request is not JSON (${(error as Error).message}). Send a JSON object, for example {"transaction":"1"}.`,
      };
    }
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      return { ok: false, reason: "The request must be a JSON object." };
    }
    return { ok: true, value: value as BridgeRequest, warnings: [] };
  }

  /** Every request gets a reply: a refused one an error reply saying why. */
  private async refuse(message: RawMessage, refusal: { reason: string; log?: string }): Promise<void> {
    const name = this.o.topics.parseBridgeRequest(message.topic) as string;
    if (refusal.log) this.o.logger.warn({ request: shorten(name), bytes: message.bytes.length }, refusal.log);
    await this.reply(name, undefined, { status: "error", data: {}, error: refusal.reason });
  }

  private async onRequest(message: Inbound<BridgeRequest>): Promise<void> {
    const name = this.o.topics.parseBridgeRequest(message.topic) as string;
    const log = this.o.logger;
    const request = { ...message.payload };
    const caller = request[CALLER_FIELD];
    delete request[CALLER_FIELD];
    const actor = this.o.trustCaller
      ? typeof caller === "string"
        ? caller
        : "mqtt (sender unknown)"
      : "mqtt client of the external broker (as its ACL allows)";
    const transaction =
      typeof request.transaction === "string" || typeof request.transaction === "number"
        ? request.transaction
        : undefined;
    const handler = (this.o.handlers as Record<string, BridgeHandlers[BridgeRequestName] | undefined>)[name];
    if (!handler || !BRIDGE_REQUEST_NAMES.includes(name as BridgeRequestName)) {
      log.warn({ request: shorten(name) }, "unknown request");
      await this.reply(name, transaction, {
        status: "error",
        data: {},
        error: `Unknown request "${shorten(name)}". Known: ${BRIDGE_REQUEST_NAMES.join(", ")}.`,
      });
      return;
    }
    const audit = (outcome: "ok" | "refused", reason?: string) =>
      recordAudit(this.o.audit, log, { at: this.o.now(), actor, action: name, request, outcome, reason });
    try {
      const data = await handler(request);
      await audit("ok");
      await this.reply(name, transaction, { status: "ok", data });
    } catch (error) {
      await audit("refused", (error as Error)?.message);
      if (error instanceof MpotaError) {
        log.info({ request: name, reason: error.message.split("\n")[0] }, "request refused");
        await this.reply(name, transaction, {
          status: "error",
          data: {},
          error: error.message,
          code: error.exitCode,
          ...(error instanceof DiskFullError ? { cause: "disk-full" } : {}),
        });
      } else {
        log.error({ request: name, err: (error as Error)?.stack ?? String(error) }, "request failed");
        await this.reply(name, transaction, {
          status: "error",
          data: {},
          error: `The server failed on this request: ${(error as Error)?.message ?? String(error)}. See the server's log; please report it.`,
        });
      }
    }
  }

  private async reply(
    name: string,
    transaction: string | number | undefined,
    envelope: BridgeResponse,
  ): Promise<void> {
    const body: BridgeResponse = transaction === undefined ? envelope : { ...envelope, transaction };
    // Replies stay under <base>/bridge/response/; absurdly long names are answered on .../error.
    const topicName = name.length <= 100 ? name : "error";
    await this.o.link.publishJson(this.o.topics.bridgeResponse(topicName), body);
  }
}
