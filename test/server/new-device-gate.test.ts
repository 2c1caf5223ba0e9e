import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { VirtualClock } from "../../src/net/clock.ts";
import { type DeviceLimits, NewDeviceGate } from "../../src/server/devices/new-device-gate.ts";
import { LogCapture } from "./support/log-capture.ts";

/** A gate over an in-memory registry: ids added by `admit`, some of them provisioned. */
function gate(limits: DeviceLimits, provisioned: ReadonlySet<string> = new Set()) {
  const clock = new VirtualClock(1_000_000);
  const logs = new LogCapture();
  const registry = new Set<string>();
  let failWrites = false;
  const g = new NewDeviceGate({
    limits,
    count: async () => registry.size,
    provisioned: async (id) => provisioned.has(id),
    clock,
    logger: logs.logger,
  });
  const admit = (id: string) =>
    g.admit(id, "state", async () => {
      await new Promise((resolve) => setImmediate(resolve));
      if (failWrites) throw new Error("database or disk is full");
      registry.add(id);
      return id;
    });
  return { clock, logs, registry, admit, failing: (on: boolean) => (failWrites = on) };
}

const ids = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}-${i}`);

describe("the new-device gate", () => {
  it("never registers more than the cap, even when ids arrive all at once", async () => {
    const g = gate({ maxDevices: 150, newPerMinute: 1000 });
    const results = await Promise.all(ids("d", 400).map((id) => g.admit(id)));
    assert.equal(g.registry.size, 150);
    assert.equal(results.filter((r) => r !== undefined).length, 150);
    const lines = g.logs.lines.filter((l) => l.msg.startsWith("new device refused"));
    assert.equal(lines.length, 1);
    assert.equal(lines[0]?.limit, "max-devices");
  });

  it("never registers more than the cap when the count is read before writes that finish while it runs", async () => {
    // As a database does: the count sees the rows committed when the query starts and answers later,
    // while registrations already let in finish meanwhile (PostgreSQL under load, in CI).
    const clock = new VirtualClock(1_000_000);
    const registry = new Set<string>();
    const g = new NewDeviceGate({
      limits: { maxDevices: 20, newPerMinute: 10_000 },
      count: () => {
        const n = registry.size;
        return new Promise((resolve) => setTimeout(() => resolve(n), 3));
      },
      provisioned: async () => false,
      clock,
      logger: new LogCapture().logger,
    });
    await Promise.all(
      ids("r", 300).map((id) =>
        g.admit(id, "state", async () => {
          await new Promise((resolve) => setTimeout(resolve, 1));
          registry.add(id);
          return id;
        }),
      ),
    );
    assert.equal(registry.size, 20);
  });

  it("lets newPerMinute in at once, then refills evenly; provisioned ids pass over the rate without a token", async () => {
    const g = gate({ maxDevices: 10_000, newPerMinute: 60 }, new Set(["added-1", "added-2"]));
    await Promise.all(ids("a", 100).map((id) => g.admit(id)));
    assert.equal(g.registry.size, 60);
    assert.equal(await g.admit("added-1"), "added-1");
    assert.equal(await g.admit("b-0"), undefined);
    await g.clock.advance(5000); // 5 tokens
    await Promise.all(ids("c", 10).map((id) => g.admit(id)));
    assert.equal(g.registry.size, 66);
    assert.equal(await g.admit("added-2"), "added-2");
    const lines = g.logs.lines.filter((l) => l.msg.startsWith("new device refused"));
    assert.equal(lines.length, 1, "one line a minute");
    await g.clock.advance(60_000);
    assert.equal(await g.admit("d-0"), "d-0");
    const again = g.logs.lines.filter((l) => l.msg.startsWith("new device refused"));
    assert.equal(again.length, 1, "nothing refused after the refill");
  });

  it("gives the place and the token back when the write fails (a full disk)", async () => {
    const g = gate({ maxDevices: 3, newPerMinute: 3 });
    g.failing(true);
    for (const id of ids("x", 10)) await assert.rejects(g.admit(id), /disk is full/);
    g.failing(false);
    await Promise.all(ids("y", 5).map((id) => g.admit(id)));
    assert.deepEqual([...g.registry].sort(), ["y-0", "y-1", "y-2"]);
  });
});
