import { Duplex } from "node:stream";

/** The connection a guard stands in front of: a TCP or TLS socket. */
export type GuardedSocket = Duplex & { remoteAddress?: string | undefined };

/** A packet over the guard's limit: its size from its header, and the limit then. */
export interface OversizedPacket {
  bytes: number;
  limit: number;
}

/**
 * Stands between a client's socket and Aedes and reads each MQTT packet's
 * fixed header (type, remaining length) as the bytes pass. A packet whose
 * header says it is larger than `limit` closes the connection before its
 * body is read: Aedes' parser would otherwise collect it whole (up to
 * MQTT's 256 MiB) before anything could refuse it. What passes is never
 * copied or held here; the socket is paused while Aedes is behind.
 */
export class PacketGuard extends Duplex {
  /** The largest packet taken (fixed header included); raised once the client is known. */
  limit: number;
  /** Who is at the other end, for the log: the address until the client is known. */
  source: string;
  /** Body bytes of the current packet still to pass. */
  private bodyLeft = 0;
  /** The current packet's fixed header so far: its type byte, then its remaining length's bytes. */
  private header: number[] = [];
  /** A remaining length longer than MQTT allows: Aedes' parser refuses it; nothing more is read here. */
  private malformed = false;
  private refused = false;

  constructor(
    private readonly socket: GuardedSocket,
    limit: number,
    private readonly onOversized: (guard: PacketGuard, packet: OversizedPacket) => void,
  ) {
    super({ allowHalfOpen: false });
    this.limit = limit;
    this.source = socket.remoteAddress ?? "unknown";
    socket.on("data", (chunk: Buffer) => this.onChunk(chunk));
    let ended = false;
    socket.on("end", () => {
      ended = true;
      this.push(null);
    });
    socket.on("error", (error) => this.destroy(error));
    // After an orderly end the stream finishes by itself once Aedes has read the last packets (a DISCONNECT).
    socket.on("close", () => {
      if (!ended) this.destroy();
    });
  }

  /** The client's address, where Aedes and the broker's hooks read it from a socket. */
  get remoteAddress(): string | undefined {
    return this.socket.remoteAddress;
  }

  override _read(): void {
    this.socket.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    // As writing to the socket itself: done once it is buffered, held back only while the socket is full.
    if (this.socket.write(chunk)) callback();
    else this.socket.once("drain", () => callback());
  }

  /** A packet Aedes wrote in pieces (mqtt-packet corks the stream) goes out in one segment, not several that Nagle holds back. */
  override _writev(
    chunks: Array<{ chunk: Buffer; encoding: BufferEncoding }>,
    callback: (error?: Error | null) => void,
  ): void {
    this._write(Buffer.concat(chunks.map((c) => c.chunk)), "binary", callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.socket.end();
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.socket.destroy();
    callback(error);
  }

  private onChunk(chunk: Buffer): void {
    if (this.refused) return;
    if (!this.malformed) {
      const bytes = this.oversized(chunk);
      if (bytes !== undefined) {
        this.refused = true;
        this.onOversized(this, { bytes, limit: this.limit });
        this.destroy();
        return;
      }
    }
    if (!this.push(chunk)) this.socket.pause();
  }

  /** Reads the headers in `chunk`; the size of the first packet over the limit, if any. */
  private oversized(chunk: Buffer): number | undefined {
    let i = 0;
    while (i < chunk.length) {
      if (this.bodyLeft > 0) {
        const skip = Math.min(this.bodyLeft, chunk.length - i);
        this.bodyLeft -= skip;
        i += skip;
        continue;
      }
      const byte = chunk[i++] as number;
      this.header.push(byte);
      if (this.header.length === 1 || byte & 0x80) {
        if (this.header.length === 5) this.malformed = true; // more than 4 length bytes
        if (this.malformed) return undefined;
        continue;
      }
      let remaining = 0;
      for (let k = this.header.length - 1; k >= 1; k--)
        remaining = remaining * 128 + ((this.header[k] as number) & 0x7f);
      const size = this.header.length + remaining;
      this.header = [];
      if (size > this.limit) return size;
      this.bodyLeft = remaining;
    }
    return undefined;
  }
}
