import type { BrokerLimits } from "./broker-limits.ts";

/**
 * The retained messages clients leave on the embedded broker, counted by
 * topic (Aedes keeps them in memory for as long as it runs): one retained
 * message per topic, its topic and payload bytes. The server's own retained
 * messages (commands, progress, discovery, presence) are not counted: it
 * bounds them itself, and a client filling the budget must not stop it.
 */
export class RetainedBudget {
  private readonly sizes = new Map<string, number>();
  private total = 0;

  constructor(private readonly limits: Pick<BrokerLimits, "retainedMessageBytes" | "retainedTotalBytes">) {}

  /** Bytes of clients' retained messages held now. */
  get bytes(): number {
    return this.total;
  }

  /** Retained topics of clients held now. */
  get topics(): number {
    return this.sizes.size;
  }

  /**
   * Takes a retained publish into the count, or says why it is refused
   * (nothing is counted then). An empty payload clears the topic and is
   * always taken; so is a message no larger than the one it replaces, so a
   * device can always send its state again when the budget is full.
   */
  admit(topic: string, payloadBytes: number, byServer: boolean): string | undefined {
    const before = this.sizes.get(topic) ?? 0;
    if (payloadBytes === 0 || byServer) {
      this.total -= before;
      this.sizes.delete(topic);
      return undefined;
    }
    const { retainedMessageBytes, retainedTotalBytes } = this.limits;
    if (payloadBytes > retainedMessageBytes) {
      return `a retained message of ${payloadBytes} bytes; this broker keeps retained messages of at most ${retainedMessageBytes} bytes (publish it without the retain flag, or smaller)`;
    }
    const size = Buffer.byteLength(topic) + payloadBytes;
    if (size > before && this.total - before + size > retainedTotalBytes) {
      return `retained messages would take ${this.total - before + size} bytes; clients may leave at most ${retainedTotalBytes} bytes of retained messages on this broker (clear old ones: publish an empty retained message to their topics)`;
    }
    this.total += size - before;
    this.sizes.set(topic, size);
    return undefined;
  }
}
