import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, beforeEach, describe, it } from "node:test";
import { connectAsync } from "mqtt";
import { ID2, V2 } from "../rollouts/support.ts";
import { mosquittoAvailable } from "../server/support/brokers.ts";
import type { DeviceTwin } from "../server/support/device-twin.ts";
import { flashHolds } from "../server/support/job-suite.ts";
import { eventually } from "../server/support/wait.ts";
import {
  freshDatabase,
  type PostgresCluster,
  skipWithoutPostgres,
  startPostgresCluster,
} from "../support/postgres.ts";
import {
  addFirmware,
  BridgeClient,
  Instance,
  pushesByInstance,
  RestartableMosquitto,
  startTwins,
  tempDir,
  untilRollout,
  watchEvents,
} from "./support.ts";

const skip = skipWithoutPostgres().skip ?? (mosquittoAvailable ? undefined : "Mosquitto is not installed");
const ENDED = ["completed", "paused", "aborted"] as const;
/** Fast, but with room for a loaded 2-core machine running 100 device twins and 3 servers. */
// An ack timeout: a device message that reached an instance the moment it was killed is lost
// (the broker does not hand it to another member of the group); the command is sent again.
const TIMINGS = {
  firstAnswerMs: 5000,
  repushAnswerMs: 5000,
  verifyTimeoutMs: 5000,
  receiverResetMs: 8000,
  ackTimeoutMs: 10_000,
};

/** Waits for the rollout to end; when it does not complete, says why and where it stood. */
async function finish(bridge: BridgeClient, id: string, timeoutMs: number) {
  try {
    const end = await untilRollout(bridge, id, [...ENDED], timeoutMs);
    if (end.state !== "completed") {
      const failed = [];
      for (const d of end.devices.filter((x) => x.status !== "done")) {
        const job = d.job ? await bridge.request("job", { id: d.job }) : undefined;
        const t0 = job?.steps[0]?.at ?? 0;
        const steps = job?.steps.map((s) => `  +${s.at - t0} ${s.kind}: ${s.message.slice(0, 90)}`) ?? [];
        failed.push(`${d.device}: ${d.reason}\n${steps.join("\n")}`);
      }
      assert.fail(`rollout ${end.state}: ${end.reason}\n${failed.join("\n")}`);
    }
    return end;
  } catch (error) {
    if (error instanceof assert.AssertionError) throw error;
    const r = await bridge.request("rollout/show", { id, events: 20 });
    const status = await bridge.request("status", {});
    const stuck = r.devices.filter((d) => d.status !== "done").slice(0, 5);
    const detail = [];
    for (const d of stuck) {
      if (!d.job) continue;
      const job = await bridge.request("job", { id: d.job });
      detail.push(
        `${d.device} ${job.state}: ${job.steps.map((s) => s.kind).join(", ")} | ${job.error ?? ""}`,
      );
    }
    throw new Error(
      `${(error as Error).message}\n${JSON.stringify(r.counts)} ${r.state} ${r.reason ?? ""}\n${detail.join("\n")}\n${JSON.stringify(status.instances.map((i) => [i.id, i.alive, i.leases]))}`,
    );
  }
}
const ids = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}${i + 1}`);

/** Every device took the new firmware exactly once and holds it in flash. */
function assertUpdatedOnce(twins: Map<string, DeviceTwin>): void {
  for (const [id, twin] of twins) {
    assert.equal(twin.boots.filter((b) => b === ID2).length, 1, `${id} booted the new firmware once`);
    assert.ok(flashHolds(twin, V2), `${id} holds the new image`);
  }
}

// Several `mpota serve` instances on one PostgreSQL database and one Mosquitto broker
// (MQTT 5 shared subscriptions), with device twins (the emulator on real UDP sockets).
describe("several server instances on PostgreSQL and Mosquitto", { skip, timeout: 240_000 }, () => {
  const t = tempDir("mpota-scaling-");
  let broker: RestartableMosquitto;
  let bridge: BridgeClient;
  const instances: Instance[] = [];
  const allTwins: DeviceTwin[] = [];

  const startInstances = async (db: string, n: number, tag: string) => {
    const started = await Promise.all(
      Array.from({ length: n }, (_, i) =>
        Instance.start({
          id: `${tag}-${i + 1}`,
          dataDir: join(t.dir, `${tag}-${i + 1}`),
          db,
          connection: broker.connection,
          maxPushes: 8,
          timings: TIMINGS,
        }),
      ),
    );
    instances.push(...started);
    return started;
  };

  /** Ends a test's instances and devices (the next test starts its own on a fresh database). */
  const stopAll = async () => {
    await Promise.all(instances.splice(0).map((i) => i.kill("SIGTERM")));
    for (const twin of allTwins.splice(0)) await twin.close();
  };

  before(async () => {
    broker = await RestartableMosquitto.start(t.dir);
    bridge = await BridgeClient.connect({ connection: broker.connection, timeoutMs: 10_000 });
  });
  // A test that failed half-way must not leave instances answering for the next one.
  beforeEach(stopAll);
  after(async () => {
    await stopAll();
    await bridge?.close();
    await broker?.stop();
    t.remove();
  });

  // A device that finished its push just as its instance was killed reported its new firmware to
  // that instance only (a shared subscription gives each message to one member); the instance that
  // takes the job over reads the device's retained state before pushing again.
  it("three instances share a 100-device rollout; one killed with SIGKILL, its jobs are taken over", async () => {
    const db = await freshDatabase("scale");
    const [a, b, c] = (await startInstances(db, 3, "i")) as [Instance, Instance, Instance];
    await addFirmware(bridge);
    const twins = await startTwins(broker.connection, ids("s", 100), bridge);
    allTwins.push(...twins.values());

    const status = await bridge.request("status", {});
    assert.deepEqual(
      status.instances
        .filter((i) => i.alive)
        .map((i) => i.id)
        .sort(),
      ["i-1", "i-2", "i-3"],
      "every instance is alive in `mpota status`",
    );

    const created = await bridge.request("rollout/create", {
      firmware: "sensor@2.0",
      devices: [...twins.keys()],
      groups: "5,rest",
      concurrency: 12,
      errorThreshold: 50,
    });
    // Kill the instance that holds the most leases once the second group is under way.
    await eventually(
      async () => {
        const r = await bridge.request("rollout/show", { id: created.id });
        return r.counts.done >= 20;
      },
      "20 devices done",
      60_000,
    );
    const during = await bridge.request("status", {});
    const busiest = [...during.instances].sort(
      (x, y) => y.leases.jobs.length - x.leases.jobs.length || y.load.pushes - x.load.pushes,
    )[0];
    const victim = [a, b, c].find((i) => i.id === busiest?.id) ?? a;
    const held = busiest?.leases.jobs ?? [];
    const killedAt = Date.now();
    await victim.kill("SIGKILL");

    // Its leases run out (1 s in these tests) and another instance carries on.
    const after = await eventually(
      async () => {
        const s = await bridge.request("status", {});
        const gone = s.instances.find((i) => i.id === victim.id);
        return gone && !gone.alive && gone.leases.jobs.length === 0 ? s : undefined;
      },
      "the killed instance's leases taken over",
      15_000,
    );
    const takeoverSeconds = (Date.now() - killedAt) / 1000;
    assert.equal(after.instances.filter((i) => i.alive).length, 2);
    // The killed instance's last will said "offline"; the others say "online" again.
    const watcher = await connectAsync(broker.connection.url, { reconnectPeriod: 0 });
    const states: string[] = [];
    watcher.on("message", (_topic, payload) => states.push(JSON.parse(payload.toString()).state));
    await watcher.subscribeAsync("mpota/bridge/state", { qos: 1 });
    await eventually(() => states.at(-1) === "online", "the bridge state is online again", 5000);
    await watcher.endAsync();

    const end = await finish(bridge, created.id, 180_000).catch((error: Error) => {
      const stuck = [...twins].filter(([, tw]) => tw.boots.at(-1) !== ID2);
      throw new Error(
        `${error.message}\n${stuck.map(([id, tw]) => `${id}: emulator ${tw.emulator.state}, boots ${tw.boots.length}, mqtt ${tw.mqtt ? (tw.mqtt.client.connected ? "connected" : "down") : "none"}`).join("\n")}`,
      );
    });
    assert.equal(end.state, "completed", end.reason ?? "");
    assert.equal(end.counts.done, 100);
    assertUpdatedOnce(twins);

    const jobs = await bridge.request("jobs", { limit: 1000 });
    for (const id of twins.keys()) {
      assert.deepEqual(
        jobs.filter((j) => j.device === id).map((j) => j.state),
        ["succeeded"],
        `one job for ${id}`,
      );
    }
    const pushes = await pushesByInstance(bridge);
    assert.deepEqual(pushes.overlaps, [], "no device pushed by two instances at the same time");
    assert.ok(
      pushes.mostAtOnce <= 12,
      `the rollout's limit of 12 held across instances (at most ${pushes.mostAtOnce} at once)`,
    );
    const pushers = new Set([...pushes.byDevice.values()].flat());
    assert.ok(pushers.size >= 2, `pushes were spread over instances: ${[...pushers].join(", ")}`);
    for (const job of held) {
      const detail = await bridge.request("job", { id: job });
      assert.equal(detail.state, "succeeded", `job ${job} of the killed instance finished`);
    }
    await stopAll();
    console.log(
      `# 100 devices, 3 instances, one SIGKILLed holding ${held.length} job leases; leases free again after ${takeoverSeconds.toFixed(1)} s; pushes by ${[...pushers].join(", ")}`,
    );
  });

  it("the dashboard of one instance shows live progress of pushes another instance sends", async () => {
    const db = await freshDatabase("scale");
    const watched = await Instance.start({
      id: "w-1",
      dataDir: join(t.dir, "w-1"),
      db,
      connection: broker.connection,
      timings: TIMINGS,
      http: true,
    });
    instances.push(watched);
    await startInstances(db, 1, "w-other");
    const stream = await watchEvents(watched.http);
    await addFirmware(bridge);
    const twins = await startTwins(broker.connection, ids("w", 10), bridge);
    allTwins.push(...twins.values());
    const created = await bridge.request("rollout/create", {
      firmware: "sensor@2.0",
      devices: [...twins.keys()],
      groups: "rest",
      concurrency: 4,
    });
    await finish(bridge, created.id, 60_000);
    stream.close();
    const { byDevice } = await pushesByInstance(bridge);
    const elsewhere = [...byDevice].filter(([, by]) => by.every((i) => i === "w-other-1")).map(([d]) => d);
    assert.ok(elsewhere.length > 0, "the other instance pushed some devices");
    for (const device of elsewhere) {
      const seen = stream.events
        .filter((e) => e.name === "job" && e.data.device === device)
        .map((e) => e.data);
      assert.ok(
        seen.some((m) => m.state === "pushing" && Number(m.percent) > 0 && Number(m.percent) < 100),
        `${device}: progress of the other instance's push on w-1's stream`,
      );
      assert.equal(seen.at(-1)?.state, "succeeded", `${device}: the end on w-1's stream`);
    }
    await stopAll();
  });

  it("the broker restarted in the middle: instances and devices reconnect and the rollout finishes", async () => {
    const db = await freshDatabase("scale");
    await startInstances(db, 2, "b");
    await addFirmware(bridge);
    const twins = await startTwins(broker.connection, ids("b", 20), bridge);
    allTwins.push(...twins.values());
    const created = await bridge.request("rollout/create", {
      firmware: "sensor@2.0",
      devices: [...twins.keys()],
      groups: "rest",
      concurrency: 4,
      errorThreshold: 100,
    });
    await eventually(
      async () => {
        const r = await bridge.request("rollout/show", { id: created.id });
        return r.counts.done >= 4;
      },
      "4 devices done",
      60_000,
    );
    await broker.restart(500);
    // The test's own client is a CLI-style one that does not reconnect: connect it again.
    await bridge.close();
    bridge = await BridgeClient.connect({ connection: broker.connection, timeoutMs: 10_000 });
    const end = await finish(bridge, created.id, 120_000);
    assert.equal(end.state, "completed", end.reason ?? "");
    assert.equal(end.counts.done, 20);
    assertUpdatedOnce(twins);
    assert.deepEqual((await pushesByInstance(bridge)).overlaps, []);
    await stopAll();
  });
});

describe("several server instances while the database restarts", { skip, timeout: 180_000 }, () => {
  const t = tempDir("mpota-scaling-db-");
  let cluster: PostgresCluster;
  let broker: RestartableMosquitto;
  let bridge: BridgeClient;
  const instances: Instance[] = [];
  let twins: Map<string, DeviceTwin> = new Map();

  before(async () => {
    cluster = await startPostgresCluster();
    broker = await RestartableMosquitto.start(t.dir);
    bridge = await BridgeClient.connect({ connection: broker.connection, timeoutMs: 10_000 });
  });
  after(async () => {
    await Promise.all(instances.map((i) => i.kill("SIGTERM")));
    for (const twin of twins.values()) await twin.close();
    await bridge?.close();
    await broker?.stop();
    cluster?.stop();
    t.remove();
  });

  // A device state that arrives during the outage is kept and tried again (test/scaling/lost-state).
  it("instances reconnect after the database restarts; nothing is lost or done twice", async () => {
    const db = await freshDatabase("restart_test", cluster.adminUrl);
    for (const n of [1, 2]) {
      instances.push(
        await Instance.start({
          id: `d-${n}`,
          dataDir: join(t.dir, `d-${n}`),
          db,
          connection: broker.connection,
          timings: TIMINGS,
        }),
      );
    }
    await addFirmware(bridge);
    twins = await startTwins(broker.connection, ids("d", 20), bridge);
    const created = await bridge.request("rollout/create", {
      firmware: "sensor@2.0",
      devices: [...twins.keys()],
      groups: "rest",
      concurrency: 4,
      errorThreshold: 100,
    });
    await eventually(
      async () => {
        const r = await bridge.request("rollout/show", { id: created.id });
        return r.counts.done >= 4;
      },
      "4 devices done",
      60_000,
    );
    cluster.pause();
    await new Promise((resolve) => setTimeout(resolve, 2000));
    cluster.resume();
    const end = await finish(bridge, created.id, 120_000);
    assert.equal(end.state, "completed", end.reason ?? "");
    assert.equal(end.counts.done, 20);
    assertUpdatedOnce(twins);
    const jobs = await bridge.request("jobs", { limit: 1000 });
    assert.equal(jobs.length, 20, "one job per device");
    assert.ok(jobs.every((j) => j.state === "succeeded"));
    for (const instance of instances)
      assert.equal(instance.child.exitCode, null, `${instance.id} still runs`);
  });
});

describe("instances that keep firmware images in different places", { skip, timeout: 60_000 }, () => {
  const t = tempDir("mpota-scaling-fw-");
  let broker: RestartableMosquitto;
  const instances: Instance[] = [];
  before(async () => {
    broker = await RestartableMosquitto.start(t.dir);
  });
  after(async () => {
    await Promise.all(instances.map((i) => i.kill("SIGTERM")));
    await broker?.stop();
    t.remove();
  });

  it("a second instance with another --firmware-dir, or none, is refused with the reason", async () => {
    const db = await freshDatabase("fwdir");
    const start = (id: string, firmwareDir?: string) =>
      Instance.start({
        id,
        dataDir: join(t.dir, id),
        db,
        connection: broker.connection,
        ...(firmwareDir !== undefined ? { firmwareDir } : {}),
      });
    instances.push(await start("f-1", join(t.dir, "shared-firmware")));
    // The same shared directory: accepted.
    instances.push(await start("f-2", join(t.dir, "shared-firmware")));
    await assert.rejects(start("f-3", join(t.dir, "other-firmware")), (error: Error) => {
      assert.match(error.message, /exited \(24\)/);
      assert.match(
        error.message,
        /The servers on this database keep firmware images in a directory with another id, but this one was started to keep them in .*other-firmware \(id [0-9a-f]{16}\)\. Give every server the same --firmware-dir/,
      );
      return true;
    });
    await assert.rejects(
      start("f-4"),
      /keep firmware images in a directory with another id, but this one was started to keep them in the database/,
    );
  });
});
