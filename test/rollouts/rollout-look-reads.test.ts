import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { connectAsync } from "mqtt";
import { VirtualClock } from "../../src/net/clock.ts";
import type { RolloutView } from "../../src/server/api/rollout-api.ts";
import { BridgeClient } from "../../src/server/bridge/bridge-client.ts";
import { JOB_ENDED_LOOK_MS } from "../../src/server/rollouts/rollout-engine.ts";
import { openStorage } from "../../src/server/storage/open-storage.ts";
import type { RolloutStore } from "../../src/server/storage/rollout-store.ts";
import type { Storage } from "../../src/server/storage/storage.ts";
import { startTestServer, type TestServer, tempDir, testDatabase } from "../server/support/test-server.ts";
import { eventually } from "../server/support/wait.ts";
import { ID1, V1, V2 } from "./support.ts";

/** The storage with the reads of a rollout's device rows counted. */
function counted(storage: Storage): { storage: Storage; reads: { snapshots: number; rows: number } } {
  const reads = { snapshots: 0, rows: 0 };
  const rollouts = new Proxy(storage.rollouts, {
    get(target, key) {
      const value = Reflect.get(target, key) as unknown;
      if (typeof value !== "function") return value;
      if (key !== "snapshot") return (value as (...a: unknown[]) => unknown).bind(target);
      return async (id: string) => {
        const rows = await target.snapshot(id);
        reads.snapshots++;
        reads.rows += rows.length;
        return rows;
      };
    },
  }) as RolloutStore;
  const wrapped = new Proxy(storage, {
    get: (target, key) => (key === "rollouts" ? rollouts : Reflect.get(target, key)),
  });
  return { storage: wrapped, reads };
}

/**
 * One look at a rollout reads its device rows once, however large the
 * rollout: what it publishes after giving devices their turn (or taking
 * their jobs back) is that read with its own changes, and equals what a
 * fresh read shows. The server runs on a clock that only moves when told,
 * so no poll or kick adds a look: each request below makes exactly one look
 * and one read for its answer. The devices are written straight to storage
 * and never connect, so their jobs wait for them and nothing moves on.
 */
describe("a rollout's look reads its devices once", () => {
  const t = tempDir("mpota-rollout-look-");
  const clock = new VirtualClock(Date.now());
  let shared: Storage;
  let reads: { snapshots: number; rows: number };
  let s: TestServer;
  let bridge: BridgeClient;

  before(async () => {
    shared = await openStorage({ dataDir: t.dir, db: await testDatabase(t.dir) });
    const view = counted(shared);
    reads = view.reads;
    s = await startTestServer(t.dir, { storage: view.storage, clock });
    await s.server.library.add({ bytes: V1, name: "sensor", version: "1.0" });
    await s.server.library.add({ bytes: V2, name: "sensor", version: "2.0" });
    bridge = await BridgeClient.connect({ connection: { url: s.url } });
  });
  after(async () => {
    await bridge.close();
    await s.stop();
    await shared.close();
    t.remove();
  });

  /** Devices known to the server (provisioned, running sensor 1.0) that never connect. */
  async function fleet(prefix: string, n: number): Promise<string[]> {
    const ids = Array.from({ length: n }, (_, i) => `${prefix}-${String(i).padStart(3, "0")}`);
    for (const id of ids) {
      await s.provision(id);
      await shared.devices.recordState({
        id,
        state: { v: 2, fw: ID1, ip: "10.0.0.7", flash: 1048576 },
        at: clock.now(),
        digest: id,
        nextWakeAt: null,
        historyLimit: 5,
      });
    }
    return ids;
  }

  /** What a view says of the rollout's progress (an answer also says how the release travels). */
  const shown = (v: RolloutView) => ({
    state: v.state,
    currentGroup: v.currentGroup,
    updatedAt: v.updatedAt,
    counts: v.counts,
    groups: v.groups,
  });

  /** The rollout's retained progress message. */
  async function progress(id: string): Promise<ReturnType<typeof shown>> {
    const client = await connectAsync(s.url, { clean: true });
    try {
      const message = new Promise<RolloutView>((resolve) =>
        client.on("message", (_topic, payload) => resolve(JSON.parse(payload.toString()) as RolloutView)),
      );
      await client.subscribeAsync(`mpota/bridge/rollouts/${id}`, { qos: 1 });
      return shown(await message);
    } finally {
      await client.endAsync();
    }
  }

  /** The device rows one request read (its look's and its answer's), and its answer. */
  async function readsOf<T>(
    request: () => Promise<T>,
  ): Promise<{ snapshots: number; rows: number; answer: T }> {
    const before = { ...reads };
    const answer = await request();
    return { snapshots: reads.snapshots - before.snapshots, rows: reads.rows - before.rows, answer };
  }

  for (const size of [4, 40]) {
    it(`${size} devices: creating, pausing and resuming read the rows once a look and publish what a fresh read shows`, async () => {
      const ids = await fleet(`look${size}`, size);
      const created = await readsOf(() =>
        bridge.request("rollout/create", {
          firmware: "sensor@2.0",
          devices: ids,
          groups: "rest",
          concurrency: 3,
        }),
      );
      const r = created.answer;
      assert.equal(r.state, "running");
      assert.deepEqual([r.counts.scheduled, r.counts.pending], [3, size - 3]);
      // Flat, so a failure shows every count: the look's read and the answer's, each of every row.
      assert.deepEqual([created.snapshots, created.rows], [2, 2 * size], "creating");
      assert.deepEqual(await progress(r.id), shown(r));

      const paused = await readsOf(() => bridge.request("rollout/pause", { id: r.id }));
      assert.equal(paused.answer.state, "paused");
      // The jobs the devices had not taken were taken back: every device waits again.
      assert.deepEqual([paused.answer.counts.scheduled, paused.answer.counts.pending], [0, size]);
      assert.deepEqual([paused.snapshots, paused.rows], [2, 2 * size], "pausing");
      assert.deepEqual(await progress(r.id), shown(paused.answer));

      const resumed = await readsOf(() => bridge.request("rollout/resume", { id: r.id }));
      assert.equal(resumed.answer.state, "running");
      assert.deepEqual([resumed.answer.counts.scheduled, resumed.answer.counts.pending], [3, size - 3]);
      assert.deepEqual([resumed.snapshots, resumed.rows], [2, 2 * size], "resuming");
      assert.deepEqual(await progress(r.id), shown(resumed.answer));

      await bridge.request("rollout/abort", { id: r.id });
    });
  }
  it("a look that finds a job ended and gives its slot to the next device reads the rows once and publishes what a fresh read shows", async () => {
    const ids = await fleet("ended", 6);
    const r = await bridge.request("rollout/create", {
      firmware: "sensor@2.0",
      devices: ids,
      groups: "rest",
      concurrency: 2,
      errorThreshold: 100,
    });
    const first = (await bridge.request("rollout/show", { id: r.id })).devices.filter((d) => d.job !== null);
    assert.equal(first.length, 2);
    const before = { ...reads };
    // The owner cancels one device's job; the rollout looks JOB_ENDED_LOOK_MS later. That look
    // fails the device (an outcome) and gives its slot to the next (a new job), both laid over its read.
    await bridge.request("job/cancel", { id: first[0]?.job as string });
    await clock.advance(JOB_ENDED_LOOK_MS);
    const seen = await eventually(async () => {
      const p = await progress(r.id);
      return p.counts.failed === 1 ? p : undefined;
    }, "the look after the job ended");
    assert.deepEqual([reads.snapshots - before.snapshots, reads.rows - before.rows], [1, 6], "the look");
    const fresh = await bridge.request("rollout/show", { id: r.id });
    assert.equal(fresh.devices.find((d) => d.device === first[0]?.device)?.status, "failed");
    assert.deepEqual([fresh.counts.scheduled, fresh.counts.pending, fresh.counts.failed], [2, 3, 1]);
    assert.deepEqual(seen, shown(fresh));
    await bridge.request("rollout/abort", { id: r.id });
  });

  it("a job the owner cancels just before a pause fails its device: the resume gives it no new job", async () => {
    const ids = await fleet("called-off", 4);
    const r = await bridge.request("rollout/create", {
      firmware: "sensor@2.0",
      devices: ids,
      groups: "rest",
      concurrency: 2,
      errorThreshold: 100,
    });
    const first = (await bridge.request("rollout/show", { id: r.id })).devices.filter((d) => d.job !== null);
    const [owned, other] = [first[0], first[1]];
    assert.ok(owned && other);
    // The clock stands still, so the pause's look is the first to see the cancelled job.
    await bridge.request("job/cancel", { id: owned.job as string });
    const paused = await bridge.request("rollout/pause", { id: r.id });
    assert.equal(paused.state, "paused");
    const after = await bridge.request("rollout/show", { id: r.id });
    const row = (v: typeof after, id: string) => v.devices.find((d) => d.device === id);
    assert.equal(row(after, owned.device)?.status, "failed");
    assert.equal(row(after, owned.device)?.reason, `Its job ${owned.job} was cancelled outside the rollout.`);
    // The other device's job, which the pause took back, waits again with the devices not started.
    assert.equal(row(after, other.device)?.status, "pending");
    assert.deepEqual([after.counts.failed, after.counts.pending, after.counts.scheduled], [1, 3, 0]);
    // Each job's history says who ended it.
    const ended = async (id: string) => {
      const job = await bridge.request("job", { id });
      return [job.state, job.steps.at(-1)?.message];
    };
    assert.deepEqual(await ended(owned.job as string), ["cancelled", "Cancelled on request."]);
    assert.deepEqual(await ended(other.job as string), ["cancelled", "Taken back by its rollout."]);

    await bridge.request("rollout/resume", { id: r.id });
    const resumed = await bridge.request("rollout/show", { id: r.id });
    assert.equal(resumed.state, "running");
    assert.equal(row(resumed, owned.device)?.status, "failed");
    assert.equal(row(resumed, owned.device)?.job, owned.job);
    assert.deepEqual([resumed.counts.failed, resumed.counts.scheduled, resumed.counts.pending], [1, 2, 1]);
    await bridge.request("rollout/abort", { id: r.id });
  });
});
