import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { afterEach, describe, it } from "node:test";
import { adminTokenPath } from "../../src/server/http/admin-token.ts";
import { flashHolds } from "../server/support/job-suite.ts";
import { eventually } from "../server/support/wait.ts";
import { ID2, Rig, V2 } from "./support.ts";

const HTTP = { http: { host: "127.0.0.1", port: 0 } };

async function post(rig: Rig, path: string, json: unknown) {
  const base = (rig.s.server.http?.url ?? "").replace(/\/$/, "");
  const token = readFileSync(adminTokenPath(rig.dir), "utf8").trim();
  const response = await fetch(`${base}${path}`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify(json),
  });
  // biome-ignore lint/suspicious/noExplicitAny: JSON bodies are checked field by field in the tests.
  return { status: response.status, body: (await response.json()) as any };
}

// "Update all devices on a line" (the dashboard's button, POST /api/v1/update/line) runs as a stored rollout.
describe("update all devices on a line", () => {
  let rig: Rig | undefined;
  afterEach(async () => {
    await rig?.close();
    rig = undefined;
  });

  it("updates every device of the line, one at a time, and survives a server restart", async () => {
    rig = await Rig.start({ ...HTTP, timings: { receiverResetMs: 6000 } }, true);
    const ids = ["l1", "l2", "l3"];
    const twins = await rig.devices(ids);
    const started = await post(rig, "/api/v1/update/line", { firmware: "sensor@2.0", concurrency: 1 });
    assert.equal(started.status, 201, JSON.stringify(started.body));
    assert.deepEqual(started.body.firmware, { id: ID2, name: "sensor", version: "2.0" });
    assert.equal(started.body.concurrency, 1);
    const rollout = started.body.rollout;
    assert.deepEqual(rollout.selector, { kind: "line", line: "sensor" });
    assert.equal(rollout.policy.concurrency, 1);
    assert.equal(rollout.counts.total, 3);
    assert.equal(rollout.counts.scheduled, 1, "one device at a time");

    // A second request for the same line while the first runs names the rollout that has the devices.
    const again = await post(rig, "/api/v1/update/line", { firmware: "sensor@2.0", concurrency: 1 });
    assert.equal(again.status, 400);
    assert.match(
      again.body.error,
      new RegExp(`are in active rollout ${rollout.id} \\("update sensor to 2\\.0"\\)`),
    );

    await eventually(async () => (await rig?.show(rollout.id))?.counts.done === 1, "first device done");
    await rig.restartServer();
    const end = await rig.until(rollout.id, ["completed", "paused", "aborted"], 45_000);
    assert.equal(end.state, "completed", end.reason ?? "");
    assert.equal(end.counts.done, 3);

    const jobs = await rig.bridge.request("jobs", {});
    assert.equal(jobs.length, 3, "one job per device");
    // Never two at once: each job was created after the previous one finished.
    const ordered = [...jobs].sort((a, b) => a.createdAt - b.createdAt);
    for (let i = 1; i < ordered.length; i++) {
      assert.ok(
        (ordered[i]?.createdAt ?? 0) >= (ordered[i - 1]?.finishedAt ?? Number.POSITIVE_INFINITY),
        `job ${i + 1} started after job ${i} ended`,
      );
    }
    for (const [i, twin] of twins.entries()) {
      assert.equal(twin.boots.filter((b) => b === ID2).length, 1, `${ids[i]} took the new firmware once`);
      assert.ok(flashHolds(twin, V2));
    }
  });

  it("answers bad requests with the reason", async () => {
    rig = await Rig.start(HTTP);
    await rig.devices(["m1"]);
    const zero = await post(rig, "/api/v1/update/line", { firmware: "sensor@2.0", concurrency: 0 });
    assert.equal(zero.status, 400);
    assert.equal(zero.body.error, '"concurrency" must be a whole number from 1 to 20.');
    const unknown = await post(rig, "/api/v1/update/line", { firmware: "lamp", concurrency: 1 });
    assert.equal(unknown.status, 400);
    assert.match(unknown.body.error, /^No firmware named "lamp" is in the store\./);
    const current = await post(rig, "/api/v1/update/line", { firmware: "sensor@1.0", concurrency: 1 });
    assert.equal(current.status, 400);
    assert.match(current.body.error, /already runs sensor 1\.0: there is nothing to roll out/);
    assert.deepEqual(await rig.bridge.request("rollout/list", {}), []);
  });
});
