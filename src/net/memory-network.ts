import type { Clock } from "./clock.ts";
import type { UdpBindOptions, UdpChannel, UdpEndpoint, UdpListener, UdpNetwork } from "./udp-channel.ts";

const key = (e: UdpEndpoint) => `${e.address}:${e.port}`;

/**
 * An in-memory UDP network: channels bound to (address, port) pairs deliver
 * datagrams to each other after `latencyMs` on the given clock (0 by
 * default, still asynchronous). Datagrams to an unbound endpoint vanish, as
 * on a real network. Impairment is added per channel with `impair()`.
 */
export class MemoryNetwork implements UdpNetwork {
  private readonly channels = new Map<string, MemoryChannel>();
  private nextPort = 40000;

  constructor(
    readonly clock: Clock,
    private readonly latencyMs = 0,
  ) {}

  async bind(options: UdpBindOptions = {}): Promise<UdpChannel> {
    const address = options.address ?? "127.0.0.1";
    let port = options.port ?? 0;
    if (port === 0) {
      while (this.channels.has(`${address}:${this.nextPort}`)) this.nextPort++;
      port = this.nextPort++;
    }
    const local = { address, port };
    if (this.channels.has(key(local))) {
      throw new Error(`address in use: ${key(local)}`);
    }
    const channel = new MemoryChannel(this, local);
    this.channels.set(key(local), channel);
    return channel;
  }

  /** @internal */
  deliver(from: UdpEndpoint, to: UdpEndpoint, data: Uint8Array): void {
    const copy = new Uint8Array(data);
    this.clock.setTimer(this.latencyMs, () => this.channels.get(key(to))?.receive(copy, from));
  }

  /** @internal */
  unbind(channel: MemoryChannel): void {
    if (this.channels.get(key(channel.local)) === channel) this.channels.delete(key(channel.local));
  }
}

class MemoryChannel implements UdpChannel {
  private readonly listeners = new Set<UdpListener>();
  private closed = false;

  constructor(
    private readonly network: MemoryNetwork,
    readonly local: UdpEndpoint,
  ) {}

  send(to: UdpEndpoint, data: Uint8Array): void {
    if (!this.closed) this.network.deliver(this.local, to, data);
  }

  onMessage(listener: UdpListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  onError(): () => void {
    return () => {};
  }

  receive(data: Uint8Array, from: UdpEndpoint): void {
    if (this.closed) return;
    for (const listener of this.listeners) listener(data, from);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.network.unbind(this);
  }
}
