import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseState } from "../../src/protocol/mqtt-contract.ts";

const FW = "a".repeat(32);
const ID = "b".repeat(64);
const read = (extra: Record<string, unknown>, v = 3) => {
  const parsed = parseState(Buffer.from(JSON.stringify({ v, fw: FW, ip: "10.0.0.5", ...extra })));
  assert.ok(parsed.ok);
  return parsed;
};

describe("contract v3 state: the app field", () => {
  it("reads the installed app, the board, _mpy, the free room and a rollback", () => {
    const p = read({
      app: {
        name: "thermostat",
        ver: "1.4.0",
        id: ID,
        board: "esp8266",
        mpy: 0x2706,
        free: 300_000,
        rb: { job: "j-7f3a", why: "ImportError: no module named 'sensor'\nline 2" },
      },
    });
    assert.deepEqual(p.value.app, {
      name: "thermostat",
      ver: "1.4.0",
      id: ID,
      board: "esp8266",
      mpy: 0x2706,
      free: 300_000,
      rb: { job: "j-7f3a", why: "ImportError: no module named 'sensor' line 2" },
    });
    assert.deepEqual(p.warnings, []);
  });

  it("a board without an app yet reports its board and _mpy only", () => {
    assert.deepEqual(read({ app: { board: "rp2", mpy: 0x1306 } }).value.app, { board: "rp2", mpy: 0x1306 });
  });

  it("drops each part that breaks its rule, with a warning, and keeps the rest", () => {
    const p = read({
      app: {
        name: "Thermostat",
        ver: "1.4.0",
        id: ID,
        board: "ESP 32",
        mpy: 70000,
        free: -1,
        rb: { job: "j 1", why: "x" },
      },
    });
    assert.equal(p.value.app, undefined);
    assert.deepEqual(p.warnings, [
      '"app.name/ver/id (they go together: an app name, a version such as 1.4.0, 64 hex digits)" ignored',
      '"app.board" ignored',
      '"app.mpy" ignored',
      '"app.free" ignored',
      '"app.rb" ignored',
    ]);
    assert.deepEqual(read({ app: "thermostat" }).warnings, ['"app" is not an object: ignored']);
    assert.deepEqual(read({ app: { name: "t", ver: "1.0", id: ID.slice(1), free: 4096 } }).value.app, {
      free: 4096,
    });
  });

  it("cuts a long rollback reason at 200 characters; a v2 state's app is not read", () => {
    const p = read({ app: { rb: { job: "j1", why: "E".repeat(500) } } });
    assert.equal(p.value.app?.rb?.why, `${"E".repeat(200)}...`);
    assert.equal(read({ app: { board: "esp32" } }, 2).value.app, undefined);
  });
});
