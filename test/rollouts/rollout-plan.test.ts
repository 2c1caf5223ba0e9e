import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { RequestError } from "../../src/server/base/request-error.ts";
import { compareVersions } from "../../src/server/releases/version-order.ts";
import { planGroups, planRollout } from "../../src/server/rollouts/rollout-plan.ts";
import { parseGroupList, parseRolloutRequest } from "../../src/server/rollouts/rollout-request.ts";

const FW_OLD = "a".repeat(32);
const FW_NEW = "b".repeat(32);
const FW_NEWER = "c".repeat(32);
const FIRMWARE = new Map([
  [FW_OLD, { name: "sensor", version: "1.0" }],
  [FW_NEW, { name: "sensor", version: "2.0" }],
  [FW_NEWER, { name: "sensor", version: "10.0" }],
]);
const TARGET = { id: FW_NEW, name: "sensor", version: "2.0" };

describe("version order", () => {
  it("orders releases as people number them", () => {
    const table: Array<[string, string, number]> = [
      ["1.10", "1.9", 1],
      ["10.0", "2.0", 1],
      ["2.0", "2.0-rc1", 1],
      ["1.0-rc2", "1.0-rc10", -1],
      ["v1.2", "1.2", 0],
      ["1.0", "1.0.0", 0],
      ["1.0.1", "1.0", 1],
      ["1.4.2+build5", "1.4.2", 0],
      ["2024.01.5", "2024.01.12", -1],
    ];
    for (const [a, b, expected] of table) {
      assert.equal(Math.sign(compareVersions(a, b)), expected, `${a} vs ${b}`);
      assert.equal(Math.sign(compareVersions(b, a)), expected === 0 ? 0 : -expected, `${b} vs ${a}`);
    }
  });
});

describe("rollout requests", () => {
  const base = { firmware: "sensor@2.0", tag: "garden" };
  const refused = (request: Record<string, unknown>, message: RegExp) =>
    assert.throws(
      () => parseRolloutRequest(request),
      (e: unknown) => e instanceof RequestError && message.test(e.message),
    );

  it("takes the defaults: a canary of one, 10 %, the rest; pause on errors", () => {
    const input = parseRolloutRequest(base);
    assert.deepEqual(
      input.groups.map((g) => g.size),
      [{ kind: "count", count: 1 }, { kind: "percent", percent: 10 }, { kind: "rest" }],
    );
    assert.deepEqual(
      [
        input.successThreshold,
        input.errorThreshold,
        input.timeoutMs,
        input.concurrency,
        input.onError,
        input.allowDowngrade,
      ],
      [100, 20, 900_000, 10, "pause", false],
    );
    assert.deepEqual(input.selector, { kind: "tag", tag: "garden" });
  });

  it("refuses bad input with what to give instead", () => {
    refused(
      { ...base, successThreshold: 101 },
      /^The success threshold must be a percentage from 0 to 100, not 101\.$/,
    );
    refused(
      { ...base, errorThreshold: -1 },
      /^The error threshold must be a percentage from 0 to 100, not -1\.$/,
    );
    refused(
      { ...base, groups: [{ count: 1, errorThreshold: 150 }] },
      /^Group 1's error threshold must be a percentage from 0 to 100/,
    );
    refused({ ...base, errorThreshold: "10" }, /percentage from 0 to 100, not "10"/);
    refused(
      { firmware: "sensor" },
      /^Say which devices the rollout is for: "devices" .*--devices, --tag or --line\.$/,
    );
    refused({ firmware: "sensor", devices: [] }, /^The device list is empty: name at least one device\.$/);
    refused({ firmware: "sensor", tag: "" }, /^The tag is empty/);
    refused({ firmware: "sensor", tag: "a", line: "sensor" }, /^Give one selector, not tag and line/);
    refused({ firmware: "sensor", devices: ["ok", "bad id"] }, /"bad id" is not a device id/);
    refused({ firmware: "sensor", devices: ["bridge"] }, /reserved for the server's own topics/);
    refused({ tag: "x" }, /^The request needs "firmware"/);
    refused(
      { ...base, groups: "1,rest,10%" },
      /"rest" takes every remaining device, so it must be the last group \(it is group 2 of 3\)/,
    );
    refused(
      { ...base, groups: "1,ten" },
      /"ten" is not a group: give a number of devices \(1\), a share of them \(10%\) or "rest"/,
    );
    refused({ ...base, groups: "0%" }, /A group of 0% is not possible/);
    refused({ ...base, groups: "" }, /Give at least one group/);
    refused(
      { ...base, groups: [{ count: 1, percent: 5 }] },
      /Group 1 needs exactly one of "count" .*, not count and percent\./,
    );
    refused({ ...base, retries: 1.5 }, /"retries" must be a whole number from 0 to 20/);
    refused({ ...base, concurrency: 0 }, /"concurrency" must be a whole number from 1 to 1000/);
    refused({ ...base, timeout: 0 }, /"timeout" must be seconds from 1 to 2592000/);
    refused({ ...base, onError: "ignore" }, /"onError" must be "pause" or "abort"/);
    refused({ ...base, startAt: "next tuesday" }, /"startAt" must be a time/);
  });

  it("reads the short group form and start times", () => {
    assert.deepEqual(
      parseGroupList("2, 25 %,rest").map((g) => g.size),
      [{ kind: "count", count: 2 }, { kind: "percent", percent: 25 }, { kind: "rest" }],
    );
    assert.equal(
      parseRolloutRequest({ ...base, startAt: "2030-01-31T22:00:00Z" }).startAt,
      Date.UTC(2030, 0, 31, 22),
    );
  });
});

describe("rollout plans", () => {
  it("sizes groups from the whole rollout, rounding shares up, and adds the rest", () => {
    const defaults = { successThreshold: 100, errorThreshold: 20, minExecuted: undefined };
    const sizes = (list: string, total: number) =>
      planGroups(parseGroupList(list), total, defaults).map((g) => [g.spec, g.size, g.minExecuted]);
    assert.deepEqual(sizes("1,10%,rest", 50), [
      ["1", 1, 1],
      ["10%", 5, 5],
      ["rest", 44, 5],
    ]);
    assert.deepEqual(sizes("1,10%", 3), [
      ["1", 1, 1],
      ["10%", 1, 1],
      ["rest", 1, 1],
    ]);
    assert.deepEqual(sizes("5,50%", 4), [["5", 4, 4]]);
    assert.deepEqual(sizes("1,10%,rest", 1), [["1", 1, 1]]);
  });

  const candidates = [
    { id: "s-sleepy", fw: FW_OLD, sleep: 300 },
    { id: "b-on", fw: FW_OLD, sleep: 0 },
    { id: "a-there", fw: FW_NEW, sleep: 0 },
    { id: "c-on", fw: FW_OLD, sleep: 0 },
  ];

  it("puts always-on devices to update first, devices already on the target last (done at once)", () => {
    const input = parseRolloutRequest({ firmware: "x", tag: "t", groups: "1,rest" });
    const plan = planRollout(input, TARGET, candidates, FIRMWARE, 1000);
    assert.deepEqual(
      plan.devices.map((d) => [d.deviceId, d.group, d.state]),
      [
        ["b-on", 0, "pending"],
        ["c-on", 1, "pending"],
        ["s-sleepy", 1, "pending"],
        ["a-there", 1, "done"],
      ],
    );
    assert.equal(plan.already, 1);
    // A list of ids keeps its order: the first one is the canary.
    const listed = planRollout(
      parseRolloutRequest({ firmware: "x", devices: ["s-sleepy", "b-on"], groups: "1,rest" }),
      TARGET,
      [candidates[0], candidates[1]].filter((c) => c !== undefined),
      FIRMWARE,
      1000,
    );
    assert.deepEqual(
      listed.devices.map((d) => d.deviceId),
      ["s-sleepy", "b-on"],
    );
  });

  it("refuses downgrades unless allowed, and a rollout with nothing to do", () => {
    const newer = [...candidates, { id: "z-newer", fw: FW_NEWER, sleep: 0 }];
    assert.throws(
      () => planRollout(parseRolloutRequest({ firmware: "x", tag: "t" }), TARGET, newer, FIRMWARE, 1000),
      {
        message:
          "Refusing to roll out sensor 2.0: it would downgrade 1 device (z-newer runs sensor 10.0, newer than 2.0). If that is what you want, pass --allow-downgrade (allowDowngrade: true), or leave this device out.",
      },
    );
    const allowed = planRollout(
      parseRolloutRequest({ firmware: "x", tag: "t", allowDowngrade: true }),
      TARGET,
      newer,
      FIRMWARE,
      1000,
    );
    assert.equal(allowed.devices.length, 5);
    assert.throws(
      () =>
        planRollout(
          parseRolloutRequest({ firmware: "x", tag: "t" }),
          TARGET,
          [candidates[2] as never],
          FIRMWARE,
          1000,
        ),
      { message: "The selected device (a-there) already runs sensor 2.0: there is nothing to roll out." },
    );
  });
});
