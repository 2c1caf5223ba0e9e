import assert from "node:assert/strict";
import { PassThrough } from "node:stream";
import { describe, it } from "node:test";
import { type OversizedPacket, PacketGuard } from "../../src/server/mqtt/packet-guard.ts";

/** A PUBLISH (QoS 0) of `payload` bytes on topic "t": its fixed header, then the rest. */
function publish(payload: number): Buffer {
  const body = Buffer.concat([Buffer.from([0, 1, 0x74]), Buffer.alloc(payload, 7)]);
  const length: number[] = [];
  let n = body.length;
  do {
    let byte = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) byte |= 0x80;
    length.push(byte);
  } while (n > 0);
  return Buffer.concat([Buffer.from([0x30, ...length]), body]);
}

/** Feeds `bytes` to a guard of `limit`, `step` bytes a write; what came through, and what was refused. */
async function feed(bytes: Buffer, limit: number, step: number) {
  const socket = new PassThrough();
  const refused: OversizedPacket[] = [];
  const guard = new PacketGuard(socket, limit, (_guard, packet) => refused.push(packet));
  const passed: Buffer[] = [];
  guard.on("data", (chunk: Buffer) => passed.push(chunk));
  guard.on("error", () => undefined);
  for (let i = 0; i < bytes.length && !guard.destroyed; i += step) {
    socket.write(bytes.subarray(i, i + step));
    await new Promise((resolve) => setImmediate(resolve));
  }
  return { passed: Buffer.concat(passed), refused, closed: guard.destroyed };
}

describe("the packet guard", () => {
  it("passes packets up to the limit unchanged, whatever the pieces they come in", async () => {
    const packets = Buffer.concat([publish(10), publish(200), publish(16_000), publish(0)]);
    for (const step of [1, 2, 3, 7, 1000, packets.length]) {
      const { passed, refused, closed } = await feed(packets, 16_384, step);
      assert.deepEqual(refused, [], `step ${step}`);
      assert.equal(closed, false);
      assert.ok(passed.equals(packets), `step ${step}: the bytes came through as they were`);
    }
  });

  it("closes at the header of a packet over the limit, also when the header is split, and passes nothing of its body", async () => {
    const small = publish(10);
    const big = publish(20_000); // a 3-byte remaining length
    for (const step of [1, 2, small.length + 2, 4096]) {
      const { passed, refused, closed } = await feed(Buffer.concat([small, big]), 16_384, step);
      assert.equal(closed, true, `step ${step}`);
      assert.deepEqual(refused, [{ bytes: big.length, limit: 16_384 }]);
      assert.ok(passed.length <= small.length + 4, `step ${step}: ${passed.length} bytes passed`);
    }
  });

  it("leaves a malformed length (five bytes) to Aedes' parser, which refuses it", async () => {
    const malformed = Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01]);
    const { passed, refused } = await feed(malformed, 16_384, 1);
    assert.deepEqual(refused, []);
    assert.ok(passed.equals(malformed));
  });
});
