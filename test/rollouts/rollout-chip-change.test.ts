import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { flashHolds } from "../server/support/job-suite.ts";
import { eventually } from "../server/support/wait.ts";
import { ID1, ID2, Rig, V2 } from "./support.ts";

// A rollout checks the devices' chips when it is made; a device can report another chip before its
// turn (its board swapped, or reflashed by USB under the same id). The job request refuses it then,
// on the chip the device reports against the release kind's `chips` (src/server/releases/chip-refusal.ts):
// the rollout shows that device failed with the reason in words, and gives the others their turn.
// Real server, embedded Aedes broker, SQLite or PostgreSQL; emulated ESP8266s (device twins).

describe("a device that reports another chip before its turn in a rollout", () => {
  let rig: Rig | undefined;
  afterEach(async () => {
    await rig?.close();
    rig = undefined;
  });

  it("fails that device with the chip reason; the other devices are updated", async () => {
    rig = await Rig.start();
    const ids = ["c1", "c2", "c3", "c4"];
    const twins = await rig.devices(ids);
    const created = await rig.bridge.request("rollout/create", {
      firmware: "sensor@2.0",
      devices: ids,
      groups: "rest",
      successThreshold: 50,
      errorThreshold: 100,
      timeout: 20,
      startAt: new Date(Date.now() + 4000).toISOString(),
    });
    assert.equal(created.state, "scheduled");
    // Held while the devices report their new chips, so the turns come after, whatever the machine's speed.
    assert.equal((await rig.bridge.request("rollout/pause", { id: created.id })).state, "paused");
    const reports = { c2: "esp32", c3: "rp2" };
    for (const [id, chip] of Object.entries(reports)) {
      const twin = rig.twins.get(id);
      await twin?.mqtt?.state({ v: 3, fw: ID1, ip: twin.endpoint.address, flash: 1048576, chip });
    }
    await eventually(async () => {
      const known = await rig?.bridge.request("devices", {});
      return Object.entries(reports).every(([id, chip]) =>
        known?.some((d) => d.id === id && d.chip === chip),
      );
    }, "the new chips stored");
    assert.deepEqual(await rig.bridge.request("jobs", {}), [], "no job before the turns");
    // Resumed, it starts at its start time (at once if that has passed).
    await rig.bridge.request("rollout/resume", { id: created.id });
    const end = await rig.until(created.id, ["completed", "paused", "aborted"]);
    assert.equal(end.state, "completed", end.reason ?? "");
    assert.deepEqual([end.counts.done, end.counts.failed, end.counts.total], [2, 2, 4]);
    assert.equal(end.reason, "2 of 4 devices verified on sensor 2.0; 2 failed.");
    assert.deepEqual(
      end.devices.map((d) => [d.device, d.status, d.reason]),
      [
        ["c1", "done", null],
        [
          "c2",
          "failed",
          "sensor 2.0 for c2: the release is built for esp8266, the device reports esp32. Pick a release built for esp32.",
        ],
        [
          "c3",
          "failed",
          "sensor 2.0 for c3: the device is a Raspberry Pi Pico W (rp2), which takes app updates only: mpota does not update its firmware. Update its app with an app release (mpota update <device> <app>@<version>); flash its MicroPython by USB.",
        ],
        ["c4", "done", null],
      ],
    );
    assert.deepEqual(
      end.events
        .filter((e) => e.kind === "device-failed")
        .map((e) => e.message)
        .sort(),
      [
        "c2 failed: sensor 2.0 for c2: the release is built for esp8266, the device reports esp32. Pick a release built for esp32.",
        "c3 failed: sensor 2.0 for c3: the device is a Raspberry Pi Pico W (rp2), which takes app updates only: mpota does not update its firmware. Update its app with an app release (mpota update <device> <app>@<version>); flash its MicroPython by USB.",
      ],
    );
    // The refused devices got no job and kept their firmware; the others were updated.
    const jobs = await rig.bridge.request("jobs", {});
    assert.deepEqual(jobs.map((j) => [j.device, j.state]).sort(), [
      ["c1", "succeeded"],
      ["c4", "succeeded"],
    ]);
    for (const [i, twin] of twins.entries()) {
      const refused = i === 1 || i === 2;
      assert.deepEqual(twin.boots, refused ? [ID1] : [ID1, ID2], ids[i]);
      assert.equal(flashHolds(twin, V2), !refused, ids[i]);
    }
  });
});
