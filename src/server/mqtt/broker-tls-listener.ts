import type { AddressInfo, Server as NetServer, Socket } from "node:net";
import { createServer, type Server, type TLSSocket } from "node:tls";
import type { Logger } from "pino";
import { BrokerTlsError } from "./broker-listen-error.ts";
import { closeListener, listenerUrl, listenWithAdvice, trackSockets } from "./listener-socket.ts";

export const DEFAULT_MQTTS_PORT = 8883;

/**
 * Largest TLS record the broker sends. MicroPython's ESP8266 build gives
 * axTLS a receive buffer of RT_MAX_PLAIN_LENGTH 1024 + RT_EXTRA 4096 bytes
 * (ports/esp8266/Makefile) and drops the connection on a larger record
 * ("TLS buffer overflow"); it does not ask for a smaller one (no
 * max_fragment_length extension). 4096 bytes of data plus IV, MAC and
 * padding stay below that.
 */
export const MAX_SEND_FRAGMENT = 4096;

export interface TlsListenOptions {
  /** Default 0.0.0.0: devices on the LAN connect. */
  host?: string;
  /** Default 8883; 0 picks a free port. */
  port?: number;
  /** PEM: the server certificate (then its intermediates) and its key. */
  cert: Buffer | string;
  key: Buffer | string;
}

/** The embedded broker's `mqtts` listener: TLS sockets handed to the same broker as the plain ones. */
export class TlsListener {
  private constructor(
    private readonly server: Server,
    private readonly sockets: Set<Socket>,
    readonly host: string,
  ) {}

  /** Where it really listens (for "localhost": the address the name resolved to). */
  get address(): AddressInfo {
    return this.server.address() as AddressInfo;
  }

  get port(): number {
    return this.address.port;
  }

  /** A URL clients on this machine can use. */
  get url(): string {
    return listenerUrl("mqtts", this.host, this.port);
  }

  static async start(
    handle: (stream: TLSSocket) => unknown,
    options: TlsListenOptions,
    logger: Logger,
    /** Sets the listener's bounds before it listens (the broker's connection limit). */
    bound: (server: NetServer) => void = () => undefined,
  ): Promise<TlsListener> {
    const host = options.host ?? "0.0.0.0";
    const port = options.port ?? DEFAULT_MQTTS_PORT;
    const server = createServer({ cert: options.cert, key: options.key });
    bound(server);
    const sockets = trackSockets(server);
    server.on("secureConnection", (socket: TLSSocket) => {
      socket.setMaxSendFragment(MAX_SEND_FRAGMENT);
      handle(socket);
    });
    server.on("tlsClientError", (error: Error & { code?: string }, socket: TLSSocket) => {
      logger.debug(
        { client: socket.remoteAddress, err: error.code ?? error.message },
        "TLS handshake failed",
      );
    });
    const advice = {
      inUse: `Port ${port} on ${host} is in use (another MQTT broker with TLS, such as Mosquitto, or another \`mpota serve\`?). Give the embedded broker's TLS listener another port with --mqtts-port.`,
      portOption: "--mqtts-port",
      hostOption: "--mqtts-host",
      how: "with TLS on",
    };
    await listenWithAdvice(server, port, host, advice, (message) => new BrokerTlsError(message));
    return new TlsListener(server, sockets, host);
  }

  async close(): Promise<void> {
    await closeListener(this.server, this.sockets);
  }
}
