import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { BridgeClient } from "../../src/server/bridge/bridge-client.ts";
import { openStorage } from "../../src/server/storage/open-storage.ts";
import type { NewRollout } from "../../src/server/storage/rollout-store.ts";
import type { FirmwareStore, Storage } from "../../src/server/storage/storage.ts";
import { buildMicroPythonImage, imageIdentity } from "../support/images.ts";
import { startTestServer, type TestServer, tempDir, testDatabase } from "./support/test-server.ts";

const OLD = buildMicroPythonImage({ size: 24000, seed: 71 });
const NEW = buildMicroPythonImage({ size: 26000, seed: 72 });
const OLD_ID = imageIdentity(OLD);
const NEW_ID = imageIdentity(NEW);

/** The storage with its firmware reads counted by kind (get by id, the whole list). */
function counted(storage: Storage): { storage: Storage; reads: { get: number; list: number } } {
  const reads = { get: 0, list: 0 };
  const firmware = new Proxy(storage.firmware, {
    get(target, key) {
      const value = Reflect.get(target, key) as unknown;
      if (typeof value !== "function") return value;
      return (...args: unknown[]) => {
        if (key === "get" || key === "list") reads[key]++;
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  }) as FirmwareStore;
  const wrapped = new Proxy(storage, {
    get: (target, key) => (key === "firmware" ? firmware : Reflect.get(target, key)),
  });
  return { storage: wrapped, reads };
}

const rollout = (id: string, at: number): NewRollout => ({
  id,
  name: id,
  firmwareId: NEW_ID,
  firmwareName: "sensor",
  firmwareVersion: "2.0",
  firmwareSize: NEW.length,
  selector: { kind: "tag", tag: id },
  groups: [
    { spec: "rest", size: 1, successThreshold: 100, errorThreshold: 20, minExecuted: 1, approve: false },
  ],
  gates: [{ proceed: false, waivedFailed: 0, waivedExecuted: 0 }],
  policy: { maxAttempts: 3, timeoutMs: 60_000, concurrency: 1, allowDowngrade: false, onError: "pause" },
  state: "scheduled",
  currentGroup: 0,
  // Far ahead: the engine leaves them be while the test looks.
  startAt: at + 365 * 24 * 3600_000,
  createdAt: at,
});

/**
 * Lists answer from one read per release, however many jobs or rollouts
 * share it: a fleet of hundreds updating to one release costs one read of
 * it per `mpota jobs`, not hundreds. Jobs and rollouts are written straight
 * to storage and the server's loops poll once an hour, so every read counted
 * is the request's own.
 */
describe("bridge lists read each release once per answer", () => {
  const t = tempDir();
  let shared: Storage;
  let reads: { get: number; list: number };
  let s: TestServer;
  let bridge: BridgeClient;
  let devices = 0;

  /** Adds `n` devices running OLD, each with an active job to NEW, and a rollout of its own when asked. */
  async function addFleet(n: number, withRollouts: boolean): Promise<void> {
    for (let i = 0; i < n; i++) {
      const id = `device-${String(devices++).padStart(3, "0")}`;
      const at = Date.now();
      await shared.devices.recordState({
        id,
        state: { v: 1, fw: OLD_ID, ip: "10.0.0.1" },
        at,
        digest: id,
        nextWakeAt: null,
        historyLimit: 5,
      });
      const job = { deviceId: id, firmwareId: NEW_ID, firmwareName: "sensor", firmwareVersion: "2.0" };
      const created = await shared.jobs.create(
        { id: `job-${id}`, ...job, firmwareSize: NEW.length, maxAttempts: 3, createdAt: at },
        { at, kind: "created", message: "created", data: null },
      );
      assert.ok(created.ok);
      if (withRollouts) {
        const member = { deviceId: id, group: 0, position: 0, fromFw: OLD_ID, state: "pending" as const };
        const made = await shared.rollouts.create(
          rollout(`r-${id}`, at),
          [{ ...member, reason: null, finishedAt: null }],
          { at, kind: "created", message: "created", data: null },
        );
        assert.ok(made.ok);
      }
    }
  }

  /** The firmware reads one request makes. */
  async function readsOf(name: string, request: Record<string, unknown> = {}) {
    const before = { ...reads };
    const answer = await bridge.request(name as "jobs", request);
    return { get: reads.get - before.get, list: reads.list - before.list, answer };
  }

  before(async () => {
    shared = await openStorage({ dataDir: t.dir, db: await testDatabase(t.dir) });
    const view = counted(shared);
    reads = view.reads;
    s = await startTestServer(t.dir, { storage: view.storage, timings: { pollMs: 3600_000 } });
    await s.server.library.add({ bytes: OLD, name: "sensor", version: "1.0" });
    await s.server.library.add({ bytes: NEW, name: "sensor", version: "2.0" });
    bridge = await BridgeClient.connect({ connection: { url: s.url } });
  });
  after(async () => {
    await bridge.close();
    await s.stop();
    await shared.close();
    t.remove();
  });

  it("jobs, devices, a device, a job and rollouts: the same reads for 1 job or 12 on one release", async () => {
    await addFleet(1, true);
    const one = {
      jobs: await readsOf("jobs"),
      devices: await readsOf("devices"),
      rollouts: await readsOf("rollout/list"),
    };
    await addFleet(11, true);
    const twelve = {
      jobs: await readsOf("jobs"),
      devices: await readsOf("devices"),
      rollouts: await readsOf("rollout/list"),
    };
    assert.equal((twelve.jobs.answer as unknown[]).length, 12);
    assert.equal((twelve.rollouts.answer as unknown[]).length, 12);
    // `jobs` and `rollout/list` read the release by id, once; `devices` has the whole index already.
    // Flat, so a failure shows every count.
    const countsOf = (c: typeof one) =>
      `jobs ${c.jobs.get} get ${c.jobs.list} list, devices ${c.devices.get} get ${c.devices.list} list, rollouts ${c.rollouts.get} get ${c.rollouts.list} list`;
    const expected = "jobs 1 get 0 list, devices 0 get 1 list, rollouts 1 get 0 list";
    assert.deepEqual(
      { "1 job": countsOf(one), "12 jobs": countsOf(twelve) },
      { "1 job": expected, "12 jobs": expected },
    );
    const device = await readsOf("device", { id: "device-000" });
    assert.deepEqual({ get: device.get, list: device.list }, { get: 0, list: 1 }, "device");
    const job = await readsOf("job", { id: "job-device-000" });
    assert.deepEqual({ get: job.get, list: job.list }, { get: 1, list: 0 }, "job");

    // The answers still say how the release travels: the UDP push, brought by the server.
    const jobs = twelve.jobs.answer as Array<{ delivery: string; fetchedByDevice: boolean }>;
    assert.ok(jobs.every((j) => j.delivery === "udp-push" && j.fetchedByDevice === false));
    const listed = twelve.devices.answer as unknown as Array<{ job: { delivery: string } | null }>;
    assert.ok(listed.every((d) => d.job?.delivery === "udp-push"));
    const rollouts = twelve.rollouts.answer as unknown as Array<{
      delivery: string;
      fetchedByDevice: boolean;
    }>;
    assert.ok(rollouts.every((r) => r.delivery === "udp-push" && r.fetchedByDevice === false));
    assert.equal((job.answer as unknown as { delivery: string }).delivery, "udp-push");
  });
});
