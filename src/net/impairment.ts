import type { Clock } from "./clock.ts";
import type { Random } from "./random.ts";
import type { UdpChannel, UdpEndpoint, UdpListener } from "./udp-channel.ts";

/** Impairment of one direction of a link, applied per datagram. */
export interface LinkDirection {
  /** One-way delay added to every datagram, ms. */
  delayMs: number;
  /** Uniform extra delay in [0, jitterMs): datagrams can overtake each other. */
  jitterMs: number;
  /** Probability that a datagram is lost. */
  loss: number;
  /** Probability that a datagram is delivered twice (the copy with its own jitter). */
  duplicate?: number;
  /** Datagrams larger than this vanish, as on networks that drop datagrams of 549 bytes or more. */
  maxDatagramBytes?: number;
}

export interface LinkProfile {
  name: string;
  /** Datagrams the impaired side receives. */
  inbound: LinkDirection;
  /** Datagrams the impaired side sends. */
  outbound: LinkDirection;
}

function symmetric(name: string, d: LinkDirection): LinkProfile {
  return { name, inbound: d, outbound: d };
}

/** The link profiles of the spec's timing model, applied each way. */
export const LINK_PROFILES: Record<"none" | "lan" | "busy" | "poor", LinkProfile> = {
  none: symmetric("none", { delayMs: 0, jitterMs: 0, loss: 0 }),
  lan: symmetric("lan", { delayMs: 2, jitterMs: 0.5, loss: 0 }),
  busy: symmetric("busy", { delayMs: 5, jitterMs: 3, loss: 0.01 }),
  poor: symmetric("poor", { delayMs: 15, jitterMs: 10, loss: 0.03 }),
};

export type LinkProfileName = keyof typeof LINK_PROFILES;

/** The same profile on a network that drops datagrams larger than `bytes`. */
export function withMaxDatagram(profile: LinkProfile, bytes: number): LinkProfile {
  return {
    name: `${profile.name}, max ${bytes} B`,
    inbound: { ...profile.inbound, maxDatagramBytes: bytes },
    outbound: { ...profile.outbound, maxDatagramBytes: bytes },
  };
}

export function linkProfile(name: string): LinkProfile {
  const profile = (LINK_PROFILES as Record<string, LinkProfile>)[name];
  if (!profile)
    throw new Error(`unknown link profile "${name}" (choose ${Object.keys(LINK_PROFILES).join(", ")})`);
  return profile;
}

/** Counts of what an impaired channel did, for logs and benchmarks. */
export interface ImpairmentStats {
  inboundLost: number;
  outboundLost: number;
  inboundDuplicated: number;
  outboundDuplicated: number;
  /** Datagrams dropped for exceeding maxDatagramBytes. */
  inboundTooLarge: number;
  outboundTooLarge: number;
}

/**
 * Wraps a channel so that what it sends and receives suffers the profile's
 * delay, jitter, loss and duplication. Works over real sockets and the
 * in-memory network alike.
 */
export class ImpairedChannel implements UdpChannel {
  readonly stats: ImpairmentStats = {
    inboundLost: 0,
    outboundLost: 0,
    inboundDuplicated: 0,
    outboundDuplicated: 0,
    inboundTooLarge: 0,
    outboundTooLarge: 0,
  };
  private readonly listeners = new Set<UdpListener>();
  private readonly detach: () => void;

  constructor(
    private readonly inner: UdpChannel,
    private readonly profile: LinkProfile,
    private readonly clock: Clock,
    private readonly random: Random,
  ) {
    this.detach = inner.onMessage((data, from) => {
      this.schedule(this.profile.inbound, "inbound", data.length, () => {
        for (const l of this.listeners) l(data, from);
      });
    });
  }

  get local(): UdpEndpoint {
    return this.inner.local;
  }

  send(to: UdpEndpoint, data: Uint8Array): void {
    const copy = new Uint8Array(data);
    this.schedule(this.profile.outbound, "outbound", copy.length, () => this.inner.send(to, copy));
  }

  onMessage(listener: UdpListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  onError(listener: (error: Error) => void): () => void {
    return this.inner.onError(listener);
  }

  async close(): Promise<void> {
    this.detach();
    await this.inner.close();
  }

  private schedule(d: LinkDirection, way: "inbound" | "outbound", size: number, deliver: () => void): void {
    if (d.maxDatagramBytes !== undefined && size > d.maxDatagramBytes) {
      this.stats[`${way}TooLarge`]++;
      return;
    }
    if (d.loss > 0 && this.random() < d.loss) {
      this.stats[`${way}Lost`]++;
      return;
    }
    const copies = d.duplicate && this.random() < d.duplicate ? 2 : 1;
    if (copies === 2) this.stats[`${way}Duplicated`]++;
    for (let i = 0; i < copies; i++) {
      const delay = d.delayMs + (d.jitterMs > 0 ? this.random() * d.jitterMs : 0);
      if (delay <= 0) queueMicrotask(deliver);
      else this.clock.setTimer(delay, deliver);
    }
  }
}
