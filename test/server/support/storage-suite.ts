import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { DeviceState } from "../../../src/protocol/mqtt-contract.ts";
import { hashSecret, newSecret, verifySecret } from "../../../src/server/mqtt/credentials.ts";
import {
  type AuditEntry,
  CredentialExistsError,
  LeaseLostError,
  type NewJob,
  STALE_STATE_WINDOW_MS,
  type Storage,
  StorageError,
} from "../../../src/server/storage/storage.ts";

const FW_A = "a".repeat(32);
const FW_B = "b".repeat(32);

export const state = (fw: string, ip = "192.168.1.20", extra: Partial<DeviceState> = {}): DeviceState => ({
  v: 1,
  fw,
  ip,
  ...extra,
});

const newJob = (id: string, deviceId: string, createdAt = 1000): NewJob => ({
  id,
  deviceId,
  firmwareId: FW_B,
  firmwareName: "sensor",
  firmwareVersion: "2.0",
  firmwareSize: 70000,
  maxAttempts: 3,
  createdAt,
});

const step = (kind: string, at = 1000) => ({ at, kind, message: `${kind} happened`, data: null });

/**
 * The storage contract, run against any backend: `open` gives a fresh,
 * empty store for each test group. SQLite and PostgreSQL both pass it;
 * `imagesInDatabase` says whether the backend keeps image bytes (PostgreSQL)
 * or leaves them to the data directory (SQLite: `images` is null).
 */
export function defineStorageSuite(
  backend: string,
  open: () => Promise<{ storage: Storage; dispose: () => Promise<void> }>,
  features: { imagesInDatabase: boolean; skip?: string } = { imagesInDatabase: false },
) {
  describe(`storage contract: ${backend}`, features.skip ? { skip: features.skip } : {}, () => {
    let storage: Storage;
    let dispose: () => Promise<void>;
    before(async () => {
      ({ storage, dispose } = await open());
    });
    after(async () => dispose());

    it("records states with history, newest first, trimmed to the limit", async () => {
      for (let i = 0; i < 5; i++) {
        await storage.devices.recordState({
          id: "dev1",
          state: state(i < 4 ? FW_A : FW_B, "192.168.1.20", { rssi: -60 - i }),
          at: 1000 + i,
          digest: `d${i}`,
          nextWakeAt: null,
          historyLimit: 3,
        });
      }
      const device = await storage.devices.get("dev1");
      assert.equal(device?.state?.fw, FW_B);
      assert.equal(device?.firstSeen, 1000);
      assert.equal(device?.lastSeen, 1004);
      assert.equal(device?.lastStateAt, 1004);
      assert.equal(device?.stateDigest, "d4");
      const history = await storage.devices.history("dev1", 10);
      assert.deepEqual(
        history.map((h) => [h.at, h.state.rssi]),
        [
          [1004, -64],
          [1003, -63],
          [1002, -62],
        ],
      );
    });

    it("records a status for a device that never sent a state", async () => {
      const d = await storage.devices.recordStatus({
        id: "dev2",
        status: "sleeping",
        at: 2000,
        nextWakeAt: 5000,
      });
      assert.equal(d.state, null);
      assert.equal(d.status, "sleeping");
      assert.equal(d.nextWakeAt, 5000);
      assert.deepEqual(
        (await storage.devices.list()).map((x) => x.id),
        ["dev1", "dev2"],
      );
      assert.equal(await storage.devices.get("nope"), undefined);
    });

    it("keeps firmware identities and name+version unique", async () => {
      const record = {
        id: FW_B,
        name: "sensor",
        version: "2.0",
        size: 70000,
        notes: "faster wake",
        addedAt: 3000,
        micropython: "1.19.1",
        build: "ota",
        checks: [{ check: "md5-trailer", level: "ok" as const, forced: false, message: "fine" }],
      };
      assert.deepEqual(await storage.firmware.add(record), { ok: true, record });
      const again = await storage.firmware.add({ ...record, version: "2.1" });
      assert.equal(again.ok, false);
      if (!again.ok) assert.equal(again.conflict, "identity");
      const sameName = await storage.firmware.add({ ...record, id: FW_A });
      assert.equal(sameName.ok, false);
      if (!sameName.ok) assert.equal(sameName.conflict, "name-version");
      assert.deepEqual(await storage.firmware.get(FW_B), record);
      assert.deepEqual(
        (await storage.firmware.findByName("sensor")).map((f) => f.version),
        ["2.0"],
      );
      assert.deepEqual(await storage.firmware.findByName("sensor", "9"), []);
    });

    it("allows one active job per device", async () => {
      const first = await storage.jobs.create(newJob("j-1", "dev1"), step("created"));
      assert.equal(first.ok, true);
      if (first.ok) {
        assert.equal(first.job.phase, "queued");
        assert.equal(first.job.dueAt, 1000);
        assert.equal(first.job.attempt, 0);
      }
      const second = await storage.jobs.create(newJob("j-2", "dev1"), step("created"));
      assert.equal(second.ok, false);
      if (!second.ok) assert.equal(second.active.id, "j-1");
      assert.deepEqual(
        (await storage.jobs.steps("j-2")).map((s) => s.kind),
        [],
      );
      assert.equal((await storage.jobs.activeForDevice("dev1"))?.id, "j-1");
    });

    it("leases due jobs to one owner at a time", async () => {
      const a = await storage.jobs.claimDue({ owner: "A", now: 1500, leaseMs: 1000, limit: 10 });
      assert.deepEqual(
        a.map((j) => [j.id, j.leaseOwner, j.leaseExpiresAt]),
        [["j-1", "A", 2500]],
      );
      assert.deepEqual(await storage.jobs.claimDue({ owner: "B", now: 1600, leaseMs: 1000, limit: 10 }), []);
      assert.equal(await storage.jobs.claim({ id: "j-1", owner: "B", now: 1600, leaseMs: 1000 }), undefined);
      assert.equal(
        (await storage.jobs.claim({ id: "j-1", owner: "A", now: 1600, leaseMs: 1000 }))?.leaseExpiresAt,
        2600,
      );
      assert.equal(await storage.jobs.renew({ id: "j-1", owner: "B", now: 1700, leaseMs: 1000 }), false);
      assert.equal(await storage.jobs.renew({ id: "j-1", owner: "A", now: 1700, leaseMs: 1000 }), true);
      // B may not change it...
      await assert.rejects(
        storage.jobs.update({ id: "j-1", owner: "B", now: 1800, patch: { phase: "failed" } }),
        LeaseLostError,
      );
      assert.equal((await storage.jobs.get("j-1"))?.phase, "queued");
      // ...until A's lease has run out.
      const taken = await storage.jobs.claimDue({ owner: "B", now: 2800, leaseMs: 1000, limit: 10 });
      assert.deepEqual(
        taken.map((j) => j.leaseOwner),
        ["B"],
      );
      await assert.rejects(
        storage.jobs.update({ id: "j-1", owner: "A", now: 2900, patch: { phase: "failed" } }),
        LeaseLostError,
      );
    });

    it("updates a job and appends its steps in one change, and releases it", async () => {
      const updated = await storage.jobs.update({
        id: "j-1",
        owner: "B",
        now: 3000,
        patch: {
          phase: "verifying",
          attempt: 1,
          retryMode: "push",
          targetIp: "192.168.1.20",
          targetPort: 8266,
          dueAt: 9000,
          pushedAt: 3000,
          ackedAt: 2950,
          error: null,
          progress: { bytes: 70000, total: 70000, rate: 20000.5, retransmits: 4 },
        },
        steps: [step("push-started", 2960), step("push-done", 3000)],
        release: true,
      });
      assert.equal(updated.phase, "verifying");
      assert.equal(updated.updatedAt, 3000);
      assert.equal(updated.leaseOwner, null);
      assert.deepEqual(updated.progress, { bytes: 70000, total: 70000, rate: 20000.5, retransmits: 4 });
      assert.equal(updated.targetIp, "192.168.1.20");
      await storage.jobs.addStep("j-1", step("device-state", 3100));
      assert.deepEqual(
        (await storage.jobs.steps("j-1")).map((s) => [s.kind, s.at]),
        [
          ["created", 1000],
          ["push-started", 2960],
          ["push-done", 3000],
          ["device-state", 3100],
        ],
      );
      assert.equal(await storage.jobs.nextDueAt(), 9000);
      assert.deepEqual(await storage.jobs.claimDue({ owner: "A", now: 8999, leaseMs: 1000, limit: 10 }), []);
    });

    it("frees the device for a new job once the job ends", async () => {
      const claimed = await storage.jobs.claim({ id: "j-1", owner: "A", now: 9000, leaseMs: 1000 });
      assert.ok(claimed);
      await storage.jobs.update({
        id: "j-1",
        owner: "A",
        now: 9100,
        patch: { phase: "succeeded", finishedAt: 9100, dueAt: null },
        release: true,
      });
      assert.equal(await storage.jobs.activeForDevice("dev1"), undefined);
      assert.equal(await storage.jobs.claim({ id: "j-1", owner: "A", now: 9200, leaseMs: 1000 }), undefined);
      const next = await storage.jobs.create(newJob("j-3", "dev1", 9300), step("created", 9300));
      assert.equal(next.ok, true);
      assert.deepEqual(
        (await storage.jobs.list()).map((j) => j.id),
        ["j-3", "j-1"],
      );
      assert.deepEqual(
        (await storage.jobs.list({ active: false })).map((j) => j.id),
        ["j-1"],
      );
      assert.deepEqual(
        (await storage.jobs.list({ deviceId: "dev2" })).map((j) => j.id),
        [],
      );
    });

    it("lists the jobs that ended in a time range, in the order they ended", async () => {
      // j-1 ended at 9100; j-3 is active (no end time).
      assert.deepEqual(await storage.jobs.endedBetween({ from: 0, to: 9100, limit: 10 }), []);
      assert.deepEqual(await storage.jobs.endedBetween({ from: 9100, to: 9101, limit: 10 }), [
        { id: "j-1", finishedAt: 9100 },
      ]);
      assert.deepEqual(await storage.jobs.endedBetween({ from: 0, to: 1e15, limit: 0 }), []);
      assert.deepEqual(await storage.jobs.endedBetween({ from: 9101, to: 1e15, limit: 10 }), []);
    });

    it("gives up every lease of an owner at once", async () => {
      await storage.jobs.claimDue({ owner: "C", now: 9400, leaseMs: 60_000, limit: 10 });
      assert.equal((await storage.jobs.get("j-3"))?.leaseOwner, "C");
      assert.equal(await storage.jobs.releaseAll("C"), 1);
      assert.equal((await storage.jobs.get("j-3"))?.leaseOwner, null);
    });

    it("claims due jobs oldest due first, up to the limit, only in the phases asked for", async () => {
      for (const [id, device, due] of [
        ["j-10", "dev10", 20_300],
        ["j-11", "dev11", 20_100],
        ["j-12", "dev12", 20_200],
      ] as const) {
        await storage.jobs.create(newJob(id, device, due), step("created", due));
      }
      // j-3 (due 9300) is the oldest; move it out of "queued" for the phase filter.
      await storage.jobs.claim({ id: "j-3", owner: "D", now: 20_000, leaseMs: 10 });
      await storage.jobs.update({
        id: "j-3",
        owner: "D",
        now: 20_000,
        patch: { phase: "waiting" },
        release: true,
      });
      const two = await storage.jobs.claimDue({ owner: "D", now: 30_000, leaseMs: 1000, limit: 2 });
      assert.deepEqual(
        two.map((j) => j.id),
        ["j-3", "j-11"],
      );
      const queued = await storage.jobs.claimDue({
        owner: "E",
        now: 30_000,
        leaseMs: 1000,
        limit: 10,
        phases: ["queued"],
      });
      assert.deepEqual(
        queued.map((j) => j.id),
        ["j-12", "j-10"],
      );
      assert.deepEqual(
        (await storage.jobs.list({ active: true, limit: 2 })).map((j) => j.id),
        ["j-10", "j-12"],
      );
      // Leases held: D's expire at 31_000, E's too; nothing else is leased.
      assert.deepEqual((await storage.jobs.leases(30_500)).map((l) => `${l.id}:${l.owner}`).sort(), [
        "j-10:E",
        "j-11:D",
        "j-12:E",
        "j-3:D",
      ]);
      assert.deepEqual(await storage.jobs.leases(31_000), [], "expired leases are not held");
      assert.equal(await storage.jobs.releaseAll("D"), 2);
      assert.equal(await storage.jobs.releaseAll("E"), 2);
      assert.deepEqual(await storage.jobs.leases(30_500), []);
    });

    it("keeps an app job's files staged with its bytes, and stores nonsense counts as none", async () => {
      await storage.jobs.create(newJob("j-20", "dev20", 40_000), step("created", 40_000));
      await storage.jobs.claim({ id: "j-20", owner: "F", now: 40_000, leaseMs: 10_000 });
      const progress = (extra: object) => ({
        bytes: 2048,
        total: 61_440,
        rate: 900,
        retransmits: 0,
        ...extra,
      });
      const stored = async (extra: object) => {
        await storage.jobs.update({
          id: "j-20",
          owner: "F",
          now: 40_100,
          patch: { progress: progress(extra) },
        });
        return (await storage.jobs.get("j-20"))?.progress;
      };
      assert.deepEqual(await stored({ files: 3, of: 20 }), progress({ files: 3, of: 20 }));
      assert.deepEqual(
        (await storage.jobs.list({ deviceId: "dev20" })).map((j) => j.progress),
        [progress({ files: 3, of: 20 })],
      );
      assert.deepEqual(
        (await storage.jobs.activeForDevice("dev20"))?.progress,
        progress({ files: 3, of: 20 }),
      );
      assert.deepEqual(await stored({ files: 0, of: 0 }), progress({ files: 0, of: 0 }));
      assert.deepEqual(await stored({ files: 256, of: 256 }), progress({ files: 256, of: 256 }));
      // Counts no device report can carry (protocol/mqtt-contract.ts) are stored as none, bytes kept.
      for (const nonsense of [
        { files: -1, of: 20 },
        { files: 1.5, of: 20 },
        { files: 21, of: 20 },
        { files: 3, of: 257 },
        { files: 3, of: 2 ** 53 },
        { files: 3 },
        { of: 20 },
        { files: "3", of: "20" },
        { files: Number.NaN, of: 20 },
      ]) {
        await stored({ files: 3, of: 20 });
        assert.deepEqual(await stored(nonsense), progress({}), JSON.stringify(nonsense));
      }
      // A progress without files (a new try's start) leaves none of the last try's behind.
      await stored({ files: 3, of: 20 });
      assert.deepEqual(await stored({}), progress({}));
      await storage.jobs.update({
        id: "j-20",
        owner: "F",
        now: 40_200,
        patch: {
          phase: "succeeded",
          finishedAt: 40_200,
          dueAt: null,
          progress: progress({ files: 20, of: 20 }),
        },
        release: true,
      });
      assert.deepEqual((await storage.jobs.get("j-20"))?.progress, progress({ files: 20, of: 20 }));
    });

    it("lists firmware newest first, in insertion order within one millisecond", async () => {
      const base = {
        name: "lamp",
        size: 1000,
        notes: null,
        addedAt: 50_000,
        micropython: null,
        build: null,
        checks: [],
      };
      for (const [id, version] of [
        ["c".repeat(32), "1"],
        ["d".repeat(32), "2"],
        ["e".repeat(32), "3"],
      ] as const) {
        assert.equal((await storage.firmware.add({ ...base, id, version })).ok, true);
      }
      assert.deepEqual(
        (await storage.firmware.findByName("lamp")).map((f) => f.version),
        ["3", "2", "1"],
      );
      assert.deepEqual(
        (await storage.firmware.list()).map((f) => f.name),
        ["lamp", "lamp", "lamp", "sensor"],
      );
      assert.equal(await storage.firmware.remove("d".repeat(32)), true);
      assert.equal(await storage.firmware.remove("d".repeat(32)), false);
      assert.deepEqual(
        (await storage.firmware.findByName("lamp")).map((f) => f.version),
        ["3", "1"],
      );
    });

    it("sorts device ids bytewise, upper case first", async () => {
      for (const id of ["b-2", "B-1", "a-3"]) {
        await storage.devices.recordStatus({ id, status: "online", at: 60_000, nextWakeAt: null });
      }
      assert.deepEqual(
        (await storage.devices.list()).map((d) => d.id),
        ["B-1", "a-3", "b-2", "dev1", "dev2"],
      );
    });

    it("keeps a state received later over one handled after it (two instances, one waiting for the database)", async () => {
      const record = (fw: string, at: number, receivedAt: number | undefined, digest: string) =>
        storage.devices.recordState({
          id: "order1",
          state: state(fw),
          at,
          receivedAt,
          digest,
          nextWakeAt: null,
          historyLimit: 5,
        });
      // The newer state (received at 5000) is handled first; the older one (received at 4000) after it.
      assert.equal((await record(FW_B, 5100, 5000, "new"))?.state?.fw, FW_B);
      assert.equal(await record(FW_A, 5200, 4000, "old"), null, "the older state is refused");
      let device = await storage.devices.get("order1");
      assert.equal(device?.state?.fw, FW_B);
      assert.equal(device?.stateDigest, "new");
      assert.equal(device?.lastStateAt, 5100);
      assert.deepEqual(
        (await storage.devices.history("order1", 10)).map((h) => h.state.fw),
        [FW_B],
        "nothing of the older state in the history",
      );
      // A state received at the same time or later is stored.
      assert.equal((await record(FW_A, 5300, 5000, "same"))?.state?.fw, FW_A);
      assert.equal((await record(FW_B, 5400, 6000, "later"))?.state?.fw, FW_B);
      // A wall clock stepped back by more than the window does not hold the device's states back.
      const stepped = 6000 - STALE_STATE_WINDOW_MS - 1;
      assert.equal((await record(FW_A, stepped + 100, stepped, "stepped"))?.stateDigest, "stepped");
      // Without a receive time (as before the column existed) the handling time stands in.
      device = (await record(FW_B, stepped + 200, undefined, "plain")) ?? undefined;
      assert.equal(device?.stateDigest, "plain");
      assert.equal(device?.lastStateAt, stepped + 200);
    });

    it("keeps a heartbeat row per instance, oldest started first, and prunes silent ones", async () => {
      const instance = (id: string, startedAt: number, heartbeatAt: number) => ({
        id,
        host: "host-a",
        pid: 4242,
        version: "0.1.0",
        startedAt,
        heartbeatAt,
        http: null,
        load: { pushes: 0, jobs: 0, rollouts: 0 },
      });
      assert.deepEqual(await storage.instances.list(), []);
      await storage.instances.heartbeat(instance("host-a:2:x", 2000, 2000));
      await storage.instances.heartbeat(instance("host-a:1:y", 1000, 1000));
      const busy = {
        ...instance("host-a:2:x", 2000, 5000),
        http: "http://10.0.0.2:8080",
        load: { pushes: 2, jobs: 3, rollouts: 1 },
      };
      await storage.instances.heartbeat(busy);
      assert.deepEqual(await storage.instances.list(), [instance("host-a:1:y", 1000, 1000), busy]);
      assert.equal(await storage.instances.prune(4000), 1);
      assert.deepEqual(await storage.instances.list(), [busy]);
      await storage.instances.remove("host-a:2:x");
      await storage.instances.remove("nobody");
      assert.deepEqual(await storage.instances.list(), []);
    });

    it("stores a setting once: the first value wins", async () => {
      assert.equal(await storage.settings.get("firmware-dir-id"), undefined);
      assert.equal(await storage.settings.putIfAbsent("firmware-dir-id", "first"), "first");
      assert.equal(await storage.settings.putIfAbsent("firmware-dir-id", "second"), "first");
      assert.equal(await storage.settings.get("firmware-dir-id"), "first");
      assert.equal(await storage.settings.putIfAbsent("other", ""), "");
    });

    describe("device credentials", () => {
      const secret = newSecret();
      const hash = hashSecret(secret);

      it("provisions a device once: a second add is refused and changes nothing", async () => {
        const added = await storage.credentials.add({ deviceId: "sim-1", hash, at: 70_000 });
        const expected = {
          deviceId: "sim-1",
          hash,
          createdAt: 70_000,
          rotatedAt: null,
          commandSeq: 0,
          allowUnsigned: false,
        };
        assert.deepEqual(added, expected);
        assert.deepEqual(await storage.credentials.get("sim-1"), expected);
        assert.equal(verifySecret(secret, (await storage.credentials.get("sim-1"))?.hash ?? ""), true);

        await assert.rejects(
          storage.credentials.add({ deviceId: "sim-1", hash: hashSecret(newSecret()), at: 71_000 }),
          (error: unknown) => {
            assert.ok(error instanceof CredentialExistsError);
            assert.equal(error.exitCode, 44);
            assert.equal(
              error.message,
              "Device sim-1 already has a credential: nothing was changed. To give it a new secret, rotate its credential; to provision it from scratch, remove it first.",
            );
            return true;
          },
        );
        assert.deepEqual(
          await storage.credentials.get("sim-1"),
          expected,
          "the first credential is kept whole",
        );
        assert.equal(await storage.credentials.get("sim-9"), undefined);
      });

      it("lists credentials by device id, bytewise", async () => {
        for (const id of ["b-2", "B-1", "a-3"]) {
          await storage.credentials.add({ deviceId: id, hash: hashSecret(newSecret()), at: 72_000 });
        }
        assert.deepEqual(
          (await storage.credentials.list()).map((c) => c.deviceId),
          ["B-1", "a-3", "b-2", "sim-1"],
        );
      });

      it("issues command counters that only grow, from max(stored, atLeast) + 1", async () => {
        assert.equal(await storage.credentials.nextCommandSeq("sim-1", 0), 1);
        assert.equal(await storage.credentials.nextCommandSeq("sim-1", 0), 2);
        // The device reported a higher seq (a counter lost with a restored database): jump past it.
        assert.equal(await storage.credentials.nextCommandSeq("sim-1", 10), 11);
        // A lower report never takes the counter back.
        assert.equal(await storage.credentials.nextCommandSeq("sim-1", 5), 12);
        assert.equal(await storage.credentials.nextCommandSeq("sim-1", 12), 13);
        assert.equal((await storage.credentials.get("sim-1"))?.commandSeq, 13);
        assert.equal((await storage.credentials.get("B-1"))?.commandSeq, 0, "counters are per device");
        assert.equal(await storage.credentials.nextCommandSeq("sim-9", 0), undefined);
        assert.equal(await storage.credentials.get("sim-9"), undefined, "no credential is made up");
      });

      it("refuses a counter floor no command can carry, and stops at 2^53-1", async () => {
        for (const bad of [-1, 1.5, Number.NaN, Number.MAX_SAFE_INTEGER, 2 ** 60]) {
          await assert.rejects(storage.credentials.nextCommandSeq("sim-1", bad), (error: unknown) => {
            assert.ok(error instanceof StorageError);
            assert.equal(
              error.message,
              `Cannot issue a command counter for device sim-1 above ${bad}: the floor must be a whole number from 0 to 9007199254740990. Nothing was changed.`,
            );
            return true;
          });
        }
        assert.equal((await storage.credentials.get("sim-1"))?.commandSeq, 13);
        assert.equal(
          await storage.credentials.nextCommandSeq("a-3", Number.MAX_SAFE_INTEGER - 1),
          Number.MAX_SAFE_INTEGER,
        );
        assert.equal((await storage.credentials.get("a-3"))?.commandSeq, Number.MAX_SAFE_INTEGER);
        await assert.rejects(storage.credentials.nextCommandSeq("a-3", 0), {
          message:
            "Device a-3's command counter has reached 9007199254740991, the largest a command can carry: no further signed command can be sent to it. Nothing was changed.",
        });
        assert.equal((await storage.credentials.get("a-3"))?.commandSeq, Number.MAX_SAFE_INTEGER);
      });

      it("replaces a secret, keeping the counter, the allowance and the creation time", async () => {
        assert.equal(await storage.credentials.setAllowUnsigned("sim-1", true), true);
        const fresh = newSecret();
        assert.equal(
          await storage.credentials.replace({ deviceId: "sim-1", hash: hashSecret(fresh), at: 80_000 }),
          true,
        );
        const after = await storage.credentials.get("sim-1");
        assert.equal(after?.createdAt, 70_000);
        assert.equal(after?.rotatedAt, 80_000);
        assert.equal(after?.commandSeq, 13);
        assert.equal(after?.allowUnsigned, true);
        assert.equal(verifySecret(fresh, after?.hash ?? ""), true);
        assert.equal(verifySecret(secret, after?.hash ?? ""), false, "the old secret no longer works");
        assert.equal(
          await storage.credentials.replace({ deviceId: "sim-9", hash: hashSecret(fresh), at: 80_000 }),
          false,
        );
        assert.equal(await storage.credentials.get("sim-9"), undefined);
      });

      it("keeps the unsigned-command allowance per device", async () => {
        assert.deepEqual(
          (await storage.credentials.list()).map((c) => [c.deviceId, c.allowUnsigned]),
          [
            ["B-1", false],
            ["a-3", false],
            ["b-2", false],
            ["sim-1", true],
          ],
        );
        assert.equal(await storage.credentials.setAllowUnsigned("sim-1", false), true);
        assert.equal((await storage.credentials.get("sim-1"))?.allowUnsigned, false);
        assert.equal(await storage.credentials.setAllowUnsigned("b-2", true), true);
        assert.equal((await storage.credentials.get("b-2"))?.allowUnsigned, true);
        assert.equal(await storage.credentials.setAllowUnsigned("sim-9", true), false);
        assert.equal(await storage.credentials.get("sim-9"), undefined);
      });

      it("removes a credential; the device can then be provisioned afresh", async () => {
        assert.equal(await storage.credentials.remove("b-2"), true);
        assert.equal(await storage.credentials.remove("b-2"), false);
        assert.equal(await storage.credentials.get("b-2"), undefined);
        assert.equal(await storage.credentials.nextCommandSeq("b-2", 0), undefined);
        const again = await storage.credentials.add({ deviceId: "b-2", hash, at: 90_000 });
        assert.deepEqual(again, {
          deviceId: "b-2",
          hash,
          createdAt: 90_000,
          rotatedAt: null,
          commandSeq: 0,
          allowUnsigned: false,
        });
        assert.deepEqual(
          (await storage.credentials.list()).map((c) => c.deviceId),
          ["B-1", "a-3", "b-2", "sim-1"],
        );
      });
    });

    describe("audit log", () => {
      const entries: Array<Omit<AuditEntry, "id">> = [
        {
          at: 100_000,
          actor: "mqtt mpota-admin (client cli-1a2b, 127.0.0.1)",
          action: "firmware/add",
          target: "sensor@2.0",
          detail: { size: 612_352, checks: ["md5-trailer", "bootloader"], forced: false },
          outcome: "ok",
        },
        {
          at: 100_000,
          actor: "http token (127.0.0.1)",
          action: "update",
          target: "sim-1",
          detail: { firmware: "sensor@2.0", allowDowngrade: true, note: 'Grüße \u0000 "quoted"' },
          outcome: "ok",
        },
        {
          at: 100_500,
          actor: "mqtt sim-2 (client sim-2, 10.0.0.7)",
          action: "update",
          target: "sim-1",
          detail: null,
          outcome: "refused",
        },
        {
          at: 101_000,
          actor: "dashboard session (10.0.0.4)",
          action: "devices/add",
          target: "sim-3",
          detail: { nested: { list: [1, "two", null] } },
          outcome: "ok",
        },
        {
          at: 102_000,
          actor: "http token (127.0.0.1)",
          action: "rollout/create",
          target: null,
          detail: null,
          outcome: "ok",
        },
      ];
      let all: AuditEntry[] = [];

      it("records entries and lists them newest first, as recorded", async () => {
        assert.deepEqual(await storage.audit.list({ limit: 10 }), []);
        for (const entry of entries) await storage.audit.record(entry);
        all = await storage.audit.list({ limit: 10 });
        assert.deepEqual(
          all.map(({ id: _, ...rest }) => rest),
          [...entries].reverse(),
        );
        const ids = all.map((e) => e.id);
        assert.ok(
          ids.every((id, i) => Number.isSafeInteger(id) && (i === 0 || id < (ids[i - 1] as number))),
          `ids fall newest first: ${ids.join(", ")}`,
        );
        assert.deepEqual(await storage.audit.list({ limit: 0 }), []);
      });

      it("pages through the log with `before`", async () => {
        const pages: string[][] = [];
        let before: number | undefined;
        for (;;) {
          const page = await storage.audit.list({ limit: 2, before });
          if (page.length === 0) break;
          pages.push(page.map((e) => `${e.action}@${e.at}`));
          before = page[page.length - 1]?.id;
        }
        assert.deepEqual(pages, [
          ["rollout/create@102000", "devices/add@101000"],
          ["update@100500", "update@100000"],
          ["firmware/add@100000"],
        ]);
        const oldest = all[all.length - 1]?.id as number;
        assert.deepEqual(await storage.audit.list({ limit: 10, before: oldest }), []);
        assert.equal((await storage.audit.list({ limit: 10, before: oldest + 1 })).length, 1);
        for (const bad of [{ limit: -1 }, { limit: 2.5 }, { limit: 10, before: -3 }]) {
          await assert.rejects(storage.audit.list(bad), (error: unknown) => {
            assert.ok(error instanceof StorageError);
            assert.match(
              error.message,
              /^The audit list's (limit|`before` id) must be a whole number of 0 or more, not -?[\d.]+\.$/,
            );
            return true;
          });
        }
      });

      it("prunes to the newest entries, and never reuses an id", async () => {
        assert.equal(await storage.audit.prune(10), 0);
        assert.equal(await storage.audit.prune(3), 2);
        assert.deepEqual(
          (await storage.audit.list({ limit: 10 })).map((e) => e.id),
          all.slice(0, 3).map((e) => e.id),
        );
        await assert.rejects(storage.audit.prune(-1), {
          message: "The number of audit entries to keep must be a whole number of 0 or more, not -1.",
        });
        assert.equal(await storage.audit.prune(0), 3);
        assert.deepEqual(await storage.audit.list({ limit: 10 }), []);
        await storage.audit.record({ ...entries[0], at: 103_000 } as Omit<AuditEntry, "id">);
        const [newest] = await storage.audit.list({ limit: 10 });
        assert.ok((newest?.id ?? 0) > (all[0]?.id ?? 0), "a new entry gets a new id after a prune");
        assert.equal(newest?.at, 103_000);
      });
    });

    if (features.imagesInDatabase) {
      it("keeps firmware image bytes in the database, once per identity", async () => {
        const images = storage.images;
        assert.ok(images, "this backend keeps images in the database");
        const bytes = new Uint8Array(70_000).map((_, i) => (i * 7 + 3) & 0xff);
        assert.equal(await images.get(FW_B), undefined);
        await images.put(FW_B, bytes);
        await images.put(FW_B, new Uint8Array([1, 2, 3]));
        const back = await images.get(FW_B);
        assert.ok(back instanceof Uint8Array);
        assert.deepEqual(Buffer.from(back as Uint8Array), Buffer.from(bytes));
        // A view into a bigger buffer stores only its own bytes.
        const big = new Uint8Array(100).map((_, i) => i);
        await images.put(FW_A, big.subarray(10, 20));
        assert.deepEqual([...((await images.get(FW_A)) ?? [])], [10, 11, 12, 13, 14, 15, 16, 17, 18, 19]);
        await images.remove(FW_B);
        await images.remove(FW_B);
        assert.equal(await images.get(FW_B), undefined);
      });
    } else {
      it("leaves firmware images to the data directory", () => {
        assert.equal(storage.images, null);
      });
    }
  });
}

/**
 * The job a version-6 database held in the middle of an app fetch ("j-old",
 * bytes only, lease owner A) reads back whole after migrations 7 and 8, and
 * then stores a files count with its bytes, and who cancelled it. Both databases' migration tests.
 */
export async function checkJobFromVersion6(storage: Storage): Promise<void> {
  const job = await storage.jobs.get("j-old");
  assert.deepEqual(job?.progress, { bytes: 2048, total: 61440, rate: 900, retransmits: 0 });
  assert.equal(job?.phase, "pushing");
  assert.deepEqual(
    (await storage.jobs.steps("j-old")).map((s) => s.message),
    ["Created."],
  );
  const progress = { bytes: 4096, total: 61440, rate: 950, retransmits: 0, files: 5, of: 20 };
  await storage.jobs.update({ id: "j-old", owner: "A", now: 3, patch: { progress } });
  assert.deepEqual((await storage.jobs.get("j-old"))?.progress, progress);
  // Migration 8: nobody is said to have cancelled a job from before, until one is cancelled.
  assert.equal(job?.cancelledBy, null);
  await storage.jobs.update({
    id: "j-old",
    owner: "A",
    now: 4,
    patch: { phase: "cancelled", cancelledBy: "rollout", finishedAt: 4 },
  });
  const cancelled = await storage.jobs.get("j-old");
  assert.deepEqual([cancelled?.phase, cancelled?.cancelledBy], ["cancelled", "rollout"]);
}
