import { createSocket, type Socket } from "node:dgram";
import { isIPv6 } from "node:net";
import type { UdpBindOptions, UdpChannel, UdpEndpoint, UdpListener, UdpNetwork } from "./udp-channel.ts";

/** Real UDP sockets (node:dgram). */
export class NodeUdpNetwork implements UdpNetwork {
  async bind(options: UdpBindOptions = {}): Promise<UdpChannel> {
    const address =
      options.address ?? (options.connect && isIPv6(options.connect.address) ? "::" : "0.0.0.0");
    const socket = createSocket({ type: isIPv6(address) ? "udp6" : "udp4", reuseAddr: false });
    await new Promise<void>((resolve, reject) => {
      const onError = (error: Error) => reject(error);
      socket.once("error", onError);
      socket.bind({ address, port: options.port ?? 0, exclusive: true }, () => {
        socket.off("error", onError);
        resolve();
      });
    });
    const peer = options.connect;
    if (peer) {
      await new Promise<void>((resolve, reject) => {
        const onError = (error: Error) => reject(error);
        socket.once("error", onError);
        socket.connect(peer.port, peer.address, () => {
          socket.off("error", onError);
          resolve();
        });
      });
    }
    return new NodeUdpChannel(socket, peer !== undefined);
  }
}

class NodeUdpChannel implements UdpChannel {
  private readonly listeners = new Set<UdpListener>();
  private readonly errorListeners = new Set<(error: Error) => void>();
  readonly local: UdpEndpoint;
  private closed = false;

  constructor(
    private readonly socket: Socket,
    private readonly connected: boolean,
  ) {
    const a = socket.address();
    this.local = { address: a.address, port: a.port };
    socket.on("message", (msg, rinfo) => {
      const data = new Uint8Array(msg.buffer, msg.byteOffset, msg.byteLength);
      for (const l of this.listeners) l(data, { address: rinfo.address, port: rinfo.port });
    });
    socket.on("error", (error) => {
      for (const l of this.errorListeners) l(error);
    });
  }

  send(to: UdpEndpoint, data: Uint8Array): void {
    if (this.closed) return;
    const done = (error: Error | null) => {
      // ICMP errors (port unreachable) surface here on some systems, or as socket errors.
      if (error) for (const l of this.errorListeners) l(error);
    };
    if (this.connected) this.socket.send(data, done);
    else this.socket.send(data, to.port, to.address, done);
  }

  onMessage(listener: UdpListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  onError(listener: (error: Error) => void): () => void {
    this.errorListeners.add(listener);
    return () => this.errorListeners.delete(listener);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await new Promise<void>((resolve) => this.socket.close(() => resolve()));
  }
}
