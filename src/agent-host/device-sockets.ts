import { lookup } from "node:dns/promises";
import { isIP, Socket } from "node:net";

/** errno values as MicroPython's lwip sockets raise them (Linux numbering). */
export const Errno = {
  EIO: 5,
  EBADF: 9,
  EAGAIN: 11,
  EPIPE: 32,
  EOPNOTSUPP: 95,
  ECONNABORTED: 103,
  ECONNRESET: 104,
  ENOTCONN: 107,
  ETIMEDOUT: 110,
  EHOSTUNREACH: 113,
  EINPROGRESS: 115,
} as const;

/** select.poll's event bits (MicroPython's MP_STREAM_POLL_*). */
export const Poll = { IN: 1, OUT: 4, ERR: 8, HUP: 16, NVAL: 32 } as const;

/** getaddrinfo() failure as the ESP8266 port raises it: `OSError: -2`. */
const LOOKUP_FAILED = -2;

function errnoOf(error: unknown): number {
  const code = (error as NodeJS.ErrnoException).code ?? "";
  // lwip has no ECONNREFUSED: the peer's RST is ERR_RST, raised as ECONNRESET.
  if (code === "ECONNREFUSED") return Errno.ECONNRESET;
  return (Errno as Record<string, number>)[code] ?? Errno.EIO;
}

/** What the Python side gets from a read: hex data ("" at end of stream), null (would block), or an errno. */
export type ReadResult = { value: string | null } | { errno: number };

class DeviceSocket {
  socket: Socket | undefined;
  buffer: Buffer = Buffer.alloc(0);
  ended = false;
  errno = 0;
  private waiters: Array<() => void> = [];

  changed(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  /** Resolves true on new data, end or error; false when `timeoutMs` (>= 0) passes first. */
  waitForChange(timeoutMs: number): Promise<boolean> {
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const done = () => {
        if (timer) clearTimeout(timer);
        resolve(true);
      };
      this.waiters.push(done);
      if (timeoutMs >= 0) {
        timer = setTimeout(() => {
          this.waiters = this.waiters.filter((w) => w !== done);
          resolve(false);
        }, timeoutMs);
      }
    });
  }

  take(n: number): ReadResult {
    const out = this.buffer.subarray(0, n);
    this.buffer = this.buffer.subarray(n);
    return { value: out.toString("hex") };
  }
}

/**
 * The TCP sockets of one simulated device, with the semantics of
 * MicroPython's stream sockets: `read(n)` blocks until n bytes or the end
 * of the stream, returns what is there when non-blocking (None if nothing),
 * and raises ETIMEDOUT when a timeout passes without data. Timeouts run on
 * the real clock, like the device's own.
 */
export class DeviceSockets {
  private readonly sockets = new Map<number, DeviceSocket>();
  private nextId = 1;

  constructor(
    private readonly observer: {
      written?: (id: number, data: Buffer) => void;
      closed?: (id: number) => void;
    } = {},
  ) {}

  /** Number of sockets that are open (created and not closed). */
  get openCount(): number {
    return this.sockets.size;
  }

  async resolve(host: string): Promise<string | number> {
    if (isIP(host) === 4) return host;
    try {
      return (await lookup(host, { family: 4 })).address;
    } catch {
      return LOOKUP_FAILED;
    }
  }

  create(): number {
    const id = this.nextId++;
    this.sockets.set(id, new DeviceSocket());
    return id;
  }

  /** 0 when connected, else an errno (EINPROGRESS for a non-blocking socket, which goes on connecting). */
  connect(id: number, host: string, port: number, timeoutMs: number): Promise<number> {
    const s = this.sockets.get(id);
    if (!s) return Promise.resolve(Errno.EBADF);
    if (s.socket) return Promise.resolve(Errno.EINPROGRESS);
    const socket = new Socket();
    s.socket = socket;
    socket.setNoDelay(true);
    socket.on("data", (chunk: Buffer) => {
      s.buffer = s.buffer.length ? Buffer.concat([s.buffer, chunk]) : chunk;
      s.changed();
    });
    socket.on("end", () => {
      s.ended = true;
      s.changed();
    });
    socket.on("error", (error) => {
      s.errno = errnoOf(error);
      s.changed();
    });
    socket.on("close", () => {
      s.ended = true;
      s.changed();
    });
    const connected = new Promise<number>((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const finish = (code: number) => {
        if (timer) clearTimeout(timer);
        socket.off("connect", onConnect);
        socket.off("error", onError);
        resolve(code);
      };
      const onConnect = () => finish(0);
      const onError = (error: Error) => finish(errnoOf(error));
      socket.once("connect", onConnect);
      socket.once("error", onError);
      if (timeoutMs > 0) {
        timer = setTimeout(() => {
          socket.destroy();
          finish(Errno.ETIMEDOUT);
        }, timeoutMs);
      }
    });
    socket.connect({ host, port });
    if (timeoutMs === 0) return Promise.resolve(Errno.EINPROGRESS);
    return connected;
  }

  /** Bytes written, or -errno. */
  write(id: number, data: Buffer): number {
    const s = this.sockets.get(id);
    if (!s) return -Errno.EBADF;
    if (!s.socket) return -Errno.ENOTCONN;
    if (s.errno) return -s.errno;
    if (s.ended || s.socket.destroyed || s.socket.writableEnded) return -Errno.ECONNRESET;
    s.socket.write(data);
    this.observer.written?.(id, data);
    return data.length;
  }

  /**
   * `length` < 0 reads to the end of the stream. `timeoutMs`: -1 blocking,
   * 0 non-blocking, else a timeout. `once` (recv) returns as soon as any
   * data is there.
   */
  async read(id: number, length: number, timeoutMs: number, once: boolean): Promise<ReadResult> {
    const s = this.sockets.get(id);
    if (!s) return { errno: Errno.EBADF };
    if (!s.socket) return { errno: Errno.ENOTCONN };
    const want = length < 0 ? Number.POSITIVE_INFINITY : length;
    for (;;) {
      const have = s.buffer.length;
      if (want === 0) return { value: "" };
      if (have >= want) return s.take(want);
      if (have > 0 && (once || timeoutMs === 0)) return s.take(have);
      if (s.errno) return have > 0 ? s.take(have) : { errno: s.errno };
      if (s.ended) return s.take(have);
      if (timeoutMs === 0) return { value: null };
      if (!(await s.waitForChange(timeoutMs))) return { errno: Errno.ETIMEDOUT };
    }
  }

  /**
   * select.poll's question for one socket (MP_STREAM_POLL): which of
   * `events` are ready, answered as modlwip's ioctl does (IN with data
   * waiting, OUT while connected, HUP before the connect and after a reset,
   * ERR after another error, IN and OUT once the peer closed, NVAL once
   * closed). With none ready, it first waits up to `waitMs` for a change.
   */
  async poll(id: number, events: number, waitMs: number): Promise<number> {
    const s = this.sockets.get(id);
    if (!s) return Poll.NVAL;
    const ready = (): number => {
      const data = events & Poll.IN && s.buffer.length > 0 ? Poll.IN : 0;
      if (!s.socket) return data | Poll.HUP;
      if (s.errno === Errno.ECONNRESET) return data | (events & Poll.OUT) | Poll.HUP;
      if (s.errno) return data | Poll.ERR;
      if (s.ended) return events & (Poll.IN | Poll.OUT);
      return data | (events & Poll.OUT && !s.socket.connecting ? Poll.OUT : 0);
    };
    const now = ready();
    if (now || waitMs <= 0) return now;
    await s.waitForChange(waitMs);
    return ready();
  }

  /** Closes the socket the way lwip does on close(): FIN after what was written. */
  close(id: number): void {
    const s = this.sockets.get(id);
    if (!s) return;
    this.sockets.delete(id);
    s.socket?.end();
    s.changed();
    this.observer.closed?.(id);
  }

  /**
   * Resets every connection under a running program (a WiFi or broker
   * outage): the sockets stay, their next read or write fails with ECONNRESET.
   */
  resetAll(): void {
    for (const s of this.sockets.values()) {
      s.errno = Errno.ECONNRESET;
      s.socket?.destroy();
      s.changed();
    }
  }

  /** Drops every connection at once, as a reset or a power cut does: no MQTT DISCONNECT is sent. */
  destroyAll(): void {
    for (const [id, s] of this.sockets) {
      s.ended = true;
      s.socket?.destroy();
      s.changed();
      this.observer.closed?.(id);
    }
    this.sockets.clear();
  }
}
