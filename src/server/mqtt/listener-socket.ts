import type { Server as NetServer, Socket } from "node:net";
import type { Server as TlsServer } from "node:tls";

// What the embedded broker's two listeners (plain MQTT and mqtts) share: the
// listen with advice when it fails, the sockets to end at close (a broker's
// clients never hang up by themselves), and the URL a client here can use.

type ListenServer = NetServer | TlsServer;

/** What to tell the user when a listener cannot have its port. */
export interface ListenAdvice {
  /** The whole message when another program holds the port. */
  inUse: string;
  /** The option that picks another port (`--mqtt-port`). */
  portOption: string;
  /** The option that picks the address (`--mqtt-host`). */
  hostOption: string;
  /** How it listens, for the message of any other failure ("on", "with TLS on"). */
  how: string;
}

/** Collects the server's open sockets, each dropped from the set when it closes. */
export function trackSockets(server: ListenServer): Set<Socket> {
  const sockets = new Set<Socket>();
  server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  return sockets;
}

/** Listens on host:port; when that fails, throws `fail(message)` with a message that says what to do. */
export async function listenWithAdvice(
  server: ListenServer,
  port: number,
  host: string,
  advice: ListenAdvice,
  fail: (message: string) => Error,
): Promise<void> {
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
    throw fail(
      code === "EADDRINUSE"
        ? advice.inUse
        : code === "EACCES"
          ? `Not allowed to listen on port ${port} on ${host}. Pick a port above 1023 with ${advice.portOption}.`
          : code === "EADDRNOTAVAIL" || code === "ENOTFOUND" || code === "EAI_AGAIN"
            ? `The embedded MQTT broker cannot listen ${advice.how} ${host}:${port}: ${host} is not an address of this machine. Give one of its addresses with ${advice.hostOption}, or 0.0.0.0 for all of them.`
            : `The embedded MQTT broker cannot listen ${advice.how} ${host}:${port}: ${(error as Error).message}`,
    );
  }
}

/** Ends every open socket, then closes the server. */
export async function closeListener(server: ListenServer, sockets: Set<Socket>): Promise<void> {
  for (const socket of sockets) socket.destroy();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

/** A URL clients on this machine can use for a listener on `host` (a wildcard address means localhost). */
export function listenerUrl(scheme: "mqtt" | "mqtts", host: string, port: number): string {
  const shown = host === "0.0.0.0" || host === "::" ? "localhost" : host;
  return `${scheme}://${shown.includes(":") ? `[${shown}]` : shown}:${port}`;
}
