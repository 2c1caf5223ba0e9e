import { checkBlockSize, type SignedPacket, signEndPacket, signPacket } from "./datagram.ts";
import type { SigningKey } from "./rsa-key.ts";

/** The reference client sends the end packet three times. */
export const END_PACKET_COUNT = 3;

/**
 * Cuts an image into `block`-sized pieces and signs each, lazily, as the
 * chunks arrive: a large image is never held whole. The last piece may be
 * short. Yields data packets only; add {@link endPackets} after them.
 */
export async function* signImageStream(
  chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  key: SigningKey,
  block: number,
): AsyncGenerator<SignedPacket> {
  checkBlockSize(block);
  let pending = new Uint8Array(0);
  let offset = 0;
  for await (const chunk of chunks) {
    let data = pending.length === 0 ? chunk : new Uint8Array(Buffer.concat([pending, chunk]));
    while (data.length >= block) {
      yield signPacket(key, offset, data.subarray(0, block));
      offset += block;
      data = data.subarray(block);
    }
    pending = new Uint8Array(data);
  }
  if (pending.length > 0) yield signPacket(key, offset, pending);
}

/** Signs an in-memory image: data packets, then the end packets. */
export function signImage(image: Uint8Array, key: SigningKey, block: number): SignedPacket[] {
  checkBlockSize(block);
  const packets: SignedPacket[] = [];
  for (let offset = 0; offset < image.length; offset += block) {
    packets.push(signPacket(key, offset, image.subarray(offset, offset + block)));
  }
  return [...packets, ...endPackets(key)];
}

export function endPackets(key: SigningKey): SignedPacket[] {
  const end = signEndPacket(key);
  return Array.from({ length: END_PACKET_COUNT }, () => end);
}
