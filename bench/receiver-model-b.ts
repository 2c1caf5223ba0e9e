// A second model of the yaota8266 receiver for the push benchmark, written
// from the spec (../shared/spec/yaota8266.md) and the upstream ota.c, sharing
// no code with src/emulator. Where the emulator runs the receiver as a state
// machine emitting steps onto a fluid UART, this one computes each datagram's
// whole handling in one pass on a timeline of the CPU and the UART: the
// printed lines with their real lengths (from the format strings and the
// values printed), byte-level UART departure times, and its own link model.
import { constants, createHash, createPublicKey, type KeyObject, publicDecrypt } from "node:crypto";
import type { Clock } from "../src/net/clock.ts";
import type { LinkDirection, LinkProfile } from "../src/net/impairment.ts";
import type { Random } from "../src/net/random.ts";
import type { UdpChannel, UdpEndpoint, UdpNetwork } from "../src/net/udp-channel.ts";

const BAUD = 115_200;
const FIFO = 128;
const CHECK_MS = 1.0;
const ERASE_MS = 50;
const PROGRAM_MS = 15;
const RX_SLOTS = 7;
const SECTOR = 4096;

export interface ModelBOptions {
  network: UdpNetwork;
  clock: Clock;
  address: string;
  modulus: Uint8Array;
  link: LinkProfile;
  random: Random;
  mainAppOffset: number;
  /**
   * When the acknowledgement leaves: "sendto" at udp_sendto() inside the
   * callback, or "return" once the callback has returned (the WiFi driver's
   * transmit task runs from the same event loop). Default "return".
   */
  ackLeaves?: "sendto" | "return";
  /** How the profile's jitter is read: delay + [0, J) ("from", the emulator's reading) or delay ± J ("around"). */
  jitter?: "from" | "around";
  /** Losses in bursts of this mean length (each way), at the profile's mean loss rate. */
  burst?: { length: number };
  /** Erasing a 4 KiB sector, when the flash is slower than the spec's model (50 ms). */
  eraseMs?: number;
  /** Datagrams the receive queue holds while the receiver is busy, when not the spec's model's 7. */
  slots?: number;
  /**
   * Told what became of each datagram that reached the receiver's link, for
   * bench/oracle-sender.ts only: no real sender sees this. Called at the time
   * the link loses a datagram, or as the receiver starts handling one with the
   * time its handling ends. Consumes no randomness and sets no timers, so
   * runs without it are unchanged.
   */
  observe?: (event: ModelBEvent) => void;
}

/** What the receiver did with one datagram, by its sequence number. */
export type ModelBEvent =
  | { kind: "lost"; seq: number }
  | { kind: "overflow"; seq: number }
  | {
      kind: "handled";
      seq: number;
      outcome: "accepted" | "duplicate" | "unexpected" | "other";
      /** The offset the receiver expects next, after this datagram. */
      expected: number;
      /** When its handling ends (the acknowledgement, if any, leaves then). */
      endsAt: number;
    };

export interface ModelBCounts {
  received: number;
  accepted: number;
  unexpectedOffset: number;
  duplicates: number;
  queueOverflows: number;
  linkLost: number;
  /** Receiver time spent on datagrams it dropped (ms). */
  wastedMs: number;
}

/** Bytes printed by one printf of the receiver: the format's text plus the values, one LF. */
const line = {
  incoming: (addr: number, port: number) =>
    `UDP incoming from: ${addr.toString(16)}:${port}, data=0x3ffef2d4\n`.length,
  pktId: (seq: number) => `Pkt id: ${seq.toString(16)}\n`.length,
  offsetLen: (offset: number, len: number) => `offset: ${offset} len: ${len}\n`.length,
  proc1: (us: number) => `Proc1 time: ${Math.round(us)}\n`.length,
  full: (us: number) => `Full time: ${Math.round(us)}\n`.length,
  unexpected: "Unexpected offset\n".length,
  writing: (address: number) => `Writing 4096 bytes of buf to ${address.toString(16)}\n`.length,
};

/** The UART as byte departure times: a byte leaves 1/rate after the previous one, and enters when the FIFO has room. */
class UartLine {
  private readonly msPerByte = 1000 / (BAUD / 10);
  /** When the last byte printed so far has left the shift register. */
  private lastOut = 0;

  /** Prints n bytes from time t; returns when printf returns (its last byte is in the FIFO). */
  print(n: number, t: number): number {
    this.lastOut = Math.max(this.lastOut, t) + n * this.msPerByte;
    // The FIFO holds FIFO bytes: the last byte entered once only FIFO bytes (it included) were left to send.
    return Math.max(t, this.lastOut - FIFO * this.msPerByte);
  }
}

function ipv4Word(address: string): number {
  const [a, b, c, d] = address.split(".").map(Number) as [number, number, number, number];
  // lwIP keeps the address in network order in a u32 read little-endian.
  return ((d << 24) | (c << 16) | (b << 8) | a) >>> 0;
}

function seqOf(datagram: Uint8Array): number {
  return datagram.length >= 4 ? Buffer.from(datagram.subarray(0, 4)).readUInt32LE(0) : -1;
}

interface Parsed {
  seq: number;
  len: number;
  offset: number;
  data: Uint8Array;
}

export class ModelBReceiver {
  readonly counts: ModelBCounts = {
    received: 0,
    accepted: 0,
    unexpectedOffset: 0,
    duplicates: 0,
    queueOverflows: 0,
    linkLost: 0,
    wastedMs: 0,
  };
  private readonly flash = new Map<number, Uint8Array>();
  private readonly uart = new UartLine();
  private readonly ring: Array<{ data: Uint8Array; from: UdpEndpoint }> = [];
  private readonly publicKey: KeyObject;
  private inBurst = false;
  private busyUntil = 0;
  private busy = false;
  private finished = false;
  private expected = 0;
  private previous = -1;
  private readonly sector = new Uint8Array(SECTOR).fill(0xff);
  private fill = 0;

  private constructor(
    private readonly options: ModelBOptions,
    private readonly channel: UdpChannel,
  ) {
    const b64 = (bytes: Uint8Array) => Buffer.from(bytes).toString("base64url");
    this.publicKey = createPublicKey({
      key: { kty: "RSA", n: b64(options.modulus), e: b64(new Uint8Array([3])) },
      format: "jwk",
    });
    channel.onMessage((data, from) =>
      this.carry(
        options.link.inbound,
        () => this.arrive(data, from),
        () => options.observe?.({ kind: "lost", seq: seqOf(data) }),
      ),
    );
  }

  static async start(options: ModelBOptions): Promise<ModelBReceiver> {
    const channel = await options.network.bind({ address: options.address, port: 8266 });
    return new ModelBReceiver(options, channel);
  }

  get endpoint(): UdpEndpoint {
    return this.channel.local;
  }

  flashRead(offset: number, length: number): Uint8Array {
    const out = new Uint8Array(length).fill(0xff);
    for (let at = 0; at < length; at += SECTOR) {
      const sector = this.flash.get(Math.floor((offset + at) / SECTOR));
      if (sector) out.set(sector.subarray(0, Math.min(SECTOR, length - at)), at);
    }
    return out;
  }

  async close(): Promise<void> {
    this.finished = true;
    await this.channel.close();
  }

  /**
   * This model's link, each datagram on its own: loss (in bursts when
   * `burst` is set), then the delay plus jitter, drawn from [0, J) or from
   * [-J, +J] ("around"). The second reading of "10 ms jitter" swaps
   * neighbours sent 10 ms apart far more often.
   */
  private carry(d: LinkDirection, deliver: () => void, onLost?: () => void): void {
    const { random, burst } = this.options;
    let lost: boolean;
    if (burst) {
      // Two states: a loss starts a burst with probability loss / length, each further datagram
      // in it is lost; a burst ends with probability 1 / length (mean length `length`).
      if (this.inBurst) this.inBurst = random() >= 1 / burst.length;
      else this.inBurst = random() < d.loss / burst.length;
      lost = this.inBurst;
    } else lost = random() < d.loss;
    if (lost) {
      this.counts.linkLost++;
      onLost?.();
      return;
    }
    const r = random();
    const jitter = this.options.jitter === "around" ? (2 * r - 1) * d.jitterMs : r * d.jitterMs;
    this.options.clock.setTimer(Math.max(0, d.delayMs + jitter), deliver);
  }

  private arrive(data: Uint8Array, from: UdpEndpoint): void {
    if (this.finished) return;
    this.counts.received++;
    if (this.busy) {
      if (this.ring.length >= (this.options.slots ?? RX_SLOTS)) {
        this.counts.queueOverflows++;
        this.options.observe?.({ kind: "overflow", seq: seqOf(data) });
      } else this.ring.push({ data, from });
      return;
    }
    this.handle(data, from, this.options.clock.now());
  }

  private next(): void {
    this.busy = false;
    const waiting = this.ring.shift();
    if (waiting && !this.finished) this.handle(waiting.data, waiting.from, this.busyUntil);
  }

  private verify(datagram: Uint8Array): Parsed | undefined {
    const sigLen = this.options.modulus.length;
    if (datagram.length < 12 + sigLen) return undefined;
    const body = datagram.subarray(4, datagram.length - sigLen);
    let block: Buffer;
    try {
      block = publicDecrypt(
        { key: this.publicKey, padding: constants.RSA_NO_PADDING },
        datagram.subarray(datagram.length - sigLen),
      );
    } catch {
      return undefined;
    }
    if (block[0] !== 0 || block[1] !== 1) return undefined;
    let i = 2;
    while (i < block.length && block[i] === 0xff) i++;
    if (i - 2 < 8 || block.length - (i + 1) !== 36) return undefined;
    const digest = createHash("sha1").update(body).digest();
    if (!digest.equals(block.subarray(block.length - 20))) return undefined;
    const view = Buffer.from(datagram.buffer, datagram.byteOffset, datagram.byteLength);
    const len = view.readUInt16LE(6);
    return {
      seq: view.readUInt32LE(0),
      len,
      offset: view.readUInt32LE(8),
      data: datagram.subarray(12, 12 + len),
    };
  }

  /** One call of ota_udp_incoming() from time t, computed whole; effects are scheduled at their times. */
  private handle(datagram: Uint8Array, from: UdpEndpoint, t0: number): void {
    const clock = this.options.clock;
    this.busy = true;
    let t = this.uart.print(line.incoming(ipv4Word(from.address), from.port), t0);
    const start = t;
    t = this.uart.print(line.pktId(Buffer.from(datagram.subarray(0, 4)).readUInt32LE(0)), t);
    const p = this.verify(datagram);
    t += CHECK_MS;
    let ack: Uint8Array | undefined;
    let ackAt = 0;
    let wasted = true;
    let outcome: "accepted" | "duplicate" | "unexpected" | "other" = "other";
    if (p) {
      t = this.uart.print(line.offsetLen(p.offset, p.len), t);
      if (p.len === 0) {
        this.finished = true;
        this.flushSector(this.expected);
        return;
      }
      if (p.offset === this.previous) {
        this.counts.duplicates++;
        outcome = "duplicate";
        ack = this.ackFor(datagram);
        ackAt = t;
      } else if (p.offset !== this.expected || this.fill + p.len > SECTOR) {
        this.counts.unexpectedOffset++;
        outcome = "unexpected";
        t = this.uart.print(line.unexpected, t);
      } else {
        wasted = false;
        outcome = "accepted";
        this.counts.accepted++;
        this.sector.set(p.data, this.fill);
        this.fill += p.len;
        this.previous = this.expected;
        this.expected += p.len;
        t = this.uart.print(line.proc1((t - start) * 1000), t);
        if (this.fill === SECTOR) {
          t = this.uart.print(line.writing(this.options.mainAppOffset + this.expected - SECTOR), t);
          t += (this.options.eraseMs ?? ERASE_MS) + PROGRAM_MS;
          this.flushSector(this.expected);
        }
        ack = this.ackFor(datagram);
        ackAt = t;
      }
    }
    t = this.uart.print(line.full((t - start) * 1000), t);
    if (wasted) this.counts.wastedMs += t - t0;
    this.options.observe?.({
      kind: "handled",
      seq: seqOf(datagram),
      outcome,
      expected: this.expected,
      endsAt: t,
    });
    if (ack) {
      const at = this.options.ackLeaves === "sendto" ? ackAt : t;
      const reply = ack;
      clock.setTimer(at - clock.now(), () =>
        this.carry(this.options.link.outbound, () => this.channel.send(from, reply)),
      );
    }
    this.busyUntil = t;
    clock.setTimer(t - clock.now(), () => this.next());
  }

  private ackFor(datagram: Uint8Array): Uint8Array {
    const reply = new Uint8Array(20);
    reply.set(datagram.subarray(0, 12));
    return reply;
  }

  /** write_buf(): the sector holding (or just behind) the current offset. */
  private flushSector(offset: number): void {
    if (this.fill === 0) return;
    const address = this.options.mainAppOffset + offset;
    const index = address % SECTOR === 0 ? address / SECTOR - 1 : Math.floor(address / SECTOR);
    this.flash.set(index, new Uint8Array(this.sector));
    this.sector.fill(0xff);
    this.fill = 0;
  }
}

/** The floor on this model: every datagram arrives as the receiver frees, none lost. */
export function modelBFloorMs(imageSize: number, block: number, eraseMs = ERASE_MS): number {
  const uart = new UartLine();
  let t = 0;
  let seq = 1;
  const from = ipv4Word("192.168.1.100");
  for (let offset = 0; ; offset += block) {
    const len = offset >= imageSize ? 0 : Math.min(block, imageSize - offset);
    t = uart.print(line.incoming(from, 40000), t);
    const start = t;
    t = uart.print(line.pktId(seq++), t) + CHECK_MS;
    t = uart.print(line.offsetLen(len === 0 ? 0 : offset, len), t);
    if (len === 0) break;
    t = uart.print(line.proc1((t - start) * 1000), t);
    if ((offset + len) % SECTOR === 0)
      t = uart.print(line.writing(0x3c000 + offset), t) + eraseMs + PROGRAM_MS;
    t = uart.print(line.full((t - start) * 1000), t);
  }
  return t;
}
