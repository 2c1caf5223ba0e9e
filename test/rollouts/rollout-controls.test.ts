import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { flashHolds } from "../server/support/job-suite.ts";
import { eventually } from "../server/support/wait.ts";
import { ID1, ID2, ID3, Rig, rolloutKinds, V2, V3 } from "./support.ts";

const ENDED = ["completed", "paused", "aborted"] as const;

describe("rollout controls end to end", () => {
  let rig: Rig | undefined;
  afterEach(async () => {
    await rig?.close();
    rig = undefined;
  });

  it("pause stops giving devices their turn; resume finishes the rollout", async () => {
    // A longer boot delay holds p1 in "ready" (past taking back) a second before its push: the
    // pause comes while p1 is in ready or pushing.
    rig = await Rig.start({ timings: { bootDelayMs: 1000 } });
    const ids = ["p1", "p2", "p3", "p4"];
    const twins = await rig.devices(ids);
    const created = await rig.bridge.request("rollout/create", {
      firmware: "sensor@2.0",
      devices: ids,
      groups: "rest",
      concurrency: 1,
    });
    // Paused while p1 is being updated and no other device has a command. (Paused just after p1
    // was done, the next device's command was out: on a loaded machine the pause sometimes took
    // it back after the device had acted on it, and that device restarted once more for nothing.)
    await eventually(
      async () => (await rig?.show(created.id))?.devices.find((d) => d.device === "p1")?.status === "pushing",
      "p1 taking its update",
    );
    const paused = await rig.bridge.request("rollout/pause", { id: created.id, reason: "checking the logs" });
    assert.equal(paused.state, "paused");
    assert.equal(paused.pauseKind, "manual");
    assert.equal(paused.reason, "Paused by hand: checking the logs");
    // The device being updated when the pause came finishes; nobody else gets a turn.
    const settled = await eventually(async () => {
      const r = await rig?.show(created.id);
      return r && r.counts.pushing + r.counts.verifying + r.counts.scheduled === 0 ? r : undefined;
    }, "in-flight device settled");
    const statuses = (r: typeof settled) => r.devices.map((d) => [d.device, d.status, d.turnAt !== null]);
    const expected = [
      ["p1", "done", true],
      ["p2", "pending", false],
      ["p3", "pending", false],
      ["p4", "pending", false],
    ];
    assert.deepEqual(statuses(settled), expected);
    await new Promise((resolve) => setTimeout(resolve, 800));
    const later = await rig.show(created.id);
    assert.equal(later.state, "paused");
    assert.deepEqual(statuses(later), expected);
    assert.deepEqual(
      (await rig.bridge.request("jobs", { active: true })).map((j) => j.id),
      [],
    );
    await assert.rejects(
      rig.bridge.request("rollout/pause", { id: created.id }),
      /is already paused: Paused by hand/,
    );

    const resumed = await rig.bridge.request("rollout/resume", { id: created.id });
    assert.equal(resumed.state, "running");
    const end = await rig.until(created.id, [...ENDED]);
    assert.equal(end.state, "completed", end.reason ?? "");
    assert.deepEqual(rolloutKinds(end), ["created", "started", "paused", "resumed", "completed"]);
    for (const twin of twins) assert.deepEqual(twin.boots, [ID1, ID2]);
  });

  it("abort cancels what the devices have not taken; a push under way finishes cleanly", async () => {
    // A long boot delay keeps the always-on device in "ready" (past cancelling) when the abort comes.
    rig = await Rig.start({ timings: { bootDelayMs: 1500 } });
    const [busy] = await rig.devices(["b1"]);
    await rig.devices(["s1", "s2"], { sleepMs: 30_000, windowMs: 100 });
    const created = await rig.bridge.request("rollout/create", {
      firmware: "sensor@2.0",
      devices: ["b1", "s1", "s2"],
      groups: "rest",
      // Room for all three: the sleepers get their commands (and hold their slots) at once.
      concurrency: 3,
    });
    await eventually(
      async () => (await rig?.show(created.id))?.devices.find((d) => d.device === "b1")?.status === "pushing",
      "b1 taking its update",
    );
    const aborted = await rig.bridge.request("rollout/abort", { id: created.id });
    assert.equal(aborted.state, "aborted");
    assert.equal(aborted.reason, "Aborted by hand.");
    const detail = await rig.show(created.id);
    assert.deepEqual(
      detail.devices.map((d) => [d.device, d.status]),
      [
        ["b1", "pushing"],
        ["s1", "cancelled"],
        ["s2", "cancelled"],
      ],
    );
    for (const id of ["s1", "s2"]) {
      const d = detail.devices.find((x) => x.device === id);
      assert.equal((await rig.bridge.request("job", { id: d?.job as string })).state, "cancelled");
    }
    // The push under way is not cut off: it finishes and is recorded, the rollout stays aborted.
    const end = await eventually(async () => {
      const r = await rig?.show(created.id);
      return r?.devices.find((d) => d.device === "b1")?.status === "done" ? r : undefined;
    }, "b1 done");
    assert.equal(end.state, "aborted");
    assert.ok(busy && flashHolds(busy, V2));
    await assert.rejects(
      rig.bridge.request("rollout/resume", { id: created.id }),
      /has ended \(aborted: Aborted by hand\); there is nothing to resume/,
    );
  });

  it("a server stopped in the middle of a group and started again finishes with every device updated once", async () => {
    rig = await Rig.start({ timings: { receiverResetMs: 6000 } }, true);
    const ids = ["r1", "r2", "r3", "r4"];
    const twins = await rig.devices(ids);
    const created = await rig.bridge.request("rollout/create", {
      firmware: "sensor@2.0",
      devices: ids,
      groups: "1,rest",
      concurrency: 1,
    });
    await eventually(async () => {
      const r = await rig?.show(created.id);
      return r && r.currentGroup === 1 && r.groups[1]?.counts.pending !== 3;
    }, "group 2 under way");
    await rig.restartServer();
    const end = await rig.until(created.id, [...ENDED], 45_000);
    assert.equal(end.state, "completed", end.reason ?? "");
    assert.equal(end.counts.done, 4);
    const jobs = await rig.bridge.request("jobs", {});
    for (const [i, twin] of twins.entries()) {
      const id = ids[i] as string;
      assert.deepEqual(
        jobs.filter((j) => j.device === id).map((j) => j.state),
        ["succeeded"],
        `one job for ${id}`,
      );
      assert.equal(twin.boots.at(-1), ID2);
      assert.equal(twin.boots.filter((b) => b === ID2).length, 1, `${id} took the new firmware once`);
      assert.ok(flashHolds(twin, V2));
    }
  });

  it("refuses a downgrade without allow-downgrade, and carries it out with it", async () => {
    rig = await Rig.start();
    const twins = await rig.devices(["d1", "d2"], { image: V2 });
    await assert.rejects(
      rig.bridge.request("rollout/create", { firmware: "sensor@1.5", devices: ["d1", "d2"] }),
      {
        message:
          "Refusing to roll out sensor 1.5: it would downgrade 2 devices (d1 runs sensor 2.0, newer than 1.5; d2 runs sensor 2.0, newer than 1.5). If that is what you want, pass --allow-downgrade (allowDowngrade: true), or leave these devices out.",
      },
    );
    assert.deepEqual(await rig.bridge.request("rollout/list", {}), []);
    const created = await rig.bridge.request("rollout/create", {
      firmware: "sensor@1.5",
      devices: ["d1", "d2"],
      allowDowngrade: true,
    });
    assert.equal(created.policy.allowDowngrade, true);
    const end = await rig.until(created.id, [...ENDED]);
    assert.equal(end.state, "completed", end.reason ?? "");
    for (const twin of twins) {
      assert.deepEqual(twin.boots, [ID2, ID3]);
      assert.ok(flashHolds(twin, V3));
    }
  });
});
