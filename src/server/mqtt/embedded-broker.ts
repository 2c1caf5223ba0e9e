import { type AddressInfo, createServer, type Server, type Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import { Aedes, type Client } from "aedes";
import type { Logger } from "pino";
import type { BrokerAccess } from "./broker-access.ts";
import { BrokerHooks } from "./broker-hooks.ts";
import { type BrokerLimits, brokerLimits } from "./broker-limits.ts";
import { BrokerListenError } from "./broker-listen-error.ts";
import { TlsListener, type TlsListenOptions } from "./broker-tls-listener.ts";
import { closeListener, listenerUrl, listenWithAdvice, trackSockets } from "./listener-socket.ts";

export const DEFAULT_MQTT_PORT = 1883;

export interface EmbeddedBrokerOptions {
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  logger: Logger;
  /** A TLS (mqtts) listener beside the plain one, with this certificate and key. */
  tls?: TlsListenOptions;
  /**
   * Who may connect and what each may do. Without it the broker is open to
   * anyone (only for tests of other brokers' behaviour; `mpota serve` always sets it).
   */
  access?: BrokerAccess;
  /** Its bounds (docs/limits.md); the defaults for those not given. Kept only with `access`. */
  limits?: Partial<BrokerLimits>;
}

/**
 * An Aedes MQTT 3.1.1 broker on a TCP port, for a server that has no broker
 * of its own to use. Retained messages live in memory: after a restart the
 * server republishes what it needs (commands of active jobs).
 */
export class EmbeddedBroker {
  /** The TLS listener, when started with `tls`. */
  tls: TlsListener | undefined;

  private constructor(
    private readonly broker: Aedes,
    /** The checks and their counts (the retained budget); undefined for an open broker. */
    readonly hooks: BrokerHooks | undefined,
    private readonly server: Server,
    private readonly sockets: Set<Socket>,
    readonly host: string,
    readonly port: number,
  ) {}

  /** A URL clients on this machine can use. */
  get url(): string {
    return listenerUrl("mqtt", this.host, this.port);
  }

  /** Where the plain listener really listens (for "localhost": the address the name resolved to). */
  get address(): AddressInfo {
    return this.server.address() as AddressInfo;
  }

  /** The plain listener's URL for a client in this process (the server itself). */
  get localUrl(): string {
    const host = this.address.address;
    const shown = host === "0.0.0.0" ? "127.0.0.1" : host === "::" ? "::1" : host;
    return `mqtt://${shown.includes(":") ? `[${shown}]` : shown}:${this.port}`;
  }

  static async start(options: EmbeddedBrokerOptions): Promise<EmbeddedBroker> {
    const host = options.host ?? "0.0.0.0";
    const port = options.port ?? DEFAULT_MQTT_PORT;
    const hooks = options.access
      ? new BrokerHooks(options.access, brokerLimits(options.limits), options.logger)
      : undefined;
    const broker = await Aedes.createBroker(
      hooks ? (hooks.options() as Parameters<typeof Aedes.createBroker>[0]) : {},
    );
    // Each connection behind its packet guard (the open broker of tests takes any size).
    const handle = (socket: Socket | TLSSocket) => broker.handle(hooks ? hooks.guard(socket) : socket);
    broker.on("clientError", (client, error) => {
      options.logger.debug({ client: client?.id, err: error.message }, "MQTT client error");
    });
    broker.on("connectionError", (client, error) => {
      options.logger.debug({ client: client?.id, err: error.message }, "MQTT connection error");
    });
    const server = createServer(handle);
    hooks?.boundConnections(server, "mqtt");
    const sockets = trackSockets(server);
    const advice = {
      inUse: `Port ${port} on ${host} is in use: another MQTT broker (Mosquitto?) or another \`mpota serve\` runs there. Use that broker with --mqtt mqtt://localhost:${port}, or give the embedded broker another port with --mqtt-port.`,
      portOption: "--mqtt-port",
      hostOption: "--mqtt-host",
      how: "on",
    };
    try {
      await listenWithAdvice(server, port, host, advice, (message) => new BrokerListenError(message));
    } catch (error) {
      await new Promise<void>((resolve) => broker.close(() => resolve()));
      throw error;
    }
    const address = server.address();
    const actualPort = typeof address === "object" && address ? address.port : port;
    const result = new EmbeddedBroker(broker, hooks, server, sockets, host, actualPort);
    if (options.tls) {
      try {
        result.tls = await TlsListener.start(handle, options.tls, options.logger, (server) =>
          hooks?.boundConnections(server, "mqtts"),
        );
      } catch (error) {
        await result.close();
        throw error;
      }
    }
    options.logger.info(
      {
        mqtt: `${result.address.address}:${result.port}`,
        ...(result.tls ? { mqtts: `${result.tls.address.address}:${result.tls.port}` } : {}),
      },
      "embedded MQTT broker listening",
    );
    return result;
  }

  /** Disconnects the client with this id, if connected (its credential was revoked or replaced). */
  disconnect(clientId: string): boolean {
    const client = (this.broker as unknown as { clients: Record<string, Client | undefined> }).clients[
      clientId
    ];
    if (!client) return false;
    client.close();
    return true;
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.broker.close(() => resolve()));
    await closeListener(this.server, this.sockets);
    await this.tls?.close();
  }
}
