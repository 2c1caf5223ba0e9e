import { decodeDatagram, HEADER_LENGTH, verifyDatagram } from "../protocol/datagram.ts";
import {
  decodeOtaFile,
  OTA_MAGIC,
  OtaFileError,
  type OtaRecord,
  recordDatagrams,
} from "../protocol/ota-file.ts";
import type { PublicKeyInfo } from "../protocol/rsa-key.ts";
import type { EspImageV1 } from "./esp-image.ts";
import { hexBytes } from "./format.ts";
import {
  analyzeMicroPythonImage,
  isMicroPythonImage,
  type MicroPythonImageAnalysis,
} from "./micropython-image.ts";

/** What mpota reads from a canned .ota file. Plain data (the `--json` shape). */
export interface OtaFileAnalysis {
  /** "ok" when the structure and the SHA1 checksum are intact. */
  integrity: "ok" | "damaged";
  /** Why it is damaged (null when intact). */
  damage: string | null;
  /** Datagrams in the file (data + end). */
  datagrams: number;
  dataPackets: number;
  endPackets: number;
  blockSize: number;
  imageSize: number;
  /** Signature bytes per datagram: the size of the modulus it was signed for. */
  signatureLength: number;
  /** SHA1 checksum stored at the end, hex. */
  sha1: string | null;
  /** Set when a key was given: how many datagrams verify with it as the receiver checks them. */
  signatures: {
    keyBits: number;
    checked: number;
    valid: number;
    /** The first datagram that fails (1-based record number, its seq and image offset). */
    firstInvalid: { record: number; seq: number; offset: number } | null;
  } | null;
  /** The firmware the file carries, analysed like a firmware file (null when damaged). */
  image: {
    espImage: EspImageV1 | null;
    micropython: MicroPythonImageAnalysis | null;
  } | null;
}

export function isOtaFile(bytes: Uint8Array): boolean {
  return (
    bytes.length >= OTA_MAGIC.length &&
    Buffer.from(bytes.subarray(0, OTA_MAGIC.length)).equals(Buffer.from(OTA_MAGIC))
  );
}

/** Reassembles the firmware image a canned file carries, from its data datagrams. */
export function imageFromOtaRecords(records: OtaRecord[]): Uint8Array {
  const data = records.filter((r) => r.packet.length > 0);
  const size = data.reduce((n, r) => Math.max(n, r.packet.offset + r.packet.length), 0);
  const image = new Uint8Array(size);
  for (const r of data) {
    image.set(r.packet.payload.subarray(HEADER_LENGTH, HEADER_LENGTH + r.packet.length), r.packet.offset);
  }
  return image;
}

/** Decodes a whole .ota file (throws OtaFileError when damaged) and returns the image inside it. */
export function imageFromOtaFile(bytes: Uint8Array, source?: string): Uint8Array {
  return imageFromOtaRecords(decodeOtaFile(bytes, source).records);
}

/**
 * Checks a canned .ota file as far as it can be checked: structure and
 * checksum always; with a key, every datagram's signature exactly as the
 * receiver verifies it; and the firmware inside, as a firmware file.
 */
export function analyzeOtaFile(
  bytes: Uint8Array,
  options: { key?: PublicKeyInfo; appOffset?: number; source?: string } = {},
): OtaFileAnalysis {
  let decoded: ReturnType<typeof decodeOtaFile>;
  try {
    decoded = decodeOtaFile(bytes, options.source);
  } catch (error) {
    if (!(error instanceof OtaFileError)) throw error;
    return {
      integrity: "damaged",
      damage: error.message,
      datagrams: 0,
      dataPackets: 0,
      endPackets: 0,
      blockSize: 0,
      imageSize: 0,
      signatureLength: 0,
      sha1: null,
      signatures: null,
      image: null,
    };
  }
  const { records, summary } = decoded;
  let signatures: OtaFileAnalysis["signatures"] = null;
  if (options.key) {
    const key = options.key;
    let valid = 0;
    let firstInvalid: { record: number; seq: number; offset: number } | null = null;
    recordDatagrams(records).forEach((datagram, index) => {
      const d = decodeDatagram(datagram, key.modulus.length);
      if (d && verifyDatagram(key, d)) valid++;
      else if (!firstInvalid) {
        const r = records[index] as OtaRecord;
        firstInvalid = { record: index + 1, seq: r.seq, offset: r.packet.offset };
      }
    });
    signatures = { keyBits: key.bits, checked: records.length, valid, firstInvalid };
  }
  const image = imageFromOtaRecords(records);
  const micro = isMicroPythonImage(image)
    ? analyzeMicroPythonImage(image, { appOffset: options.appOffset })
    : null;
  return {
    integrity: "ok",
    damage: null,
    datagrams: records.length,
    dataPackets: summary.dataPackets,
    endPackets: summary.endPackets,
    blockSize: summary.blockSize,
    imageSize: summary.imageSize,
    signatureLength: summary.signatureLength,
    sha1: hexBytes(summary.sha1),
    signatures,
    image: { espImage: micro?.espImage ?? null, micropython: micro?.micropython ?? null },
  };
}
