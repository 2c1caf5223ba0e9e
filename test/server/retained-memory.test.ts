import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { connectAsync } from "mqtt";
import { startTestServer, type TestServer, tempDir } from "./support/test-server.ts";

/** The stored retained packets under `filter`, read from the embedded broker's own store (Aedes in memory). */
async function stored(s: TestServer, filter: string): Promise<Array<{ topic: string; payload: Buffer }>> {
  // What the broker holds, not what a subscriber gets (that is a copy off the socket).
  const aedes = Reflect.get(s.server.embeddedBroker as object, "broker") as {
    persistence: { createRetainedStream(pattern: string): AsyncIterable<{ topic: string; payload: Buffer }> };
  };
  const out: Array<{ topic: string; payload: Buffer }> = [];
  for await (const packet of aedes.persistence.createRetainedStream(filter)) out.push(packet);
  return out;
}

describe("the embedded broker's retained messages", () => {
  const t = tempDir();
  let s: TestServer;
  before(async () => {
    s = await startTestServer(t.dir);
  });
  after(async () => {
    await s?.stop();
    t.remove();
  });

  it("hold their own bytes, not the larger buffer each came in", async () => {
    const client = await connectAsync(s.url, { reconnectPeriod: 0 });
    try {
      // Sent in one go, they reach the broker together: many in one read from the socket.
      for (let i = 0; i < 200; i++)
        client.publish(`memory-test/${i}`, Buffer.alloc(100, i), { qos: 0, retain: true });
      await client.publishAsync("memory-test/last", "x", { qos: 1, retain: true });
    } finally {
      await client.endAsync();
    }
    const packets = await stored(s, "memory-test/#");
    assert.equal(packets.length, 201);
    const buffers = new Set(packets.map((p) => p.payload.buffer));
    const held = [...buffers].reduce((sum, b) => sum + b.byteLength, 0);
    // 200 payloads of 100 bytes and one of 1: each in memory of its own, and nothing more.
    assert.equal(held, 200 * 100 + 1);
  });
});
