import type { Clock } from "../net/clock.ts";
import type { UdpChannel, UdpEndpoint } from "../net/udp-channel.ts";
import { decodeAck, type SignedPacket, withSeq } from "../protocol/datagram.ts";

export interface ProbeOptions {
  channel: UdpChannel;
  device: UdpEndpoint;
  clock: Clock;
  /** The first datagram (offset 0) signed with the large block size, and with the fallback size. */
  large: SignedPacket;
  fallback: SignedPacket;
  /** Give up after this long without any answer (ms). */
  waitMs: number;
  retryMs?: number;
  /** Sequence numbers to use start above this; the push after the probe starts above the returned value. */
  firstSeq?: number;
}

export interface ProbeResult {
  /** The block length the receiver acknowledged, or undefined when nothing answered. */
  block: number | undefined;
  /** How many large and fallback datagrams were sent. */
  largeSent: number;
  fallbackSent: number;
  lastSeq: number;
}

/**
 * Finds out whether large datagrams reach the receiver: sends the first
 * datagram with the large block twice, then with the fallback block once,
 * and so on, until one is acknowledged. Either answer leaves the receiver
 * having taken offset 0 with that block size; the push that follows starts
 * again at offset 0, which the receiver treats as a duplicate and
 * re-acknowledges, so no state is lost.
 */
export function probeBlockSize(options: ProbeOptions): Promise<ProbeResult> {
  const { channel, device, clock, large, fallback } = options;
  const retryMs = options.retryMs ?? 250;
  let seq = options.firstSeq ?? 0;
  const sentLengths = new Map<number, number>();
  const result: ProbeResult = { block: undefined, largeSent: 0, fallbackSent: 0, lastSeq: seq };
  const started = clock.now();
  return new Promise((resolve) => {
    let attempt = 0;
    let timer = clock.setTimer(0, send);
    const off = channel.onMessage((data, from) => {
      if (from.port !== device.port) return;
      const ack = decodeAck(data);
      if (ack?.offset !== 0 || sentLengths.get(ack.seq) !== ack.length) return;
      finish(ack.length);
    });
    function finish(block: number | undefined): void {
      timer.cancel();
      off();
      result.block = block;
      result.lastSeq = seq;
      resolve(result);
    }
    function send(): void {
      if (clock.now() - started >= options.waitMs) {
        finish(undefined);
        return;
      }
      const useLarge = attempt % 3 !== 2;
      attempt++;
      const packet = useLarge ? large : fallback;
      seq++;
      sentLengths.set(seq, packet.length);
      if (useLarge) result.largeSent++;
      else result.fallbackSent++;
      channel.send(device, withSeq(seq, packet));
      timer = clock.setTimer(retryMs, send);
    }
  });
}
