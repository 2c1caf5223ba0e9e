// A TCP relay for the ESP32 bench: stands for the WiFi link between the
// emulated ESP32 and the server. Each direction leaves at `bytesPerSecond`
// (segments of at most 1460 bytes, one after another) and arrives `delayMs`
// later; bytes are counted both ways. Loss is not modelled: on TCP it shows
// as a lower rate, which the rate stands for.
import { createServer, type Server, Socket } from "node:net";

export interface LinkModel {
  /** One-way delay (RTT / 2). */
  delayMs: number;
  /** Throughput of the link in each direction. */
  bytesPerSecond: number;
}

const SEGMENT = 1460;

export interface ShapedLink {
  port: number;
  /** Bytes that went from the device to the server, and back. */
  readonly up: number;
  readonly down: number;
  close(): Promise<void>;
}

/** A relay on 127.0.0.1; `target()` names the server's port at connect time. */
export async function shapedLink(model: LinkModel, target: () => number): Promise<ShapedLink> {
  let up = 0;
  let down = 0;
  const sockets = new Set<Socket>();
  const pipe = (from: Socket, to: Socket, count: (n: number) => void) => {
    let free = 0; // when the link is free again (performance.now() ms)
    // One queue and one timer per direction: timers of different lengths may
    // fire out of order, and the bytes of a TCP stream must not.
    const queue: Array<{ at: number; part: Buffer | null }> = [];
    let timer: NodeJS.Timeout | undefined;
    const drain = () => {
      timer = undefined;
      const now = performance.now();
      while (queue.length > 0 && (queue[0] as { at: number }).at <= now) {
        const { part } = queue.shift() as { at: number; part: Buffer | null };
        if (to.destroyed) continue;
        if (part === null) to.end();
        else to.write(part);
      }
      const next = queue[0];
      if (next) timer = setTimeout(drain, Math.max(0, next.at - now));
    };
    const send = (at: number, part: Buffer | null) => {
      queue.push({ at, part });
      if (timer === undefined) timer = setTimeout(drain, Math.max(0, at - performance.now()));
    };
    from.on("data", (chunk: Buffer) => {
      count(chunk.length);
      for (let o = 0; o < chunk.length; o += SEGMENT) {
        const part = chunk.subarray(o, o + SEGMENT);
        free = Math.max(performance.now(), free) + (part.length * 1000) / model.bytesPerSecond;
        send(free + model.delayMs, part);
      }
    });
    from.on("end", () => send(Math.max(performance.now(), free) + model.delayMs, null));
    from.on("error", () => to.destroy());
    from.on("close", () => {
      sockets.delete(from);
      if (timer !== undefined && to.destroyed) clearTimeout(timer);
    });
  };
  const server: Server = createServer((device) => {
    const upstream = new Socket();
    sockets.add(device);
    sockets.add(upstream);
    device.setNoDelay(true);
    upstream.setNoDelay(true);
    upstream.connect({ host: "127.0.0.1", port: target() });
    pipe(device, upstream, (n) => {
      up += n;
    });
    pipe(upstream, device, (n) => {
      down += n;
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("the relay has no port");
  return {
    port: address.port,
    get up() {
      return up;
    },
    get down() {
      return down;
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
