/** An emulated device's counters: datagrams received, ignored and dropped (by reason), acks, sectors, boots. */
import type { DropReason } from "./receiver.ts";

export interface DeviceStats {
  /** Datagrams that reached port 8266 while the receiver was listening. */
  datagramsReceived: number;
  /** Datagrams that arrived while booting or running the app (no receiver). */
  datagramsIgnored: number;
  dropped: Record<DropReason, number>;
  /** Datagrams lost because the receive queue was full (also in dropped["queue-overflow"]). */
  queueOverflows: number;
  acksSent: number;
  sectorsWritten: number;
  /** Duplicates re-acknowledged, over all sessions. */
  duplicates: number;
  boots: number;
}

export const newDropCounts = (): Record<DropReason, number> => ({
  "too-short": 0,
  "bad-signature": 0,
  "bad-sha1": 0,
  "unexpected-offset": 0,
  "buffer-overflow": 0,
  "queue-overflow": 0,
});
