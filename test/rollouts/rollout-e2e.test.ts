import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { signPacket } from "../../src/protocol/datagram.ts";
import { SignedImageCache } from "../../src/server/deliveries/signed-image-cache.ts";
import { flashHolds } from "../server/support/job-suite.ts";
import { testKey } from "../server/support/test-server.ts";
import { eventually } from "../server/support/wait.ts";
import { ID1, ID2, Rig, rolloutKinds, V2 } from "./support.ts";

describe("rollouts end to end (emulated devices, real server)", () => {
  let rig: Rig | undefined;
  afterEach(async () => {
    await rig?.close();
    rig = undefined;
  });

  it("widens group by group and ends with every device verified, signing the firmware once", async () => {
    let signatures = 0;
    const signedImages = new SignedImageCache({
      key: testKey,
      block: 256,
      sign: (key, offset, data) => {
        signatures++;
        return signPacket(key, offset, data);
      },
    });
    rig = await Rig.start({ signedImages, block: 256 });
    const ids = ["a1", "a2", "a3", "a4", "a5"];
    const twins = await rig.devices(ids);
    const created = await rig.bridge.request("rollout/create", {
      firmware: "sensor@2.0",
      devices: ids,
      groups: "1,40%,rest",
      timeout: 20,
      concurrency: 2,
    });
    assert.equal(created.state, "running");
    assert.deepEqual(
      created.groups.map((g) => [g.spec, g.size, g.successThreshold, g.errorThreshold, g.minExecuted]),
      [
        ["1", 1, 100, 20, 1],
        ["40%", 2, 100, 20, 2],
        ["rest", 2, 100, 20, 2],
      ],
    );
    const end = await rig.until(created.id, ["completed", "paused", "aborted"]);
    assert.equal(end.state, "completed", end.reason ?? "");
    assert.equal(end.reason, "All 5 devices verified on sensor 2.0.");
    assert.equal(end.counts.done, 5);
    assert.deepEqual(
      end.groups.map((g) => g.state),
      ["finished", "finished", "finished"],
    );
    assert.deepEqual(rolloutKinds(end), [
      "created",
      "started",
      "group-started",
      "group-started",
      "completed",
    ]);
    // A group's devices got their turn only after the group before it had succeeded.
    const byGroup = (g: number) => end.devices.filter((d) => d.group === g);
    for (let g = 1; g < 3; g++) {
      const previousDone = Math.max(...byGroup(g - 1).map((d) => d.finishedAt ?? Number.POSITIVE_INFINITY));
      for (const d of byGroup(g))
        assert.ok((d.turnAt ?? 0) >= previousDone, `${d.device} waited for group ${g}`);
    }
    for (const twin of twins) {
      assert.ok(flashHolds(twin, V2));
      assert.deepEqual(twin.boots, [ID1, ID2]);
    }
    // Five pushes, one image's worth of RSA signatures: its data datagrams and the end datagram.
    assert.equal(signatures, Math.ceil(V2.length / 256) + 1);
    // One job per device, created by the rollout, with the rollout's limit of tries.
    const jobs = await rig.bridge.request("jobs", {});
    assert.equal(jobs.length, 5);
    assert.ok(jobs.every((j) => j.state === "succeeded" && j.maxAttempts === 5));
    const first = await rig.bridge.request("job", { id: jobs[0]?.id as string });
    assert.match(
      first.steps[0]?.message ?? "",
      new RegExp(`requested by rollout ${created.id}, group \\d of 3`),
    );
  });

  it("pauses when the canary's new firmware never comes back, before the next group starts", async () => {
    rig = await Rig.start();
    const [canary, ...rest] = await rig.devices(["c1", "c2", "c3"]);
    canary?.emulator.events.on("otaFinished", () => {
      if (!canary) return;
      canary.agentEnabled = false;
      setImmediate(() => canary.emulator.powerOff());
    });
    const created = await rig.bridge.request("rollout/create", {
      firmware: "sensor@2.0",
      devices: ["c1", "c2", "c3"],
      groups: "1,rest",
      retries: 0,
    });
    const paused = await rig.until(created.id, ["paused", "completed", "aborted"]);
    assert.equal(paused.state, "paused");
    assert.equal(paused.pauseKind, "errors");
    assert.match(
      paused.reason ?? "",
      /^Group 1 of 2 \(1 device\): 1 of 1 finished device failed \(100 %\), above its error threshold of 20 % \(counted from 1 finished\)\. Latest: c1: Device c1 has not come back since the push/,
    );
    assert.equal(paused.currentGroup, 0);
    assert.deepEqual(
      paused.devices.map((d) => [d.device, d.status, d.job === null]),
      [
        ["c1", "failed", false],
        ["c2", "pending", true],
        ["c3", "pending", true],
      ],
    );
    assert.deepEqual(
      (await rig.bridge.request("jobs", {})).map((j) => j.device),
      ["c1"],
    );
    for (const twin of rest) assert.deepEqual(twin.boots, [ID1]);

    // Resuming accepts the canary's failure and goes on with the rest.
    const resumed = await rig.bridge.request("rollout/resume", { id: created.id });
    assert.equal(resumed.state, "running");
    const end = await rig.until(created.id, ["completed", "paused", "aborted"]);
    assert.equal(end.state, "completed", end.reason ?? "");
    assert.equal(end.reason, "2 of 3 devices verified on sensor 2.0; 1 failed.");
    assert.match(end.events.find((e) => e.kind === "resumed")?.message ?? "", /failures so far are accepted/);
    for (const twin of rest) assert.deepEqual(twin.boots, [ID1, ID2]);
  });

  it("updates a sleepy device on its wake, inside its group", async () => {
    rig = await Rig.start();
    await rig.devices(["a1", "a2"]);
    // It sleeps until the test wakes it, after its turn has come: a turn that fell inside a wake
    // (the canary's push is as long as a short sleep, and slower on a loaded machine) had the
    // device take the command in the wake it had already reported, with no wake in the job's steps.
    const [sleepy] = await rig.devices(["s1"], { sleepMs: 60_000, windowMs: 200 });
    await eventually(
      async () => (await rig?.bridge.request("device", { id: "s1" }))?.status === "sleeping",
      "s1 asleep",
    );
    const created = await rig.bridge.request("rollout/create", {
      firmware: "sensor@2.0",
      devices: ["a1", "s1", "a2"],
      groups: "1,rest",
      timeout: 10,
    });
    // Its group's turn comes after the canary, while it sleeps: its command waits for its wake.
    const turn = await eventually(
      async () => {
        const d = (await rig?.show(created.id))?.devices.find((x) => x.device === "s1");
        const job = d?.job ? await rig?.bridge.request("job", { id: d.job }) : undefined;
        return job?.state === "waiting" ? d : undefined;
      },
      "s1's command published",
      30_000,
    );
    assert.equal(turn.group, 1);
    assert.equal(turn.status, "scheduled");
    assert.deepEqual(sleepy?.boots, [ID1]);
    await sleepy?.wake();
    const end = await rig.until(created.id, ["completed", "paused", "aborted"]);
    assert.equal(end.state, "completed", end.reason ?? "");
    const s1 = end.devices.find((d) => d.device === "s1");
    assert.ok(s1);
    assert.equal(s1.group, 1);
    assert.equal(s1.sleepy, true);
    // Its sleep period on top of the timeout (times are whole milliseconds, so allow rounding).
    const budget = (s1.deadlineAt ?? 0) - (s1.turnAt ?? 0);
    assert.ok(Math.abs(budget - (10_000 + 60_000)) <= 5, `budget ${budget} ms`);
    const job = await rig.bridge.request("job", { id: s1.job as string });
    const kinds = job.steps.map((s) => s.kind);
    assert.ok(kinds.indexOf("device-state") < kinds.indexOf("ack"), `woke, then took the command: ${kinds}`);
    assert.match(job.steps.find((s) => s.kind === "device-state")?.message ?? "", /Device woke running/);
    // It booted its old firmware at power-on and at the wake, took the command, and booted the new one once.
    assert.deepEqual(sleepy?.boots, [ID1, ID1, ID2]);
  });

  it("fails a sleepy device that does not wake after its timeout plus its sleep, without holding the group", async () => {
    rig = await Rig.start();
    await rig.devices(["a1", "a2"]);
    const [silent] = await rig.devices(["s2"], { sleepMs: 1500, windowMs: 200 });
    await eventually(
      async () => (await rig?.bridge.request("device", { id: "s2" }))?.status === "sleeping",
      "s2 asleep",
    );
    if (silent) silent.agentEnabled = false; // its battery died in its sleep
    const created = await rig.bridge.request("rollout/create", {
      firmware: "sensor@2.0",
      devices: ["a1", "s2", "a2"],
      groups: [{ count: 1 }, { rest: true, successThreshold: 50, errorThreshold: 50 }],
      // The canary (a1, always on) must verify within this too: 3 s was too short for a push
      // and reboot on a loaded 2-core machine, and the rollout paused on it.
      timeout: 6,
    });
    const end = await rig.until(created.id, ["completed", "paused", "aborted"]);
    assert.equal(end.state, "completed", end.reason ?? "");
    assert.equal(end.reason, "2 of 3 devices verified on sensor 2.0; 1 failed.");
    const s2 = end.devices.find((d) => d.device === "s2");
    assert.equal(s2?.status, "failed");
    assert.match(
      s2?.reason ?? "",
      /^Timed out: the device did not take the command within 6\.0 s of its turn plus its sleep period of 1\.5 s \(its job j-\w+ was waiting and is cancelled\)\.$/,
    );
    assert.equal((await rig.bridge.request("job", { id: s2?.job as string })).state, "cancelled");
  });
});
