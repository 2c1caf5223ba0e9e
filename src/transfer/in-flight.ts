/**
 * The transmissions that may still be on their way to the receiver or in its
 * queue. The receiver works through its queue in arrival order, so an
 * acknowledgement of one transmission means everything sent before it has
 * been handled (taken, or dropped) or lost. Transmissions abandoned by a
 * go-back keep counting until then: they still occupy the receiver's small
 * queue, and counting them is what keeps that queue from overflowing.
 */
export interface Transmission {
  seq: number;
  /** Index of the data datagram in the image. */
  index: number;
  at: number;
}

export class InFlight {
  /** Every transmission of a datagram not yet acknowledged, by sequence number. */
  private readonly bySeq = new Map<number, Transmission>();
  /** In send order: those not yet known to be handled or lost. */
  private readonly order: Transmission[] = [];

  add(t: Transmission): void {
    this.bySeq.set(t.seq, t);
    this.order.push(t);
  }

  get(seq: number): Transmission | undefined {
    return this.bySeq.get(seq);
  }

  /**
   * Transmissions not yet known to be handled or lost, as of `now`; one older
   * than `horizonMs` is taken as handled or lost (a dropped datagram is never
   * answered).
   */
  count(now: number, horizonMs: number): number {
    while (this.order.length > 0 && (this.order[0] as Transmission).at < now - horizonMs) this.order.shift();
    return this.order.length;
  }

  /** The receiver answered `t`: it has handled everything sent up to then. */
  answered(t: Transmission): void {
    while (this.order.length > 0 && (this.order[0] as Transmission).at <= t.at) this.order.shift();
  }

  /** Datagrams below `index` are acknowledged: answers to their transmissions are stale. */
  acknowledgedBelow(index: number): void {
    for (const [seq, t] of this.bySeq) if (t.index < index) this.bySeq.delete(seq);
  }
}
