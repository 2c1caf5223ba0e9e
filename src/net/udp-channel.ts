/**
 * The datagram transport the sender and the emulator are written against.
 * `node-udp.ts` implements it over real sockets, `memory-network.ts` in
 * memory; `impairment.ts` wraps either with delay, jitter, loss and duplication.
 */
export interface UdpEndpoint {
  address: string;
  port: number;
}

export type UdpListener = (data: Uint8Array, from: UdpEndpoint) => void;

export interface UdpChannel {
  /** The address and port this channel is bound to. */
  readonly local: UdpEndpoint;
  /** Sends one datagram. Never throws for network conditions; loss is silent, as with UDP. */
  send(to: UdpEndpoint, data: Uint8Array): void;
  /** Registers a listener for incoming datagrams; returns a function that removes it. */
  onMessage(listener: UdpListener): () => void;
  /**
   * Registers a listener for transport errors (for example ICMP port unreachable
   * reported by the kernel). Implementations without such signals never call it.
   */
  onError(listener: (error: Error) => void): () => void;
  close(): Promise<void>;
}

export interface UdpBindOptions {
  address?: string;
  port?: number;
  connect?: UdpEndpoint;
}

export interface UdpNetwork {
  /**
   * Binds a channel; port 0 (the default) picks a free port. With `connect`,
   * the channel talks to that one peer, and implementations that can report
   * "nothing listens there" (ICMP port unreachable) do so through onError.
   */
  bind(options?: UdpBindOptions): Promise<UdpChannel>;
}
