import { createHash, type Hash } from "node:crypto";
import { MpotaError } from "../errors.ts";
import { EXIT_CODES } from "../exit-codes.ts";
import { decodeDatagram, HEADER_LENGTH, SEQ_LENGTH, type SignedPacket, withSeq } from "./datagram.ts";

/** A canned .ota file is damaged or is not one. */
export class OtaFileError extends MpotaError {
  override readonly exitCode: number = EXIT_CODES.otaFile.code;
}

/** "yaota8266" + format version 1. */
export const OTA_MAGIC = new Uint8Array([0x79, 0x61, 0x6f, 0x74, 0x61, 0x38, 0x32, 0x36, 0x36, 0x01]);
export const OTA_TRAILER_LENGTH = 2 + 20;
/** The largest signature mpota accepts in a record (4096-bit key). */
const MAX_SIGNATURE_LENGTH = 512;

function u16(n: number): Uint8Array {
  return new Uint8Array([n & 0xff, (n >> 8) & 0xff]);
}

/**
 * Writes a canned .ota file piece by piece, as `ota_client.py sign` does:
 * magic, then for each datagram a u16 length and the datagram, then u16 0 and
 * the SHA1 of everything before that final u16.
 */
export class OtaFileEncoder {
  private readonly hash: Hash = createHash("sha1");
  private started = false;
  private finished = false;

  header(): Uint8Array {
    if (this.started) throw new Error("OtaFileEncoder.header called twice");
    this.started = true;
    this.hash.update(OTA_MAGIC);
    return OTA_MAGIC;
  }

  /** One record: u16 LE length + the datagram bytes (sequence number included). */
  record(datagram: Uint8Array): Uint8Array {
    if (!this.started || this.finished) throw new Error("OtaFileEncoder.record outside header()..finish()");
    if (datagram.length === 0 || datagram.length > 0xffff) throw new Error("datagram length out of range");
    const out = new Uint8Array(2 + datagram.length);
    out.set(u16(datagram.length), 0);
    out.set(datagram, 2);
    this.hash.update(out);
    return out;
  }

  finish(): Uint8Array {
    if (!this.started || this.finished) throw new Error("OtaFileEncoder.finish outside header()..");
    this.finished = true;
    const out = new Uint8Array(OTA_TRAILER_LENGTH);
    out.set(u16(0), 0);
    out.set(this.hash.digest(), 2);
    return out;
  }
}

/** Encodes a whole .ota file in memory (tests and small images). */
export function encodeOtaFile(datagrams: Iterable<Uint8Array>): Uint8Array {
  const enc = new OtaFileEncoder();
  const parts: Uint8Array[] = [enc.header()];
  for (const d of datagrams) parts.push(enc.record(d));
  parts.push(enc.finish());
  return new Uint8Array(Buffer.concat(parts));
}

export interface OtaRecord {
  /** Sequence number stored in the file. */
  seq: number;
  /** The packet without its sequence number, ready to be sent with any seq. */
  packet: SignedPacket;
  /** Byte position of the record's length field in the file. */
  filePosition: number;
}

export interface OtaFileSummary {
  dataPackets: number;
  endPackets: number;
  imageSize: number;
  /** Largest data length of a packet (the block size the file was signed with). */
  blockSize: number;
  signatureLength: number;
  sha1: Uint8Array;
}

function pad16(n: number): number {
  return Math.ceil(n / 16) * 16;
}

/**
 * Reads a canned .ota file incrementally and checks everything that can be
 * checked without the key: magic, record lengths, offsets that follow each
 * other, end packets, the final checksum. Nothing is trusted before `end()`
 * has verified the checksum, so callers verify a whole file before sending.
 */
export class OtaFileDecoder {
  private buffer: Uint8Array = new Uint8Array(0);
  private position = 0;
  private readonly hash: Hash = createHash("sha1");
  private state: "magic" | "records" | "trailer" | "done" = "magic";
  private signatureLength = -1;
  private expectedOffset = 0;
  private dataPackets = 0;
  private endPackets = 0;
  private blockSize = 0;
  private digest: Uint8Array | undefined;

  constructor(private readonly source = "the .ota file") {}

  /** Feeds bytes; returns the complete records they finish. */
  push(chunk: Uint8Array): OtaRecord[] {
    this.buffer = this.buffer.length === 0 ? chunk : new Uint8Array(Buffer.concat([this.buffer, chunk]));
    const records: OtaRecord[] = [];
    let at = 0;
    const available = () => this.buffer.length - at;
    for (;;) {
      if (this.state === "magic") {
        if (available() < OTA_MAGIC.length) break;
        const magic = this.buffer.subarray(at, at + OTA_MAGIC.length);
        if (!Buffer.from(magic).equals(Buffer.from(OTA_MAGIC))) {
          throw new OtaFileError(
            `${this.source} is not a canned yaota8266 update: it does not start with "yaota8266\\x01". Create one with \`mpota sign FIRMWARE\`, or push the firmware image itself.`,
          );
        }
        this.hash.update(magic);
        at += OTA_MAGIC.length;
        this.state = "records";
      } else if (this.state === "records") {
        if (available() < 2) break;
        const len = (this.buffer[at] as number) | ((this.buffer[at + 1] as number) << 8);
        if (len === 0) {
          if (this.dataPackets === 0 || this.endPackets === 0) {
            throw new OtaFileError(
              `${this.source} ends at byte ${this.position + at} without ${this.dataPackets === 0 ? "any firmware data" : "an end packet"}; it is damaged or was not written by a yaota8266 signer. Sign the firmware again.`,
            );
          }
          at += 2;
          this.state = "trailer";
          continue;
        }
        if (available() < 2 + len) break;
        const datagram = this.buffer.subarray(at + 2, at + 2 + len);
        records.push(this.checkRecord(datagram, this.position + at));
        this.hash.update(this.buffer.subarray(at, at + 2 + len));
        at += 2 + len;
      } else if (this.state === "trailer") {
        if (available() < 20) break;
        this.digest = this.buffer.slice(at, at + 20);
        at += 20;
        this.state = "done";
      } else {
        if (available() > 0) {
          throw new OtaFileError(
            `${this.source} has ${available()} unexpected bytes after its checksum; it is damaged or two files were joined. Sign the firmware again.`,
          );
        }
        break;
      }
    }
    this.position += at;
    this.buffer = this.buffer.slice(at);
    return records;
  }

  private checkRecord(datagram: Uint8Array, filePosition: number): OtaRecord {
    const where = `record ${this.dataPackets + this.endPackets + 1} (byte ${filePosition})`;
    const damaged = `${this.source} is damaged at ${where}`;
    if (datagram.length < SEQ_LENGTH + HEADER_LENGTH + 64) {
      throw new OtaFileError(
        `${damaged}: a ${datagram.length}-byte record cannot hold a header and a signature. Sign the firmware again.`,
      );
    }
    const view = new DataView(datagram.buffer, datagram.byteOffset, datagram.byteLength);
    const length = view.getUint16(SEQ_LENGTH + 2, true);
    const sigLength = datagram.length - SEQ_LENGTH - pad16(HEADER_LENGTH + length);
    if (sigLength < 64 || sigLength > MAX_SIGNATURE_LENGTH) {
      throw new OtaFileError(
        `${damaged}: its length ${datagram.length} does not match a packet carrying ${length} data bytes and an RSA signature. Sign the firmware again.`,
      );
    }
    if (this.signatureLength === -1) this.signatureLength = sigLength;
    else if (sigLength !== this.signatureLength) {
      throw new OtaFileError(
        `${damaged}: its signature is ${sigLength} bytes where earlier ones are ${this.signatureLength}. Sign the firmware again.`,
      );
    }
    const decoded = decodeDatagram(datagram, sigLength);
    if (!decoded) throw new OtaFileError(`${damaged}: record too short. Sign the firmware again.`);
    if (length === 0) {
      this.endPackets++;
    } else {
      if (this.endPackets > 0) {
        throw new OtaFileError(`${damaged}: firmware data after the end packet. Sign the firmware again.`);
      }
      if (decoded.offset !== this.expectedOffset) {
        throw new OtaFileError(
          `${damaged}: it carries offset ${decoded.offset} where ${this.expectedOffset} was expected. Sign the firmware again.`,
        );
      }
      this.expectedOffset += length;
      this.blockSize = Math.max(this.blockSize, length);
      this.dataPackets++;
    }
    return {
      seq: decoded.seq,
      packet: { offset: decoded.offset, length, payload: new Uint8Array(datagram.subarray(SEQ_LENGTH)) },
      filePosition,
    };
  }

  /** Call after the last chunk: checks the file is complete and its checksum matches. */
  end(): OtaFileSummary {
    if (this.state !== "done") {
      throw new OtaFileError(
        `${this.source} is truncated (it stops at byte ${this.position + this.buffer.length}${this.state === "records" ? " in the middle of the packets" : " before its checksum"}). Copy it again or sign the firmware again.`,
      );
    }
    const actual = new Uint8Array(this.hash.digest());
    if (!Buffer.from(actual).equals(Buffer.from(this.digest as Uint8Array))) {
      throw new OtaFileError(
        `${this.source} fails its SHA1 checksum: its contents were changed or damaged after signing. Copy it again or sign the firmware again.`,
      );
    }
    return {
      dataPackets: this.dataPackets,
      endPackets: this.endPackets,
      imageSize: this.expectedOffset,
      blockSize: this.blockSize,
      signatureLength: this.signatureLength,
      sha1: actual,
    };
  }
}

/** Decodes a whole .ota file held in memory. */
export function decodeOtaFile(
  bytes: Uint8Array,
  source?: string,
): { records: OtaRecord[]; summary: OtaFileSummary } {
  const dec = new OtaFileDecoder(source);
  const records = dec.push(bytes);
  return { records, summary: dec.end() };
}

/** The datagrams of an .ota file in file order, sequence numbers as stored. */
export function recordDatagrams(records: OtaRecord[]): Uint8Array[] {
  return records.map((r) => withSeq(r.seq, r.packet));
}
