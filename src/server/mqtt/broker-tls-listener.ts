import type { AddressInfo, Socket } from "node:net";
import { createServer, type Server, type TLSSocket } from "node:tls";
import type { Logger } from "pino";
import { BrokerTlsError } from "./broker-listen-error.ts";

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
    const host = this.host === "0.0.0.0" || this.host === "::" ? "localhost" : this.host;
    return `mqtts://${host.includes(":") ? `[${host}]` : host}:${this.port}`;
  }

  static async start(
    handle: (stream: TLSSocket) => unknown,
    options: TlsListenOptions,
    logger: Logger,
  ): Promise<TlsListener> {
    const host = options.host ?? "0.0.0.0";
    const port = options.port ?? DEFAULT_MQTTS_PORT;
    const server = createServer({ cert: options.cert, key: options.key });
    const sockets = new Set<Socket>();
    server.on("connection", (socket: Socket) => {
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
    });
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
    try {
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(port, host, () => {
          server.off("error", reject);
          resolve();
        });
      });
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      throw new BrokerTlsError(
        code === "EADDRINUSE"
          ? `Port ${port} on ${host} is in use (another MQTT broker with TLS, such as Mosquitto, or another \`mpota serve\`?). Give the embedded broker's TLS listener another port with --mqtts-port.`
          : code === "EACCES"
            ? `Not allowed to listen on port ${port} on ${host}. Pick a port above 1023 with --mqtts-port.`
            : `The embedded MQTT broker cannot listen with TLS on ${host}:${port}: ${(error as Error).message}`,
      );
    }
    return new TlsListener(server, sockets, host);
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
