import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { ID1, ID2, Rig } from "./support.ts";

describe("a rollout's freed slot", () => {
  let rig: Rig | undefined;
  afterEach(async () => {
    await rig?.close();
    rig = undefined;
  });

  it("goes to the next device when a job ends, not at the engine's next poll", async () => {
    // An hour between polls: only the end of r1's job can give r2 its turn within the test.
    rig = await Rig.start({ timings: { pollMs: 3_600_000 } });
    const twins = await rig.devices(["r1", "r2", "r3"]);
    const created = await rig.bridge.request("rollout/create", {
      firmware: "sensor@2.0",
      devices: ["r1", "r2", "r3"],
      groups: "rest",
      concurrency: 1,
    });
    const end = await rig.until(created.id, ["completed", "paused", "aborted"]);
    assert.equal(end.state, "completed", end.reason ?? "");
    assert.deepEqual(
      end.devices.map((d) => [d.device, d.status]),
      [
        ["r1", "done"],
        ["r2", "done"],
        ["r3", "done"],
      ],
    );
    // One at a time: each device's turn came after the one before it was done.
    const [r1, r2, r3] = end.devices;
    assert.ok((r2?.turnAt as number) >= (r1?.finishedAt as number));
    assert.ok((r3?.turnAt as number) >= (r2?.finishedAt as number));
    for (const twin of twins) assert.deepEqual(twin.boots, [ID1, ID2]);
  });
});
