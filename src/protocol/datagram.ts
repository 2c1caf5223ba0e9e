import { UsageError } from "../errors.ts";
import type { PublicKeyInfo, SigningKey } from "./rsa-key.ts";
import { signBody, verifyBody } from "./signature.ts";

/** The ESP8266 SPI flash's erase unit: the receiver writes a sector at a time, and every block size must tile it. */
export const SECTOR_SIZE = 4096;
/** The reference client's and mpota's default data bytes per datagram (340-byte datagrams with a 512-bit key). */
export const DEFAULT_BLOCK_SIZE = 256;
export const SEQ_LENGTH = 4;
export const HEADER_LENGTH = 8;
export const ACK_LENGTH = 20;
/** boot8266 refuses a main app whose size word exceeds this. */
export const MAX_IMAGE_SIZE = 800_000;
/** The only op the receiver knows (it never checks it). */
export const OP_WRITE = 0;

/** A block size the receiver cannot take. */
export class BlockSizeError extends UsageError {}

/** Checks a block size is one the receiver can take: it must divide the 4 KiB sector exactly. */
export function checkBlockSize(block: number): number {
  if (!Number.isInteger(block) || block < 16 || block > SECTOR_SIZE || SECTOR_SIZE % block !== 0) {
    throw new BlockSizeError(
      `Block size ${block} does not tile the receiver's 4096-byte sector buffer, so it would drop datagrams as "Buffer overflow". Use 256 (the default), 512 or 1024.`,
    );
  }
  return block;
}

/**
 * A signed datagram without its sequence number. The signature does not
 * cover the sequence number, so one signed packet serves any number of sends.
 */
export interface SignedPacket {
  /** Image offset of the data, as in the header. */
  offset: number;
  /** Data bytes; 0 marks the end packet. */
  length: number;
  /** body (header, data, zero padding to 16) followed by the signature. */
  payload: Uint8Array;
}

/** The packet body P: u16 op, u16 len, u32 offset, data, zero-padded to a multiple of 16. */
export function encodeBody(offset: number, data: Uint8Array, op = OP_WRITE): Uint8Array {
  const raw = HEADER_LENGTH + data.length;
  const body = new Uint8Array(Math.ceil(raw / 16) * 16);
  const view = new DataView(body.buffer);
  view.setUint16(0, op, true);
  view.setUint16(2, data.length, true);
  view.setUint32(4, offset, true);
  body.set(data, HEADER_LENGTH);
  return body;
}

export function signPacket(key: SigningKey, offset: number, data: Uint8Array): SignedPacket {
  const body = encodeBody(offset, data);
  const sig = signBody(key, body);
  const payload = new Uint8Array(body.length + sig.length);
  payload.set(body, 0);
  payload.set(sig, body.length);
  return { offset, length: data.length, payload };
}

/** The end-of-transfer packet (len 0, offset 0), as the reference client sends it. */
export function signEndPacket(key: SigningKey): SignedPacket {
  return signPacket(key, 0, new Uint8Array(0));
}

/** Prefixes a signed packet with its sequence number: the bytes that go on the wire. */
export function withSeq(seq: number, packet: SignedPacket): Uint8Array {
  const out = new Uint8Array(SEQ_LENGTH + packet.payload.length);
  new DataView(out.buffer).setUint32(0, seq >>> 0, true);
  out.set(packet.payload, SEQ_LENGTH);
  return out;
}

export interface DecodedDatagram {
  seq: number;
  op: number;
  /** Data length from the header. */
  length: number;
  offset: number;
  /** Everything between the sequence number and the signature (what the receiver hashes). */
  body: Uint8Array;
  signature: Uint8Array;
  /** The data bytes as the receiver copies them: `length` bytes after the header. */
  data: Uint8Array;
}

/**
 * Splits a datagram as the receiver does, given the signature length (the
 * modulus size). Returns undefined for datagrams too short to hold a header
 * and a signature.
 */
export function decodeDatagram(datagram: Uint8Array, signatureLength: number): DecodedDatagram | undefined {
  if (datagram.length < SEQ_LENGTH + HEADER_LENGTH + signatureLength) return undefined;
  const view = new DataView(datagram.buffer, datagram.byteOffset, datagram.byteLength);
  const bodyEnd = datagram.length - signatureLength;
  const length = view.getUint16(SEQ_LENGTH + 2, true);
  const dataStart = SEQ_LENGTH + HEADER_LENGTH;
  return {
    seq: view.getUint32(0, true),
    op: view.getUint16(SEQ_LENGTH, true),
    length,
    offset: view.getUint32(SEQ_LENGTH + 4, true),
    body: datagram.subarray(SEQ_LENGTH, bodyEnd),
    signature: datagram.subarray(bodyEnd),
    data: datagram.subarray(dataStart, Math.min(datagram.length, dataStart + length)),
  };
}

/** Verifies a decoded datagram's signature as the unmodified receiver would. */
export function verifyDatagram(key: PublicKeyInfo, decoded: DecodedDatagram): boolean {
  return verifyBody(key, decoded.body, decoded.signature);
}

export interface Ack {
  seq: number;
  op: number;
  length: number;
  offset: number;
}

/** The receiver's 20-byte acknowledgement: seq echoed, the 8-byte header, 8 bytes the receiver leaves undefined (zero here). */
export function encodeAck(ack: Ack): Uint8Array {
  const out = new Uint8Array(ACK_LENGTH);
  const view = new DataView(out.buffer);
  view.setUint32(0, ack.seq >>> 0, true);
  view.setUint16(4, ack.op, true);
  view.setUint16(6, ack.length, true);
  view.setUint32(8, ack.offset >>> 0, true);
  return out;
}

/** Reads an acknowledgement; clients use only the first 12 bytes. Undefined when shorter. */
export function decodeAck(datagram: Uint8Array): Ack | undefined {
  if (datagram.length < 12) return undefined;
  const view = new DataView(datagram.buffer, datagram.byteOffset, datagram.byteLength);
  return {
    seq: view.getUint32(0, true),
    op: view.getUint16(4, true),
    length: view.getUint16(6, true),
    offset: view.getUint32(8, true),
  };
}
