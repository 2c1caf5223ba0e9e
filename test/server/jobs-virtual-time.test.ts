import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { VirtualClock } from "../../src/net/clock.ts";
import { DEFAULT_JOB_TIMINGS } from "../../src/server/jobs/job-timings.ts";
import { openStorage } from "../../src/server/storage/open-storage.ts";
import { type JobStore, type Storage, StorageUnavailableError } from "../../src/server/storage/storage.ts";
import { startAedesBroker, type TestBroker } from "./support/brokers.ts";
import { MqttDevice } from "./support/mqtt-device.ts";
import { bundleIdentity, bundleKind, makeBundle, PullDelivery } from "./support/pull-delivery.ts";
import {
  provisionTestDevice,
  startTestServer,
  type TestServer,
  tempDir,
  testDatabase,
} from "./support/test-server.ts";

const B1 = makeBundle({ "main.py": "print('v1')\n" });
const B2 = makeBundle({ "main.py": `print('v2')\n${"#".repeat(5000)}\n` });
const { leaseMs, receiverResetMs } = DEFAULT_JOB_TIMINGS;

/** One instance's view of the shared database, whose job table can be cut off (its connection is down). */
function cutOff(storage: Storage): { storage: Storage; down: boolean } {
  const view = { storage, down: false };
  const jobs = new Proxy(storage.jobs, {
    get(target, key) {
      const value = Reflect.get(target, key) as unknown;
      if (typeof value !== "function") return value;
      return (...args: unknown[]) => {
        if (view.down)
          return Promise.reject(new StorageUnavailableError("connection to the database lost (test)"));
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  }) as JobStore;
  view.storage = new Proxy(storage, {
    get: (target, key) => (key === "jobs" ? jobs : Reflect.get(target, key)),
  });
  return view;
}

/**
 * Two server instances on one database and one broker, with the production
 * job timings (30 s leases, 80 s receiver reset), run in virtual time: the
 * servers' clock is a VirtualClock stepped by the test, while the broker,
 * the database and the device are real and run in real time between steps.
 */
describe("two instances in virtual time, with production timings", () => {
  const t = tempDir();
  const clock = new VirtualClock(Date.now());
  const delivery = new PullDelivery("mpota", clock);
  let broker: TestBroker;
  let shared: Storage;
  const views = new Map<string, ReturnType<typeof cutOff>>();
  const servers = new Map<string, TestServer>();

  /** Steps virtual time 200 ms at a time, letting real I/O run between steps, until `done` holds. */
  async function runUntil(done: () => Promise<boolean> | boolean, what: string, limitMs: number) {
    const until = clock.now() + limitMs;
    while (!(await done())) {
      if (clock.now() > until) throw new Error(`${what}: not within ${limitMs / 1000} s of virtual time`);
      await clock.advance(200);
      await new Promise((resolve) => setTimeout(resolve, 3));
    }
  }

  before(async () => {
    broker = await startAedesBroker();
    shared = await openStorage({ dataDir: t.dir, db: await testDatabase(t.dir) });
    for (const id of ["A", "B"]) {
      const view = cutOff(shared);
      views.set(id, view);
      servers.set(
        id,
        await startTestServer(t.dir, {
          instanceId: id,
          storage: view.storage,
          broker: { kind: "external", connection: broker.connection },
          clock,
          timings: DEFAULT_JOB_TIMINGS,
          releaseKinds: [bundleKind],
          deliveries: [delivery],
        }),
      );
    }
    await delivery.attach(broker.connection.url);
  });
  after(async () => {
    for (const view of views.values()) view.down = false;
    // Stopping waits for work that sleeps on the virtual clock (a device message tried again
    // while the database was away): time goes on while the servers stop.
    let stopped = false;
    const stopping = Promise.all([...servers.values()].map((s) => s.stop())).finally(() => {
      stopped = true;
    });
    while (!stopped) {
      await clock.advance(200);
      await new Promise((resolve) => setTimeout(resolve, 3));
    }
    await stopping;
    await delivery.close();
    await shared.close();
    await broker.stop();
    t.remove();
  });

  it("an instance that cannot renew its lease stops delivering before it runs out; the other takes the job over", async () => {
    const a = servers.get("A") as TestServer;
    await a.server.library.add({ bytes: B1, name: "app", version: "1.0" });
    await a.server.library.add({ bytes: B2, name: "app", version: "2.0" });
    await provisionTestDevice(a.server, t.dir, "loft");
    // The device: acks every command; fetches an offered release only once allowed.
    const dev = await MqttDevice.connect(broker.connection.url, "loft");
    const state = { fw: bundleIdentity(B1), ip: "127.0.0.1", ver: "MicroPython 1.29 bundles" };
    await dev.state(state);
    let mayFetch = false;
    let fetched = false;
    dev.client.on("message", (topic, payload) => {
      if (topic !== "mpota/loft/cmd" || payload.length === 0) return;
      const command = JSON.parse(payload.toString()) as { job: string; fw: string };
      void (async () => {
        await dev.ack({ job: command.job, ready: true, ip: "127.0.0.1", port: 8266 });
        while (!fetched) {
          const response = mayFetch ? await fetch(`${delivery.url}/releases/${command.fw}`) : undefined;
          if (response?.status === 200) {
            const bytes = new Uint8Array(await response.arrayBuffer());
            const report = { job: command.job, bytes: bytes.length, total: bytes.length, done: true };
            await dev.publish("fetched", JSON.stringify(report), false);
            await dev.state({ ...state, fw: bundleIdentity(bytes) });
            fetched = true;
          }
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
      })();
    });
    await runUntil(async () => Boolean((await shared.devices.get("loft"))?.state), "device known", 10_000);
    const startedAt = { virtual: clock.now(), real: Date.now() };
    const job = await a.server.runner.create("loft", "app@2.0");
    await runUntil(() => delivery.log.length === 1, "first delivery", 60_000);

    // The instance delivering loses its database: it can no longer renew the job's lease.
    const steps = async () => shared.jobs.steps(job.id);
    const first = (await steps()).find((s) => s.kind === "push-started")?.data?.instance as string;
    const second = first === "A" ? "B" : "A";
    (views.get(first) as ReturnType<typeof cutOff>).down = true;
    const downAt = clock.now();
    await runUntil(() => delivery.log[0]?.to !== undefined, "first delivery stopped", leaseMs);
    mayFetch = true;
    await runUntil(
      async () => (await shared.jobs.get(job.id))?.phase === "succeeded",
      "job succeeded",
      300_000,
    );

    const [stopped, taken] = delivery.log;
    assert.equal(delivery.log.length, 2);
    assert.equal(stopped?.outcome, "aborted");
    // Stopped before its lease could run out, and the other instance began only after it had.
    assert.ok((stopped?.to as number) < downAt + leaseMs, "stopped within the lease");
    assert.ok(
      (stopped?.to as number) <= (taken?.from as number),
      "never two deliveries to one device at once",
    );
    assert.ok(
      (taken?.from as number) >= downAt + (leaseMs * 5) / 6 + receiverResetMs,
      "taken over after the lease expired and the receiver's reset",
    );
    assert.equal(taken?.outcome, "delivered");
    const log = await steps();
    assert.deepEqual(
      log.filter((s) => s.kind === "push-started").map((s) => s.data?.instance),
      [first, second],
    );
    assert.ok(log.some((s) => s.kind === "interrupted"));
    assert.ok(
      (servers.get(first) as TestServer).logs.find(
        "lease on a job could not be renewed in time; stopping the push",
      ).length >= 1,
    );
    assert.equal((await shared.devices.get("loft"))?.state?.fw, bundleIdentity(B2));
    const virtualSeconds = (clock.now() - startedAt.virtual) / 1000;
    const realSeconds = (Date.now() - startedAt.real) / 1000;
    assert.ok(virtualSeconds > 100, `${virtualSeconds} s of virtual time`);
    assert.ok(realSeconds < virtualSeconds / 2, `${virtualSeconds} s of virtual time took ${realSeconds} s`);
    (views.get(first) as ReturnType<typeof cutOff>).down = false;
    await dev.close();
  });
});
