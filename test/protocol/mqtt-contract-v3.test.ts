import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { parseAck, parseState } from "../../src/protocol/mqtt-contract.ts";

const bytes = (value: unknown) => Buffer.from(JSON.stringify(value));
const FW = "0123456789abcdef0123456789abcdef";
const base = { v: 3, fw: FW, ip: "192.168.1.40", seq: 5, keys: ["816091f2"] };

describe("contract v3: the ESP32's state", () => {
  test("chip, slot, run and rb are read; v3 keeps v2's seq and keys", () => {
    const r = parseState(
      bytes({
        ...base,
        chip: "esp32",
        slot: 1572864,
        run: "ota_0",
        rb: { job: "j-7f3a", fw: FW.toUpperCase() },
      }),
    );
    assert.deepEqual(r, {
      ok: true,
      value: {
        v: 3,
        fw: FW,
        ip: "192.168.1.40",
        seq: 5,
        keys: ["816091f2"],
        chip: "esp32",
        slot: 1572864,
        run: "ota_0",
        rb: { job: "j-7f3a", fw: FW },
      },
      warnings: [],
    });
  });

  test("a board without a second app slot reports slot 0, and that is kept", () => {
    const r = parseState(bytes({ ...base, chip: "esp32", slot: 0, run: "factory" }));
    assert.ok(r.ok);
    assert.equal(r.value.slot, 0);
  });

  test("fields out of bounds are dropped with a warning, the rest kept", () => {
    const r = parseState(
      bytes({
        ...base,
        chip: "ESP32",
        slot: 2 ** 40,
        run: "ota 0",
        rb: { job: "j 1", fw: FW },
      }),
    );
    assert.ok(r.ok);
    assert.deepEqual(Object.keys(r.value).sort(), ["fw", "ip", "keys", "seq", "v"]);
    assert.deepEqual(r.warnings, [
      '"chip" "ESP32" ignored',
      '"slot" 1099511627776 ignored',
      '"run" "ota 0" ignored',
      '"rb" {"job":"j 1","fw":"0123456789abcdef01234...(53 chars) ignored',
    ]);
    for (const [field, value] of [
      ["chip", "a".repeat(17)],
      ["slot", -1],
      ["slot", 1.5],
      ["run", "x".repeat(17)],
      ["rb", []],
      ["rb", { job: "j-1" }],
      ["rb", { job: "j-1", fw: "abc" }],
    ] as const) {
      const one = parseState(bytes({ ...base, [field]: value }));
      assert.ok(one.ok);
      assert.equal(field in one.value, false, `${field} ${JSON.stringify(value)}`);
    }
  });

  test("v1 and v2 states carry none of the v3 fields, and v4 is refused", () => {
    const v2 = parseState(bytes({ ...base, v: 2, chip: "esp32", slot: 5 }));
    assert.ok(v2.ok);
    assert.equal(v2.value.chip, undefined);
    assert.deepEqual(parseState(bytes({ ...base, v: 4 })), {
      ok: false,
      reason: "state has contract version 4; this server reads versions 1, 2 and 3",
    });
  });
});

describe("contract v3: a pull's reports on ack", () => {
  test("progress, done, error, and the ready ack of a pull", () => {
    assert.deepEqual(parseAck(bytes({ job: "j-1", got: 65536, total: 1466432 })), {
      ok: true,
      value: { job: "j-1", got: 65536, total: 1466432, done: false },
      warnings: [],
    });
    assert.deepEqual(parseAck(bytes({ job: "j-1", got: 1466432, total: 1466432, done: true })), {
      ok: true,
      value: { job: "j-1", got: 1466432, total: 1466432, done: true },
      warnings: [],
    });
    assert.deepEqual(parseAck(bytes({ job: "j-1", error: " sha256 mismatch: nothing was switched " })), {
      ok: true,
      value: { job: "j-1", error: "sha256 mismatch: nothing was switched" },
      warnings: [],
    });
    // An app's: files staged of the release's, and whether an error is final.
    assert.deepEqual(parseAck(bytes({ job: "j-1", got: 2048, total: 61440, files: 3, of: 20 })), {
      ok: true,
      value: { job: "j-1", got: 2048, total: 61440, done: false, files: 3, of: 20 },
      warnings: [],
    });
    assert.deepEqual(parseAck(bytes({ job: "j-1", error: "main.py: digest differs", final: true })), {
      ok: true,
      value: { job: "j-1", error: "main.py: digest differs", final: true },
      warnings: [],
    });
    assert.deepEqual(parseAck(bytes({ job: "j-1", ready: true, pull: true })), {
      ok: true,
      value: { job: "j-1", ready: true, port: 8266, pull: true },
      warnings: [],
    });
  });

  test("reports out of bounds are refused with the reason", () => {
    const refused = (value: unknown) => {
      const r = parseAck(bytes(value));
      assert.equal(r.ok, false, JSON.stringify(value));
      return r.ok ? "" : r.reason;
    };
    const noReport =
      'ack has no boolean "ready" and is no pull report ("got" and "total" integers, 0 <= got <= total <= 16777216)';
    assert.equal(refused({ job: "j-1", got: 10, total: 5 }), noReport);
    assert.equal(refused({ job: "j-1", got: -1, total: 5 }), noReport);
    assert.equal(refused({ job: "j-1", got: 1.5, total: 5 }), noReport);
    assert.equal(refused({ job: "j-1", got: 0, total: 2 ** 30 }), noReport);
    assert.equal(refused({ job: "j-1", got: "5", total: 5 }), noReport);
    assert.equal(refused({ job: "j-1" }), noReport);
    assert.equal(
      refused({ job: "j-1", got: 5, total: 5, done: "yes" }),
      'ack has a "done" that is not true or false',
    );
    assert.equal(refused({ job: "j-1", error: 5 }), 'ack has an "error" that is not a text');
    assert.equal(refused({ job: "j-1", error: "  " }), 'ack has an "error" that is not a text');
    assert.equal(refused({ got: 5, total: 5 }), 'ack has no valid "job"');
    const files = 'ack has "files" and "of" that are not integers with 0 <= files <= of <= 256';
    assert.equal(refused({ job: "j-1", got: 5, total: 5, files: 3 }), files);
    assert.equal(refused({ job: "j-1", got: 5, total: 5, files: 3, of: 2 }), files);
    assert.equal(refused({ job: "j-1", got: 5, total: 5, files: 1, of: 257 }), files);
    assert.equal(refused({ job: "j-1", got: 5, total: 5, files: -1, of: 2 }), files);
    assert.equal(
      refused({ job: "j-1", error: "x", final: "yes" }),
      'ack has a "final" that is not true or false',
    );
    const long = parseAck(bytes({ job: "j-1", error: "x".repeat(500) }));
    assert.ok(long.ok && "error" in long.value && long.value.error.length < 230);
  });
});
