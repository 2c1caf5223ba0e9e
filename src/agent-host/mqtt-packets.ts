/**
 * Splits the byte stream a simulated device sends to its broker into MQTT
 * packets, so the harness can report what the device published without
 * subscribing to anything.
 */

export const MqttPacketType = {
  CONNECT: 1,
  PUBLISH: 3,
  PUBACK: 4,
  SUBSCRIBE: 8,
  UNSUBSCRIBE: 10,
  PINGREQ: 12,
  DISCONNECT: 14,
} as const;

export interface MqttPacket {
  type: number;
  flags: number;
  body: Buffer;
}

export interface PublishedMessage {
  topic: string;
  payload: Buffer;
  qos: number;
  retain: boolean;
}

/** Incremental reader: feed it chunks, get complete packets. */
export class MqttPacketReader {
  private pending: Buffer = Buffer.alloc(0);
  /** Set when the stream held something that is not MQTT; nothing more is read from it. */
  broken = false;

  push(chunk: Uint8Array): MqttPacket[] {
    if (this.broken) return [];
    this.pending = this.pending.length ? Buffer.concat([this.pending, chunk]) : Buffer.from(chunk);
    const packets: MqttPacket[] = [];
    for (;;) {
      const header = this.header();
      if (header === "broken") {
        this.broken = true;
        this.pending = Buffer.alloc(0);
        return packets;
      }
      if (!header || this.pending.length < header.start + header.length) return packets;
      const first = this.pending[0] as number;
      packets.push({
        type: first >> 4,
        flags: first & 0x0f,
        body: this.pending.subarray(header.start, header.start + header.length),
      });
      this.pending = this.pending.subarray(header.start + header.length);
    }
  }

  private header(): { start: number; length: number } | "broken" | undefined {
    let length = 0;
    for (let i = 1; i <= 4; i++) {
      if (this.pending.length <= i) return undefined;
      const b = this.pending[i] as number;
      length += (b & 0x7f) * 128 ** (i - 1);
      if (b < 0x80) return { start: i + 1, length };
    }
    return "broken";
  }
}

/** The topic, payload and flags of a PUBLISH packet (MQTT 3.1.1). */
export function decodePublish(packet: MqttPacket): PublishedMessage {
  const { body, flags } = packet;
  const topicLength = body.readUInt16BE(0);
  const topic = body.subarray(2, 2 + topicLength).toString("utf8");
  const qos = (flags >> 1) & 3;
  const start = 2 + topicLength + (qos > 0 ? 2 : 0);
  return { topic, payload: Buffer.from(body.subarray(start)), qos, retain: (flags & 1) === 1 };
}
