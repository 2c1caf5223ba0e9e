import type { Server } from "node:net";
import type { AuthenticateError, Client } from "aedes";
import type { Logger } from "pino";
import { SourceLog } from "../base/source-log.ts";
import type { BrokerAccess, Principal } from "./broker-access.ts";
import { type BrokerLimits, packetLimitOf } from "./broker-limits.ts";
import { type GuardedSocket, type OversizedPacket, PacketGuard } from "./packet-guard.ts";
import { ADMIN_USERNAME } from "./principals.ts";
import { RetainedBudget } from "./retained-budget.ts";

/** Who a principal is, in the log's words: the source refusals are counted by. */
function sourceOf(principal: Principal, address: string): string {
  switch (principal.kind) {
    case "server":
      return "the server";
    case "admin":
      return `${ADMIN_USERNAME} at ${address}`;
    case "device":
      return `device ${principal.id} at ${address}`;
  }
}

/**
 * The payload in memory of its own. Aedes keeps a retained message for as
 * long as it runs, and a payload as it comes is a slice of a larger buffer:
 * the socket's read (up to 64 KiB) or Node's 8 KiB pool. One such slice
 * keeps all of its buffer alive: a job's progress message of 300 bytes,
 * retained after its job ended, held about 3.5 KiB (1,000 ESP32 jobs held
 * 3.5 MB; bench/fleet-bench.ts --esp32).
 */
function unshared(payload: Buffer): Buffer {
  if (payload.length === 0 || payload.length === payload.buffer.byteLength) return payload;
  const own = Buffer.allocUnsafeSlow(payload.length);
  payload.copy(own);
  return own;
}

/**
 * The embedded broker's checks, as Aedes hooks: authentication, publish and
 * subscribe rights per principal (BrokerAccess), the packet limit per
 * principal (a {@link PacketGuard} in front of each connection) and the
 * retained budget. Refusals over a limit are logged once per source a minute.
 */
export class BrokerHooks {
  readonly retained: RetainedBudget;
  private readonly principals = new WeakMap<Client, Principal>();
  private readonly refusals = new SourceLog();

  constructor(
    private readonly access: BrokerAccess,
    private readonly limits: BrokerLimits,
    private readonly logger: Logger,
  ) {
    this.retained = new RetainedBudget(limits);
  }

  /** The connection Aedes reads from: `socket` behind a packet guard at the limit for a client not yet known. */
  guard(socket: GuardedSocket): PacketGuard {
    return new PacketGuard(socket, this.limits.devicePacketBytes, (guard, packet) =>
      this.oversized(guard, packet),
    );
  }

  /**
   * Bounds the connections `server` (a listener of the broker) keeps open: Node closes one over
   * the limit as it arrives, before Aedes sees it; logged once per address a minute.
   */
  boundConnections(server: Server, listener: "mqtt" | "mqtts"): void {
    server.maxConnections = this.limits.connections;
    server.on("drop", (data) => {
      const source = data?.remoteAddress ?? "unknown";
      const notLogged = this.refusals.due(`connections\u0000${source}`);
      if (notLogged === undefined) return;
      this.logger.warn(
        { source, listener, limit: this.limits.connections, notLogged },
        "MQTT connection refused: the listener holds its most connections (logged once per source per minute)",
      );
    });
  }

  private oversized(guard: PacketGuard, { bytes, limit }: OversizedPacket): void {
    const notLogged = this.refusals.due(`packet\u0000${guard.source}`);
    if (notLogged === undefined) return;
    this.logger.warn(
      { source: guard.source, bytes, limit, notLogged },
      "MQTT packet over the limit: connection closed before reading it (logged once per source per minute)",
    );
  }

  private refused(source: string, fields: Record<string, unknown>, message: string): void {
    const notLogged = this.refusals.due(`retained\u0000${source}`);
    if (notLogged !== undefined) this.logger.warn({ source, ...fields, notLogged }, message);
  }

  /** The hooks, for `Aedes.createBroker`. */
  options() {
    return {
      authenticate: this.authenticate.bind(this),
      authorizePublish: this.authorizePublish.bind(this),
      authorizeSubscribe: this.authorizeSubscribe.bind(this),
    };
  }

  private authenticate(
    client: Client,
    username: Readonly<string | undefined>,
    password: Readonly<Buffer | undefined>,
    done: (error: AuthenticateError | null, success: boolean | null) => void,
  ): void {
    const address = (client.conn as GuardedSocket).remoteAddress ?? "unknown";
    this.access.authenticate(client.id, username, password, address).then(
      (result) => {
        if ("reason" in result) {
          const error = new Error(result.reason) as AuthenticateError;
          error.returnCode = result.returnCode;
          done(error, false);
          return;
        }
        this.principals.set(client, result);
        // Before the CONNACK: a client sends its large packets only once it is accepted.
        if (client.conn instanceof PacketGuard) {
          client.conn.limit = packetLimitOf(this.limits, result);
          client.conn.source = sourceOf(result, address);
        }
        done(null, true);
      },
      (error: unknown) => {
        // The credential store cannot be read (database down): refuse for now, the client retries.
        this.logger.warn(
          { client: client.id, err: (error as Error).message },
          "MQTT client refused: credentials unreadable",
        );
        const refusal = new Error("server unavailable") as AuthenticateError;
        refusal.returnCode = 3;
        done(refusal, false);
      },
    );
  }

  private authorizePublish(
    client: Client | null,
    packet: { topic: string; payload: Buffer | string; retain?: boolean },
    callback: (error?: Error | null) => void,
  ): void {
    if (client === null) {
      callback(null); // the broker's own messages
      return;
    }
    const principal = this.principals.get(client);
    const topic = packet.topic.slice(0, 200);
    if (!principal || !this.access.mayPublish(principal, packet.topic)) {
      this.logger.debug({ client: client.id, topic }, "MQTT publish refused");
      callback(new Error(`not allowed to publish to ${topic}`));
      return;
    }
    const payload = typeof packet.payload === "string" ? Buffer.from(packet.payload) : packet.payload;
    if (packet.retain) {
      const reason = this.retained.admit(packet.topic, payload.length, principal.kind === "server");
      if (reason !== undefined) {
        const address = (client.conn as GuardedSocket).remoteAddress ?? "unknown";
        this.refused(
          sourceOf(principal, address),
          { topic, bytes: payload.length, reason },
          "MQTT retained message refused: connection closed (logged once per source per minute)",
        );
        // MQTT 3.1.1 has no refusal for a PUBLISH: the broker closes the connection (MQTT-3.3.5-2).
        callback(new Error(`retained message refused: ${reason}`));
        return;
      }
    }
    const stamped = this.access.stampCaller(principal, packet.topic, payload);
    if (stamped) packet.payload = stamped;
    if (packet.retain && Buffer.isBuffer(packet.payload)) packet.payload = unshared(packet.payload);
    callback(null);
  }

  private authorizeSubscribe(
    client: Client,
    subscription: { topic: string; qos: number },
    callback: (error: Error | null, subscription?: { topic: string; qos: number } | null) => void,
  ): void {
    const principal = this.principals.get(client);
    if (!principal || !this.access.maySubscribe(principal, subscription.topic)) {
      this.logger.debug(
        { client: client.id, topic: subscription.topic.slice(0, 200) },
        "MQTT subscription refused",
      );
      callback(null, null); // granted QoS 128: refused
      return;
    }
    callback(null, subscription);
  }
}
