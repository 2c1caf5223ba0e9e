// The oracle sender of bench/oracle-bound.ts is a bound, so its figures count
// only if it does what any push must: the flash byte-exact and the receiver's
// queue never overflowed, on a link that reorders and loses. Virtual time,
// seeded; no timing is asserted.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { OracleSender } from "../../bench/oracle-sender.ts";
import { runVirtualPush } from "../../bench/virtual-push.ts";
import { LINK_PROFILES } from "../../src/net/impairment.ts";
import { seededRandom } from "../../src/net/random.ts";
import { parsePrivateKeyPem } from "../../src/protocol/rsa-key.ts";
import { readFixtureText } from "../support/fixtures.ts";

const key = parsePrivateKeyPem(readFixtureText("reference/priv-pkcs1.key"));
const rnd = seededRandom(18);
const image = new Uint8Array(96 * 1024).map(() => Math.floor(rnd() * 256));

describe("oracle sender against model B (bench only)", () => {
  for (const kind of ["late", "nack", "perfect"] as const) {
    for (const jitter of ["around", "from"] as const) {
      // The fastest spacing reorders most and fills the receiver's queue after every sector write.
      test(`${kind}, jitter ${jitter === "around" ? "±10 ms" : "[0, 10) ms"}: flash byte-exact, queue never overflows`, async () => {
        for (const seed of [1, 2]) {
          const oracle = new OracleSender({
            kind,
            spacingMs: 10.4,
            link: LINK_PROFILES.poor,
            jitter,
            random: seededRandom(seed + 100),
          });
          const result = await runVirtualPush({
            model: "model-b",
            link: LINK_PROFILES.poor,
            mode: "mpota",
            block: 256,
            seed,
            image,
            key,
            modelB: { jitter, observe: oracle.observe },
            sender: (context) => oracle.send(context),
          });
          // The link lost datagrams and the sender went back for them: the run exercised recovery.
          assert.ok(oracle.counts.lost > 0, `seed ${seed}: no datagram was lost`);
          assert.ok(oracle.counts.goBacks > 0, `seed ${seed}: the sender never went back`);
          if (jitter === "around")
            assert.ok(result.unexpected > 0, `seed ${seed}: nothing arrived out of order`);
          assert.equal(result.queueOverflows, 0, `seed ${seed}: receive-queue overflows`);
          assert.equal(oracle.counts.overflows, 0);
          assert.equal(result.flashExact, true, `seed ${seed}: the flash differs from the image`);
        }
      });
    }
  }
});
