import assert from "node:assert/strict";
import { createPrivateKey } from "node:crypto";
import { isIP } from "node:net";
import { describe, it } from "node:test";
import { publicModulusHex } from "../../src/protocol/command-key-facts.ts";
import { CommandSignatureError, signCommand, verifyCommand } from "../../src/protocol/command-signature.ts";
import {
  DEVICE_STATUSES,
  MAX_ACK_BYTES,
  MAX_STATE_BYTES,
  type Parsed,
  parseAck,
  parseState,
  parseStatus,
  WAKE_REASONS,
} from "../../src/protocol/mqtt-contract.ts";
import { readFixtureText } from "../support/fixtures.ts";
import { assertClearError, assertClearMessage, fuzz, fuzzRuns, fuzzSeed, mutate } from "./fuzz.ts";
import { assertNoPrototypePollution, edgeString, jsonObject, jsonText, mutateObject } from "./json-values.ts";

/** Payloads a real agent sends (docs/mqtt.md). */
const VALID_STATES: Record<string, unknown>[] = [
  { v: 1, fw: "0123456789abcdef0123456789abcdef", ip: "192.168.1.50" },
  {
    v: 2,
    fw: "0123456789ABCDEF0123456789abcdef",
    ip: "fe80::1",
    ver: "v1.27.0 on 2025-12-10",
    flash: 1048576,
    mem: 31000,
    rssi: -61,
    wake: "deepsleep",
    sleep: 600,
    vbat: 3.31,
    seq: 12,
    keys: ["0a1b2c3d"],
  },
  {
    v: 3,
    fw: "0123456789abcdef0123456789abcdef",
    ip: "192.168.1.51",
    seq: 3,
    chip: "esp32",
    slot: 1572864,
    run: "ota_1",
    rb: { job: "j-7f3a", fw: "fedcba9876543210fedcba9876543210" },
  },
];
const VALID_ACKS: Record<string, unknown>[] = [
  { job: "j-1", ready: true, ip: "192.168.1.50", port: 8266 },
  { job: "j_2", ready: true },
  { job: "j3", ready: false, error: "not enough flash" },
  { job: "j4", ready: true, pull: true },
  { job: "j5", got: 65536, total: 1466432 },
  { job: "j6", got: 1466432, total: 1466432, done: true },
  { job: "j7", error: "sha256 mismatch: the image was corrupted on the way; nothing was switched" },
];

const STATE_FIELDS = [
  ...["v", "fw", "ip", "ver", "flash", "mem", "rssi", "wake", "sleep", "vbat", "seq", "keys"],
  ...["chip", "slot", "run", "rb"],
];

/** A parse result is the value with clear warnings, or a refusal with a clear reason. */
function assertParsed<T>(result: Parsed<T>): T | undefined {
  assertNoPrototypePollution();
  if (!result.ok) {
    assertClearMessage(result.reason, "reason");
    return undefined;
  }
  for (const w of result.warnings) assertClearMessage(w, "warning");
  return result.value;
}

describe("fuzz: MQTT payloads of the device contract", () => {
  it("state: any payload is read with only valid fields, or refused with a reason", async () => {
    await fuzz({
      name: "parseState",
      seed: fuzzSeed(0x57a7e),
      runs: fuzzRuns(4000),
      generate: (rng) =>
        jsonText(
          rng,
          () => (rng.chance(0.8) ? mutateObject(rng, rng.pick(VALID_STATES)) : jsonObject(rng)),
          MAX_STATE_BYTES * 2,
        ),
      check: (payload) => {
        const state = assertParsed(parseState(payload));
        if (!state) return;
        assert.ok(
          Object.keys(state).every((k) => STATE_FIELDS.includes(k)),
          `unknown field in ${Object.keys(state)}`,
        );
        assert.equal(Object.getPrototypeOf(state), Object.prototype);
        assert.ok(state.v === 1 || state.v === 2 || state.v === 3);
        assert.match(state.fw, /^[0-9a-f]{32}$/);
        assert.notEqual(isIP(state.ip), 0);
        if (state.ver !== undefined) assert.ok(typeof state.ver === "string" && state.ver.length <= 160);
        for (const n of [state.flash, state.mem, state.rssi, state.sleep, state.vbat, state.seq]) {
          if (n !== undefined) assert.ok(Number.isFinite(n));
        }
        if (state.wake !== undefined) assert.ok(WAKE_REASONS.includes(state.wake));
        if (state.keys !== undefined) assert.ok(state.keys.every((k) => /^[0-9a-f]{8}$/.test(k)));
        JSON.stringify(state); // what the store keeps
      },
    });
  });

  it("status: any payload is one of the four words, or refused with a reason", async () => {
    await fuzz({
      name: "parseStatus",
      seed: fuzzSeed(0x5747),
      runs: fuzzRuns(2000),
      generate: (rng) =>
        rng.chance(0.5)
          ? mutate(rng, Buffer.from(rng.pick(DEVICE_STATUSES)))
          : Buffer.from(rng.chance(0.5) ? edgeString(rng) : ` ${rng.pick(DEVICE_STATUSES)}\n`),
      check: (payload) => {
        const status = assertParsed(parseStatus(payload));
        if (status !== undefined) assert.ok(DEVICE_STATUSES.includes(status));
      },
    });
  });

  it("ack: any payload is a ready or failed ack with valid fields, or refused with a reason", async () => {
    await fuzz({
      name: "parseAck",
      seed: fuzzSeed(0xac),
      runs: fuzzRuns(3000),
      generate: (rng) =>
        jsonText(
          rng,
          () => (rng.chance(0.8) ? mutateObject(rng, rng.pick(VALID_ACKS)) : jsonObject(rng)),
          MAX_ACK_BYTES * 2,
        ),
      check: (payload) => {
        const ack = assertParsed(parseAck(payload));
        if (!ack) return;
        assert.match(ack.job, /^[A-Za-z0-9_-]{1,64}$/);
        if (ack.ready === true) {
          assert.ok(Number.isInteger(ack.port) && ack.port >= 1 && ack.port <= 65535);
          if (ack.ip !== undefined) assert.notEqual(isIP(ack.ip), 0);
        } else if ("error" in ack) assertClearMessage(ack.error, "ack error");
        else assert.ok(Number.isSafeInteger(ack.got) && ack.got >= 0 && ack.got <= ack.total);
      },
    });
  });

  it("cmd: a device's check of a signed command takes any payload and refuses every changed one clearly", async () => {
    const privateKey = createPrivateKey(readFixtureText("command/command-key.pem"));
    const trusted = publicModulusHex(privateKey);
    const valid = [
      signCommand(
        {
          op: "ota",
          dev: "dev-1",
          seq: 7,
          job: "j-1",
          fw: "0123456789abcdef0123456789abcdef",
          size: 600000,
          ver: "1.4.2",
          down: 0,
        },
        privateKey,
      ),
      signCommand({ op: "keys", dev: "dev-1", seq: 8, keys: [trusted] }, privateKey),
    ] as unknown as Record<string, unknown>[];
    const ota = valid[0] as Record<string, unknown>;
    await fuzz({
      name: "verifyCommand",
      // Found by this test: String() of an object field threw a TypeError ("Cannot convert object to
      // primitive value") for {"toString":1}, and printed other objects as "[object Object]".
      regressions: [
        { original: ota, text: '{"v":{"toString":1}}' },
        { original: ota, text: JSON.stringify({ ...ota, seq: { toString: 1, valueOf: 1 } }) },
        { original: ota, text: JSON.stringify({ ...ota, seq: { a: 1 } }) },
      ],
      seed: fuzzSeed(0xc3d),
      runs: fuzzRuns(2000),
      generate: (rng) => {
        const original = rng.pick(valid);
        const changed = rng.chance(0.9) ? mutateObject(rng, original) : original;
        return { original, text: Buffer.from(jsonText(rng, () => changed, 8192)).toString("utf8") };
      },
      check: ({ original, text }) => {
        let fields: unknown;
        try {
          fields = verifyCommand(text, trusted);
        } catch (error) {
          assertClearError(error, CommandSignatureError);
          return;
        }
        // Only the signed fields count: the same fields as the original, whatever else was added.
        const { sig: _sig, v: _v, ...signed } = original;
        assert.deepEqual(fields, signed);
        assertNoPrototypePollution();
      },
    });
  });
});
