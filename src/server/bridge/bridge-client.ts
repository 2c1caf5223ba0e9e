import { randomBytes } from "node:crypto";
import type { MqttClient } from "mqtt";
import { MpotaError } from "../../errors.ts";
import { EXIT_CODES } from "../../exit-codes.ts";
import type {
  BridgeApi,
  BridgeEnvelope,
  BridgeRequestName,
  BridgeStateMessage,
  JobProgressMessage,
} from "../api/api.ts";
import { DEFAULT_BASE_TOPIC, Topics } from "../api/topics.ts";
import { RequestError } from "../base/request-error.ts";
import { BrokerConnectError, connectClient, type MqttConnection, safeUrl } from "../mqtt/mqtt-connect.ts";
import { topicMatches } from "../mqtt/mqtt-link.ts";
import { maxRequestBytes } from "./bridge.ts";

/**
 * The server refused a request and said which exit code the failure has
 * (the `code` of its reply): the CLI exits with it, as it would running the
 * same thing locally (24 for a full disk, not 22).
 */
export class ServerRefusalError extends RequestError {
  override readonly exitCode: number;

  constructor(message: string, exitCode: number = EXIT_CODES.requestRefused.code) {
    super(message);
    this.exitCode = exitCode;
  }
}

/** The exit codes a server's reply may name: the table's, but not success nor the shell's own. */
const REMOTE_EXIT_CODES = new Set<number>(
  Object.values(EXIT_CODES)
    .map((entry) => entry.code)
    .filter((code) => code > 0 && code < 126),
);

/** The error for an error reply: its text, with the exit code it names when that is one of the table's. */
function refusalOf(envelope: BridgeEnvelope<unknown>, name: string): RequestError {
  const message = envelope.error ?? `The server refused the ${name} request without a reason.`;
  const code = envelope.code;
  return typeof code === "number" && REMOTE_EXIT_CODES.has(code)
    ? new ServerRefusalError(message, code)
    : new RequestError(message);
}

/** The broker answered, but no mpota server replied to a request. */
export class NoServerError extends MpotaError {
  override readonly exitCode: number = EXIT_CODES.noServer.code;
}

export const DEFAULT_CLIENT_URL = "mqtt://localhost:1883";
export const DEFAULT_REQUEST_TIMEOUT_MS = 5000;

export interface BridgeClientOptions {
  connection: MqttConnection;
  base?: string;
  /** How long to wait for the broker, and for each reply. */
  timeoutMs?: number;
}

const START_HINT = "Start it with `mpota serve` (or `npm start` in the mpota folder)";

/**
 * A client of the server's bridge topics, for the CLI and other tools:
 * publishes a request with a fresh transaction and waits for the reply
 * envelope carrying it.
 */
export class BridgeClient {
  private readonly topics: Topics;
  private serverState: BridgeStateMessage["state"] | undefined;
  private readonly waiting = new Map<string, (envelope: BridgeEnvelope<unknown>) => void>();
  private readonly watchers: Array<{ filter: string; fn: (topic: string, payload: Buffer) => void }> = [];

  private constructor(
    private readonly client: MqttClient,
    private readonly options: BridgeClientOptions,
  ) {
    this.topics = new Topics(options.base ?? DEFAULT_BASE_TOPIC);
    client.on("message", (topic, payload) => this.onMessage(topic, payload));
  }

  static async connect(options: BridgeClientOptions): Promise<BridgeClient> {
    const timeoutMs = options.timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    let client: MqttClient;
    try {
      client = await connectClient(options.connection, { timeoutMs, reconnect: false });
    } catch (error) {
      // A broker that answered and refused this client says why itself; the
      // server may well run behind it, so "start it" would mislead.
      if (error instanceof BrokerConnectError && error.unreachable) {
        throw new BrokerConnectError(
          `${error.message}\nNo mpota server can be reached through ${safeUrl(options.connection.url)}. ${START_HINT}, or pass --mqtt URL for the broker your server uses.`,
          { cause: error, unreachable: true },
        );
      }
      throw error;
    }
    const bridge = new BridgeClient(client, options);
    await client.subscribeAsync([bridge.topics.bridgeState, `${bridge.topics.base}/bridge/response/#`], {
      qos: 1,
    });
    return bridge;
  }

  private onMessage(topic: string, payload: Buffer): void {
    if (topic === this.topics.bridgeState) {
      try {
        this.serverState = (JSON.parse(payload.toString("utf8")) as BridgeStateMessage).state;
      } catch {
        this.serverState = undefined;
      }
      return;
    }
    if (topic.startsWith(`${this.topics.base}/bridge/response/`)) {
      let envelope: BridgeEnvelope<unknown>;
      try {
        envelope = JSON.parse(payload.toString("utf8")) as BridgeEnvelope<unknown>;
      } catch {
        return;
      }
      const key = envelope.transaction === undefined ? undefined : String(envelope.transaction);
      const resolve = key === undefined ? undefined : this.waiting.get(key);
      if (resolve) {
        this.waiting.delete(key as string);
        resolve(envelope);
      }
      return;
    }
    for (const w of this.watchers) if (topicMatches(w.filter, topic)) w.fn(topic, payload);
  }

  /** Sends a request and returns the reply's data; an error reply throws {@link RequestError}. */
  async request<K extends BridgeRequestName>(
    name: K,
    payload: BridgeApi[K]["request"],
  ): Promise<BridgeApi[K]["response"]> {
    const transaction = randomBytes(6).toString("hex");
    const body = JSON.stringify({ ...payload, transaction });
    const limit = maxRequestBytes(name);
    if (Buffer.byteLength(body) > limit) {
      throw new RequestError(
        `The ${name} request would be ${Buffer.byteLength(body)} bytes; the server takes at most ${limit}.`,
      );
    }
    const timeoutMs = this.options.timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    const reply = new Promise<BridgeEnvelope<unknown>>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(transaction);
        reject(this.noAnswer(name, timeoutMs));
      }, timeoutMs);
      this.waiting.set(transaction, (envelope) => {
        clearTimeout(timer);
        resolve(envelope);
      });
    });
    await this.client.publishAsync(this.topics.bridgeRequest(name), body, { qos: 1 });
    const envelope = await reply;
    if (envelope.status !== "ok") throw refusalOf(envelope, name);
    return envelope.data as BridgeApi[K]["response"];
  }

  private noAnswer(name: string, timeoutMs: number): NoServerError {
    const where = safeUrl(this.options.connection.url);
    const state =
      this.serverState === "offline"
        ? "The server's last message says it is offline"
        : this.serverState === "online"
          ? "The server said it is online, but it did not answer: it may be busy or stuck; see its log"
          : "No mpota server has ever announced itself on this broker";
    return new NoServerError(
      `No mpota server answered "${name}" within ${timeoutMs < 10_000 ? (timeoutMs / 1000).toFixed(1) : Math.round(timeoutMs / 1000)} s on the broker at ${where} (base topic "${this.topics.base}"). ${state}. ${START_HINT}; if it runs elsewhere, pass its broker with --mqtt URL and its base topic with --base.`,
    );
  }

  /** Calls `fn` with every progress message of a job (the retained one first). */
  async watchJob(jobId: string, fn: (message: JobProgressMessage) => void): Promise<() => Promise<void>> {
    const filter = this.topics.jobProgress(jobId);
    const watcher = {
      filter,
      fn: (_topic: string, payload: Buffer) => {
        if (payload.length === 0) return;
        try {
          fn(JSON.parse(payload.toString("utf8")) as JobProgressMessage);
        } catch {
          // not a progress message
        }
      },
    };
    this.watchers.push(watcher);
    await this.client.subscribeAsync(filter, { qos: 1 });
    return async () => {
      this.watchers.splice(this.watchers.indexOf(watcher), 1);
      await this.client.unsubscribeAsync(filter);
    };
  }

  async close(): Promise<void> {
    await this.client.endAsync();
  }
}
