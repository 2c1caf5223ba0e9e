import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  deviceIdProblem,
  isDeviceId,
  parseAck,
  parseState,
  parseStatus,
} from "../../src/protocol/mqtt-contract.ts";

const bytes = (text: string) => new Uint8Array(Buffer.from(text));
const FW = "0123456789abcdef0123456789ABCDEF";

describe("device ids", () => {
  for (const [id, ok] of [
    ["a", true],
    ["esp-1f2e3d_4", true],
    ["x".repeat(64), true],
    ["x".repeat(65), false],
    ["", false],
    ["with space", false],
    ["slash/id", false],
    ["plus+", false],
    ["hash#", false],
    ["ümlaut", false],
    ["bridge", false],
  ] as const) {
    it(`${JSON.stringify(id.length > 20 ? `${id.slice(0, 10)}...(${id.length})` : id)} is ${ok ? "valid" : "refused"}`, () => {
      assert.equal(isDeviceId(id), ok);
      assert.equal(deviceIdProblem(id) === undefined, ok);
    });
  }

  it("says why 'bridge' is refused", () => {
    assert.match(deviceIdProblem("bridge") ?? "", /reserved for the server's own topics/);
  });
});

describe("state messages (contract v1 and v2)", () => {
  it("reads the contract's example, identity lower-cased", () => {
    const r = parseState(
      bytes(
        `{"v":1,"fw":"${FW}","ver":"v1.19.1-ota","ip":"192.168.1.23","flash":1048576,"mem":23120,"rssi":-61,"wake":"deepsleep","sleep":300,"vbat":3.05}`,
      ),
    );
    assert.deepEqual(r, {
      ok: true,
      warnings: [],
      value: {
        v: 1,
        fw: FW.toLowerCase(),
        ip: "192.168.1.23",
        ver: "v1.19.1-ota",
        flash: 1048576,
        mem: 23120,
        rssi: -61,
        wake: "deepsleep",
        sleep: 300,
        vbat: 3.05,
      },
    });
  });

  it("needs only v, fw and ip", () => {
    assert.deepEqual(parseState(bytes(`{"v":1,"fw":"${FW}","ip":"10.0.0.5"}`)), {
      ok: true,
      warnings: [],
      value: { v: 1, fw: FW.toLowerCase(), ip: "10.0.0.5" },
    });
  });

  it("drops invalid optional fields and says which", () => {
    const r = parseState(
      bytes(`{"v":1,"fw":"${FW}","ip":"10.0.0.5","rssi":"strong","wake":"dream","sleep":-5,"vbat":3.3}`),
    );
    assert.equal(r.ok, true);
    if (!r.ok) return;
    assert.deepEqual(r.value, { v: 1, fw: FW.toLowerCase(), ip: "10.0.0.5", vbat: 3.3 });
    assert.deepEqual(r.warnings, ['"rssi" "strong" ignored', '"wake" "dream" ignored', '"sleep" -5 ignored']);
  });

  it("reads a v2 state with the device's highest accepted counter and its key ids", () => {
    assert.deepEqual(parseState(bytes(`{"v":2,"fw":"${FW}","ip":"10.0.0.5","seq":12,"keys":["1a2b3c4d"]}`)), {
      ok: true,
      warnings: [],
      value: { v: 2, fw: FW.toLowerCase(), ip: "10.0.0.5", seq: 12, keys: ["1a2b3c4d"] },
    });
  });

  it("drops a v2 state's invalid seq and keys and says which; a v1 state carries neither", () => {
    const r = parseState(bytes(`{"v":2,"fw":"${FW}","ip":"10.0.0.5","seq":-1,"keys":["XYZ"]}`));
    assert.deepEqual(r, {
      ok: true,
      warnings: ['"seq" -1 ignored', '"keys" ["XYZ"] ignored'],
      value: { v: 2, fw: FW.toLowerCase(), ip: "10.0.0.5" },
    });
    assert.deepEqual(parseState(bytes(`{"v":1,"fw":"${FW}","ip":"10.0.0.5","seq":3,"keys":["1a2b3c4d"]}`)), {
      ok: true,
      warnings: [],
      value: { v: 1, fw: FW.toLowerCase(), ip: "10.0.0.5" },
    });
  });

  for (const [what, payload, reason] of [
    ["not JSON", "{v:1", /state is not JSON/],
    ["an array", "[1,2]", /not an object/],
    ["a number", "42", /not an object/],
    ["no version", `{"fw":"${FW}","ip":"10.0.0.5"}`, /contract version null/],
    [
      "version 4",
      `{"v":4,"fw":"${FW}","ip":"10.0.0.5"}`,
      /contract version 4; this server reads versions 1, 2 and 3$/,
    ],
    ["a short fw", `{"v":1,"fw":"abc","ip":"10.0.0.5"}`, /no valid "fw"/],
    ["no ip", `{"v":1,"fw":"${FW}"}`, /no valid "ip"/],
    ["a host name as ip", `{"v":1,"fw":"${FW}","ip":"esp.local"}`, /no valid "ip"/],
    ["2049 bytes", `{"v":1,"fw":"${FW}","ip":"10.0.0.5","ver":"${"x".repeat(2049)}"}`, /larger than 2048/],
  ] as const) {
    it(`refuses ${what}`, () => {
      const r = parseState(bytes(payload));
      assert.equal(r.ok, false);
      if (!r.ok) assert.match(r.reason, reason);
    });
  }
});

describe("status messages", () => {
  for (const status of ["online", "sleeping", "ota", "offline"]) {
    it(`reads ${status}`, () =>
      assert.deepEqual(parseStatus(bytes(status)), { ok: true, value: status, warnings: [] }));
  }
  it("refuses anything else", () => {
    const r = parseStatus(bytes("dozing"));
    assert.equal(r.ok, false);
    if (!r.ok) assert.equal(r.reason, 'status "dozing" is not one of online, sleeping, ota, offline');
  });
  it("refuses long payloads", () => assert.equal(parseStatus(bytes("o".repeat(33))).ok, false));
});

describe("acks", () => {
  it("reads a ready ack", () => {
    assert.deepEqual(parseAck(bytes('{"job":"j-7f3a","ready":true,"ip":"192.168.1.23","port":8266}')), {
      ok: true,
      warnings: [],
      value: { job: "j-7f3a", ready: true, ip: "192.168.1.23", port: 8266 },
    });
  });
  it("defaults the port to 8266 and leaves the ip to the state", () => {
    assert.deepEqual(parseAck(bytes('{"job":"j-1","ready":true}')), {
      ok: true,
      warnings: [],
      value: { job: "j-1", ready: true, port: 8266 },
    });
  });
  it("reads a decline with its reason", () => {
    assert.deepEqual(parseAck(bytes('{"job":"j-7f3a","ready":false,"error":"battery low"}')), {
      ok: true,
      warnings: [],
      value: { job: "j-7f3a", ready: false, error: "battery low" },
    });
  });
  for (const [what, payload] of [
    ["no job", '{"ready":true}'],
    ["a job id with a slash", '{"job":"a/b","ready":true}'],
    ["no ready", '{"job":"j-1"}'],
    ["ready as a string", '{"job":"j-1","ready":"yes"}'],
    ["a bad ip", '{"job":"j-1","ready":true,"ip":"300.1.1.1"}'],
    ["port 0", '{"job":"j-1","ready":true,"port":0}'],
    ["port 70000", '{"job":"j-1","ready":true,"port":70000}'],
  ] as const) {
    it(`refuses ${what}`, () => assert.equal(parseAck(bytes(payload)).ok, false));
  }
});
