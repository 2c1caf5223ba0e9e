import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { FileError } from "../errors.ts";
import { checkInputFileSize } from "../firmware/image-file.ts";
import { checkBlockSize, type SignedPacket, signEndPacket } from "../protocol/datagram.ts";
import { signImageStream } from "../protocol/image-packets.ts";
import { OTA_MAGIC, OtaFileDecoder, type OtaFileSummary } from "../protocol/ota-file.ts";
import type { SigningKey } from "../protocol/rsa-key.ts";
import { checkImageSize } from "./image-size.ts";
import type { PushSource } from "./sender.ts";

const CHUNK = 64 * 1024;

async function fileSize(path: string, what: string): Promise<number> {
  try {
    const s = await stat(path);
    if (!s.isFile()) throw new FileError(`${what} ${path} is not a regular file.`);
    return s.size;
  } catch (error) {
    if (error instanceof FileError) throw error;
    if ((error as NodeJS.ErrnoException).code === "ENOENT")
      throw new FileError(`${what} ${path} does not exist.`);
    throw new FileError(`${what} ${path} cannot be read: ${(error as Error).message}`);
  }
}

/** True when the file starts with the canned .ota magic. */
export async function isOtaFile(path: string): Promise<boolean> {
  const stream = createReadStream(path, { start: 0, end: OTA_MAGIC.length - 1 });
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks).equals(Buffer.from(OTA_MAGIC));
}

async function* withEnd(data: AsyncIterable<SignedPacket>, key: SigningKey): AsyncGenerator<SignedPacket> {
  yield* data;
  yield signEndPacket(key);
}

/** A firmware image read from disk and signed on the fly, chunk by chunk. */
export async function imageFileSource(path: string, key: SigningKey, block: number): Promise<PushSource> {
  checkBlockSize(block);
  const totalBytes = await fileSize(path, "Firmware");
  checkImageSize(totalBytes, path);
  return {
    totalBytes,
    packets: withEnd(signImageStream(createReadStream(path, { highWaterMark: CHUNK }), key, block), key),
  };
}

/** The first datagram of an image signed with `block`-byte blocks (for probing). */
export async function firstImagePacket(path: string, key: SigningKey, block: number): Promise<SignedPacket> {
  checkBlockSize(block);
  for await (const packet of signImageStream(
    createReadStream(path, { start: 0, end: block - 1 }),
    key,
    block,
  )) {
    return packet;
  }
  throw new FileError(`${path} is empty: there is no firmware to send.`);
}

/** Streams the whole .ota file through the decoder once: structure and checksum. */
export async function verifyOtaFile(path: string): Promise<OtaFileSummary> {
  checkInputFileSize(await fileSize(path, ".ota file"), path);
  const decoder = new OtaFileDecoder(path);
  for await (const chunk of createReadStream(path, { highWaterMark: CHUNK })) decoder.push(chunk as Buffer);
  return decoder.end();
}

/**
 * A canned .ota file: verified whole first (nothing is sent from a damaged
 * file), then streamed again record by record.
 */
export async function otaFileSource(path: string): Promise<PushSource & { summary: OtaFileSummary }> {
  const summary = await verifyOtaFile(path);
  async function* packets(): AsyncGenerator<SignedPacket> {
    const decoder = new OtaFileDecoder(path);
    for await (const chunk of createReadStream(path, { highWaterMark: CHUNK })) {
      for (const record of decoder.push(chunk as Buffer)) yield record.packet;
    }
    decoder.end();
  }
  return { totalBytes: summary.imageSize, summary, packets: packets() };
}
