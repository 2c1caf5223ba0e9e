import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { OtaReceiver } from "../../src/emulator/receiver.ts";
import type { UdpEndpoint } from "../../src/net/udp-channel.ts";
import {
  ACK_LENGTH,
  decodeAck,
  decodeDatagram,
  HEADER_LENGTH,
  SECTOR_SIZE,
  SEQ_LENGTH,
  signEndPacket,
  signPacket,
  verifyDatagram,
  withSeq,
} from "../../src/protocol/datagram.ts";
import { parsePrivateKeyPem } from "../../src/protocol/rsa-key.ts";
import { signBody } from "../../src/protocol/signature.ts";
import { readFixtureText } from "../support/fixtures.ts";
import { concat, fuzz, fuzzRuns, fuzzSeed, mutate, Rng } from "./fuzz.ts";

/** The reference 512-bit key: 64-byte signatures, as the reference client signs. */
const key = parsePrivateKeyPem(readFixtureText("reference/priv-pkcs1.key"), "priv-pkcs1.key");
const SIG = key.modulus.length;
const from: UdpEndpoint = { address: "192.0.2.10", port: 40000 };
const EDGE_U16 = [0, 1, 15, 16, 255, 256, 4095, 4096, 4097, 0x7fff, 0x8000, 0xffff];
const EDGE_U32 = [0, 1, 255, 256, 4096, 0x3c000, 0x7fffffff, 0x80000000, 0xfffff000, 0xffffffff];

/** Valid datagrams of 16- to 1024-byte blocks (signed once: signing is the slow part). */
const VALID: readonly Uint8Array[] = (() => {
  const rng = new Rng(0x5eed);
  return Array.from({ length: 32 }, (_, i) =>
    withSeq(rng.int(2 ** 32), signPacket(key, i * 256, rng.bytes(rng.pick([16, 64, 256, 1024])))),
  );
})();

function validDatagram(rng: Rng): Uint8Array {
  return rng.pick(VALID);
}

/** Random bytes, or a valid datagram mutated: truncated, extended, header fields at their edges. */
function datagramInput(rng: Rng): Uint8Array {
  if (rng.chance(0.3)) return rng.bytes(rng.length(1200));
  return mutate(rng, validDatagram(rng));
}

/**
 * A datagram whose header says anything (op, length and offset at their
 * edges, data shorter or longer than the length says) and whose signature
 * is nevertheless valid: what a sender holding the key could make, so the
 * receiver's processing after the signature check is reached.
 */
function signedOddDatagram(rng: Rng, expected: number): Uint8Array {
  const length = rng.chance(0.5) ? rng.pick(EDGE_U16) : rng.pick([256, 512, 1024, 2048]);
  const dataLength = rng.chance(0.6) ? Math.min(length, 4200) : rng.int(4200);
  const offset = rng.chance(0.5) ? expected : rng.chance(0.5) ? rng.pick(EDGE_U32) : rng.int(2 ** 32);
  const raw = HEADER_LENGTH + dataLength;
  const body = new Uint8Array(rng.chance(0.8) ? Math.ceil(raw / 16) * 16 : raw);
  const view = new DataView(body.buffer);
  view.setUint16(0, rng.chance(0.8) ? 0 : rng.pick(EDGE_U16), true);
  view.setUint16(2, length, true);
  view.setUint32(4, offset >>> 0, true);
  body.set(rng.bytes(dataLength), HEADER_LENGTH);
  const seq = new Uint8Array(SEQ_LENGTH);
  new DataView(seq.buffer).setUint32(0, rng.int(2 ** 32), true);
  return concat(seq, body, signBody(key, body));
}

describe("fuzz: datagrams", () => {
  it("decodeDatagram splits any bytes or returns undefined, never throws", async () => {
    const report = await fuzz({
      name: "decodeDatagram",
      seed: fuzzSeed(0xda7a),
      runs: fuzzRuns(3000),
      generate: (rng) => ({ bytes: datagramInput(rng), sig: rng.pick([64, 128, 256, 384, 512]) }),
      check: ({ bytes, sig }) => {
        const d = decodeDatagram(bytes, sig);
        if (bytes.length < SEQ_LENGTH + HEADER_LENGTH + sig) {
          assert.equal(d, undefined);
          return;
        }
        assert.ok(d);
        assert.equal(d.signature.length, sig);
        assert.equal(SEQ_LENGTH + d.body.length + d.signature.length, bytes.length);
        assert.ok(d.data.length <= d.length && d.length <= 0xffff);
        assert.ok(d.offset >= 0 && d.offset <= 0xffffffff && d.seq >= 0 && d.seq <= 0xffffffff);
      },
    });
    assert.equal(report.inputs, fuzzRuns(3000));
  });

  it("decodeAck reads any bytes of 12 or more, returns undefined for fewer, never throws", async () => {
    await fuzz({
      name: "decodeAck",
      seed: fuzzSeed(0xac4),
      runs: fuzzRuns(2000),
      generate: (rng) => (rng.chance(0.5) ? rng.bytes(rng.length(64)) : mutate(rng, rng.bytes(ACK_LENGTH))),
      check: (bytes) => {
        const ack = decodeAck(bytes);
        if (bytes.length < 12) assert.equal(ack, undefined);
        else assert.ok(ack && ack.length <= 0xffff && ack.offset <= 0xffffffff);
      },
    });
  });

  it("a changed datagram never verifies; an unchanged one always does", async () => {
    await fuzz({
      name: "verifyDatagram",
      seed: fuzzSeed(0x519),
      runs: fuzzRuns(2000),
      generate: (rng) => {
        const original = validDatagram(rng);
        return { original, bytes: rng.chance(0.1) ? original : mutate(rng, original) };
      },
      check: ({ original, bytes }) => {
        const d = decodeDatagram(bytes, SIG);
        // The seq is not signed: only the bytes after it count.
        const same = Buffer.from(bytes.subarray(SEQ_LENGTH)).equals(
          Buffer.from(original.subarray(SEQ_LENGTH)),
        );
        assert.equal(d !== undefined && verifyDatagram(key, d), same);
      },
    });
  });

  it("the emulated receiver drops random and damaged datagrams with a reason and keeps its state sane", async () => {
    const receiver = new OtaReceiver(
      key,
      { mainAppOffset: 0x3c000, pktWaitMs: 5000, idleRebootMs: 30000 },
      0,
    );
    await fuzz({
      name: "OtaReceiver.receive (unsigned or damaged)",
      seed: fuzzSeed(0x2ec),
      runs: fuzzRuns(2000),
      generate: (rng) => datagramInput(rng),
      check: (bytes) => {
        const steps = receiver.receive(bytes, from);
        const drop = steps.find((s) => s.op === "drop");
        const valid = decodeDatagram(bytes, SIG);
        if (!(valid && verifyDatagram(key, valid))) assert.ok(drop, "an unverified datagram was not dropped");
        assert.ok(receiver.buffered >= 0 && receiver.buffered <= SECTOR_SIZE);
      },
    });
  });

  it("the emulated receiver takes any signed header (odd lengths, offsets, ops) without failing", async () => {
    let receiver = new OtaReceiver(key, { mainAppOffset: 0x3c000, pktWaitMs: 5000, idleRebootMs: 30000 }, 0);
    let now = 0;
    await fuzz({
      name: "OtaReceiver.receive (signed, odd headers)",
      seed: fuzzSeed(0x51e),
      runs: fuzzRuns(2000),
      generate: (rng) => {
        if (rng.chance(0.02)) return { restart: true, bytes: new Uint8Array(0) };
        if (rng.chance(0.05)) return { restart: false, bytes: withSeq(rng.int(100), signEndPacket(key)) };
        return { restart: false, bytes: signedOddDatagram(rng, receiver.expectedOffset) };
      },
      check: ({ restart, bytes }) => {
        if (restart) {
          receiver = new OtaReceiver(
            key,
            { mainAppOffset: 0x3c000, pktWaitMs: 5000, idleRebootMs: 30000 },
            now,
          );
          return;
        }
        now += 7;
        const steps = [...receiver.receive(bytes, from), ...receiver.tick(now)];
        assert.ok(
          receiver.buffered >= 0 && receiver.buffered <= SECTOR_SIZE,
          `buffered ${receiver.buffered}`,
        );
        for (const step of steps) {
          if (step.op === "send") assert.equal(step.data.length, ACK_LENGTH);
          if (step.op === "program") {
            assert.equal(step.data.length, SECTOR_SIZE);
            assert.equal(step.address % SECTOR_SIZE, 0);
            assert.ok(step.filled > 0 && step.filled <= SECTOR_SIZE);
          }
          if (step.op === "erase") assert.equal(step.address % SECTOR_SIZE, 0);
        }
        if (bytes.length < SEQ_LENGTH + SIG) assert.ok(steps.some((s) => s.op === "drop"));
      },
    });
  });
});
