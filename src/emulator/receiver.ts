import type { UdpEndpoint } from "../net/udp-channel.ts";
import { type Ack, encodeAck, HEADER_LENGTH, SECTOR_SIZE, SEQ_LENGTH } from "../protocol/datagram.ts";
import type { PublicKeyInfo } from "../protocol/rsa-key.ts";
import { rsaPublic, SIGNED_PAYLOAD_LENGTH, sha1, unpadLikeReceiver } from "../protocol/signature.ts";

/** The receiver's "-1": no datagram accepted in this session yet. */
const NO_OFFSET = 0xffffffff;
/** Offset of the signed payload's SHA1 (after the unused 16-byte AES key). */
const DIGEST_AT = 16;

/** Why the receiver dropped a datagram; the strings match its log lines. */
export type DropReason =
  | "too-short"
  | "bad-signature"
  | "bad-sha1"
  | "unexpected-offset"
  | "buffer-overflow"
  | "queue-overflow";

export const DROP_MESSAGES: Record<DropReason, string> = {
  "too-short": "Packet too short",
  "bad-signature": "Invalid digest size in signature",
  "bad-sha1": "Invalid SHA1",
  "unexpected-offset": "Unexpected offset",
  "buffer-overflow": "Buffer overflow - wrong chunk size",
  "queue-overflow": "Receive queue full, datagram lost",
};

/**
 * What the receiver prints, by the timing model's line groups: "incoming"
 * (the "UDP incoming" and "Pkt id" lines), "checked" ("offset/len" and
 * "Proc1 time"), "offset" (the "offset/len" line alone, on paths that stop
 * after it), "sector" ("Writing ... bytes of buf to ..."), "full-time", and
 * "text" (a message whose size is its own length plus the newline).
 */
export type PrintPart = "incoming" | "checked" | "offset" | "sector" | "full-time" | "text";

/**
 * One step of the receiver's work on a datagram or timer tick, in the order
 * the firmware does it. The receiver's own state changes at once; the
 * device runs the steps on its timing model, so that erases, writes, acks
 * and restarts happen at the modelled times.
 */
export type ReceiverStep =
  | { op: "print"; part: PrintPart; text?: string }
  | { op: "work"; what: "check" | "erase" | "program" }
  | { op: "erase"; address: number }
  | { op: "program"; address: number; data: Uint8Array; filled: number }
  | { op: "send"; to: UdpEndpoint; data: Uint8Array; ack: Ack }
  | { op: "touch" }
  | { op: "drop"; reason: DropReason }
  | { op: "duplicate"; offset: number }
  | { op: "accepted"; offset: number; length: number }
  | { op: "session-restart"; buffered: number }
  | { op: "finished"; rexmits: number }
  | { op: "restart"; why: "finished" | "idle" };

export interface ReceiverSettings {
  mainAppOffset: number;
  pktWaitMs: number;
  idleRebootMs: number;
}

/** A datagram that passed the signature and SHA1 checks, split as the receiver reads it. */
export interface VerifiedDatagram {
  seq: number;
  op: number;
  length: number;
  offset: number;
  /** `length` bytes from right after the header (zero where the datagram is shorter). */
  data: Uint8Array;
}

export type VerifyOutcome = { ok: true; datagram: VerifiedDatagram } | { ok: false; reason: DropReason };

/**
 * Checks a datagram exactly as the unmodified receiver does: the signature
 * is the last modulus-size bytes; the RSA public operation with exponent 3,
 * unpadded the axTLS way, must give a 36-byte payload whose last 20 bytes
 * are the SHA1 of everything between the 4-byte seq and the signature.
 */
export function verifyLikeReceiver(key: PublicKeyInfo, datagram: Uint8Array): VerifyOutcome {
  if (datagram.length < HEADER_LENGTH) return { ok: false, reason: "too-short" };
  const sigLength = key.modulus.length;
  // Shorter datagrams make the firmware read its "signature" from before the
  // packet: garbage that cannot verify.
  if (datagram.length < SEQ_LENGTH + sigLength) return { ok: false, reason: "bad-signature" };
  const bodyEnd = datagram.length - sigLength;
  const payload = unpadLikeReceiver(rsaPublic(key, datagram.subarray(bodyEnd)));
  if (!payload || payload.length !== SIGNED_PAYLOAD_LENGTH) return { ok: false, reason: "bad-signature" };
  const digest = sha1(datagram.subarray(SEQ_LENGTH, bodyEnd));
  if (!Buffer.from(payload.subarray(DIGEST_AT)).equals(Buffer.from(digest)))
    return { ok: false, reason: "bad-sha1" };
  const view = new DataView(datagram.buffer, datagram.byteOffset, datagram.byteLength);
  const length = view.getUint16(SEQ_LENGTH + 2, true);
  const data = new Uint8Array(length);
  const start = SEQ_LENGTH + HEADER_LENGTH;
  // memcpy(buf, hdr->data, hdr->len) copies `len` bytes whatever the body holds.
  data.set(datagram.subarray(start, Math.min(datagram.length, start + length)));
  return {
    ok: true,
    datagram: {
      seq: view.getUint32(0, true),
      op: view.getUint16(SEQ_LENGTH, true),
      length,
      offset: view.getUint32(SEQ_LENGTH + 4, true),
      data,
    },
  };
}

/** The steps every datagram costs before the receiver knows whether it is valid. */
export const VERIFY_STEPS: readonly ReceiverStep[] = [
  { op: "print", part: "incoming" },
  { op: "work", what: "check" },
];

/**
 * yaota8266's ota-server (ota.c) as a state machine: one session with its
 * expected offset, the previously accepted offset, the duplicate counter,
 * and the 4 KiB sector buffer. Quirks are kept: the timer's session restart
 * does not reset the buffer (upstream bug), the end packet is honoured at
 * any offset, the op field is never checked.
 */
export class OtaReceiver {
  private offset = 0;
  private prevOffset = NO_OFFSET;
  private dup = 0;
  private sessionStart = 0;
  private lastPktTime = 0;
  private readonly buf = new Uint8Array(SECTOR_SIZE).fill(0xff);
  private bufSize = 0;

  constructor(
    private readonly key: PublicKeyInfo,
    private readonly settings: ReceiverSettings,
    now: number,
  ) {
    this.sessionInit(now);
    this.bufInit();
  }

  /** Next image offset the receiver accepts. */
  get expectedOffset(): number {
    return this.offset;
  }

  /** Bytes waiting in the sector buffer. */
  get buffered(): number {
    return this.bufSize;
  }

  /** Duplicates re-acknowledged in this session ("rexmits"). */
  get duplicates(): number {
    return this.dup;
  }

  /** One datagram, as ota_udp_incoming() handles it. */
  receive(datagram: Uint8Array, from: UdpEndpoint): ReceiverStep[] {
    if (datagram.length < HEADER_LENGTH) {
      return [{ op: "print", part: "incoming" }, ...this.dropSteps("too-short")];
    }
    const verdict = verifyLikeReceiver(this.key, datagram);
    if (!verdict.ok) return [...VERIFY_STEPS, ...this.dropSteps(verdict.reason)];
    return [...VERIFY_STEPS, ...this.process(verdict.datagram, from)];
  }

  /** The receiver's work after a datagram passed the checks (also what the timing model's floor runs). */
  process(d: VerifiedDatagram, from: UdpEndpoint): ReceiverStep[] {
    if (d.length === 0) {
      const steps: ReceiverStep[] = [{ op: "print", part: "offset" }, ...this.writeBuf()];
      const rexmits = this.dup;
      steps.push(
        { op: "print", part: "text", text: `OTA finished, rexmits: ${rexmits}` },
        { op: "finished", rexmits },
      );
      this.sessionInit(this.sessionStart);
      steps.push({ op: "print", part: "text", text: "Rebooting" }, { op: "restart", why: "finished" });
      return steps;
    }
    if (d.offset === this.prevOffset) {
      // The client did not get our ack and resent: ack again.
      this.dup++;
      return [
        { op: "print", part: "offset" },
        { op: "duplicate", offset: d.offset },
        ...this.confirm(d, from),
        { op: "print", part: "full-time" },
      ];
    }
    if (d.offset !== this.offset)
      return [{ op: "print", part: "offset" }, ...this.dropSteps("unexpected-offset")];
    if (this.bufSize + d.length > SECTOR_SIZE) {
      return [{ op: "print", part: "offset" }, ...this.dropSteps("buffer-overflow")];
    }
    this.buf.set(d.data, this.bufSize);
    this.prevOffset = this.offset;
    this.offset = (this.offset + d.length) >>> 0;
    this.bufSize += d.length;
    const steps: ReceiverStep[] = [
      { op: "accepted", offset: d.offset, length: d.length },
      { op: "print", part: "checked" },
    ];
    if (this.bufSize === SECTOR_SIZE) steps.push(...this.writeBuf());
    steps.push(...this.confirm(d, from), { op: "print", part: "full-time" });
    return steps;
  }

  /** The once-a-second timer_handler(). */
  tick(now: number): ReceiverStep[] {
    const steps: ReceiverStep[] = [];
    if (this.prevOffset !== NO_OFFSET && now - this.lastPktTime > this.settings.pktWaitMs) {
      steps.push(
        { op: "print", part: "text", text: "Next pkt wait timeout, restarting recv" },
        { op: "session-restart", buffered: this.bufSize },
      );
      // Upstream bug kept on purpose: the sector buffer and its fill count survive.
      this.sessionInit(now);
    }
    if (this.prevOffset === NO_OFFSET && now - this.sessionStart > this.settings.idleRebootMs) {
      steps.push(
        { op: "print", part: "text", text: "OTA start timeout, rebooting" },
        { op: "restart", why: "idle" },
      );
    }
    return steps;
  }

  /** last_pkt_time = system_get_time(), right after an ack went out. */
  touch(now: number): void {
    this.lastPktTime = now;
  }

  private confirm(d: VerifiedDatagram, to: UdpEndpoint): ReceiverStep[] {
    const ack: Ack = { seq: d.seq, op: d.op, length: d.length, offset: d.offset };
    return [{ op: "send", to, data: encodeAck(ack), ack }, { op: "touch" }];
  }

  private dropSteps(reason: DropReason): ReceiverStep[] {
    return [
      { op: "print", part: "text", text: DROP_MESSAGES[reason] },
      { op: "drop", reason },
      { op: "print", part: "full-time" },
    ];
  }

  /** write_buf(): flush the sector buffer to the sector the current offset points into (or just behind). */
  private writeBuf(): ReceiverStep[] {
    const steps: ReceiverStep[] = [];
    if (this.bufSize > 0) {
      let address = (this.settings.mainAppOffset + this.offset) >>> 0;
      if (address & (SECTOR_SIZE - 1)) address = (address & ~(SECTOR_SIZE - 1)) >>> 0;
      else address = (address - SECTOR_SIZE) >>> 0;
      steps.push(
        {
          op: "print",
          part: "sector",
          text: `Writing ${this.bufSize} bytes of buf to ${address.toString(16)}`,
        },
        { op: "erase", address },
        { op: "work", what: "erase" },
        { op: "work", what: "program" },
        { op: "program", address, data: new Uint8Array(this.buf), filled: this.bufSize },
      );
    }
    this.bufInit();
    return steps;
  }

  private bufInit(): void {
    this.bufSize = 0;
    this.buf.fill(0xff);
  }

  private sessionInit(now: number): void {
    this.dup = 0;
    this.offset = 0;
    this.prevOffset = NO_OFFSET;
    this.sessionStart = now;
  }
}
