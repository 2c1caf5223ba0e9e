import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { StorageUnavailableError } from "../../src/server/storage/storage.ts";
import { MqttDevice } from "./support/mqtt-device.ts";
import { startTestServer, type TestServer, tempDir } from "./support/test-server.ts";
import { eventually } from "./support/wait.ts";

/**
 * While the database cannot be reached, every device message is kept and
 * tried again, then dropped: the log has one line for each, per outage, and
 * one when the database answers again, not a line per message (issue 16).
 * The database's answer is injected as mpota's PostgreSQL store gives it (a
 * StorageUnavailableError); a real outage is in test/scaling/lost-state.test.ts.
 * The job runner and the rollout engine log the same words when their due
 * work waits: the line's `feature` field tells which.
 */
describe("an unreachable database in the log", { timeout: 60_000 }, () => {
  const t = tempDir();
  let s: TestServer;

  before(async () => {
    s = await startTestServer(t.dir, { unavailableRetryMs: 300 });
  });
  after(async () => {
    await s?.stop();
    t.remove();
  });

  it("is one line when messages are kept, one when they are dropped, and one when it is back", async () => {
    const devices = await Promise.all(["out-a", "out-b", "out-c"].map((id) => MqttDevice.connect(s.url, id)));
    const store = s.server.storage.devices;
    const get = store.get.bind(store);
    const down = async (): Promise<never> => {
      throw new StorageUnavailableError(
        "Lost the connection to PostgreSQL mpota@db:5432/mpota while reading a device (connect ECONNREFUSED)",
      );
    };
    const before = s.logs.lines.length;
    store.get = down;
    const fw = (n: number) => n.toString(16).padStart(32, "0");
    try {
      for (let n = 0; n < 15; n++) await (devices[n % 3] as MqttDevice).state({ fw: fw(n), ip: "10.0.0.7" });
      const dropped = "database still unreachable; message dropped";
      await eventually(() => s.logs.find(dropped).length > 0, "a message dropped");
      await s.server.inbox.idle();
      const during = s.logs.lines.slice(before).filter((l) => l.level >= 40);
      assert.deepEqual(
        during.map((l) => l.msg),
        ["database unreachable; keeping the message and trying again", dropped],
      );
    } finally {
      store.get = get;
    }
    await (devices[0] as MqttDevice).state({ fw: "ab".repeat(16), ip: "10.0.0.7" });
    await eventually(
      async () => (await s.server.storage.devices.get("out-a"))?.state?.fw === "ab".repeat(16),
      "the state sent after the outage stored",
    );
    // The state is stored before the job listener runs, and the line comes after both: wait for it.
    const backLine = "database reachable again: device messages are stored again";
    await eventually(() => s.logs.find(backLine).length > 0, "the line saying the database is back");
    await s.server.inbox.idle();
    const back = s.logs.find(backLine);
    assert.equal(back.length, 1);
    assert.equal(back[0]?.kept, 15);
    assert.equal(back[0]?.dropped, 15);
    for (const device of devices) await device.client.endAsync();
  });

  it("names the feature whose due work waits: the job runner and the rollout engine log the same words", async () => {
    const { jobs, rollouts } = s.server.storage;
    const claimDue = jobs.claimDue.bind(jobs);
    const claimOpen = rollouts.claimOpen.bind(rollouts);
    const down = (what: string) => async (): Promise<never> => {
      throw new StorageUnavailableError(
        `Lost the connection to PostgreSQL mpota@db:5432/mpota while ${what} (connect ECONNREFUSED)`,
      );
    };
    const waits = "database unreachable; due work waits until it is back";
    const before = s.logs.lines.length;
    jobs.claimDue = down("claiming due jobs");
    rollouts.claimOpen = down("claiming open rollouts");
    try {
      // Both loops look every pollMs (50 ms here): each meets the outage on its own.
      await eventually(
        () =>
          s.logs.find(waits, { feature: "jobs" }).length > 0 &&
          s.logs.find(waits, { feature: "rollouts" }).length > 0,
        "both features' outage lines",
      );
    } finally {
      jobs.claimDue = claimDue;
      rollouts.claimOpen = claimOpen;
    }
    const back = "database reachable again";
    await eventually(
      () =>
        s.logs.find(back, { feature: "jobs" }).length > 0 &&
        s.logs.find(back, { feature: "rollouts" }).length > 0,
      "both features' lines saying the database is back",
    );
    const lines = s.logs.lines
      .slice(before)
      .filter((l) => l.msg === waits || l.msg === back)
      .map((l) => `${String(l.feature)}: ${l.msg}${l.err ? ` (${String(l.err)})` : ""}`)
      .sort();
    assert.deepEqual(lines, [
      "jobs: database reachable again",
      "jobs: database unreachable; due work waits until it is back (Lost the connection to PostgreSQL mpota@db:5432/mpota while claiming due jobs (connect ECONNREFUSED))",
      "rollouts: database reachable again",
      "rollouts: database unreachable; due work waits until it is back (Lost the connection to PostgreSQL mpota@db:5432/mpota while claiming open rollouts (connect ECONNREFUSED))",
    ]);
  });
});
