import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { devicesTable, deviceText } from "../../src/cli/devices.ts";
import { jobsTable, jobText } from "../../src/cli/jobs.ts";
import { rolloutsTable, rolloutText } from "../../src/cli/rollout-text.ts";
import type { DeviceDetail, JobDetail, JobView } from "../../src/server/api/api.ts";
import type { RolloutDetail, RolloutView } from "../../src/server/api/rollout-api.ts";
import { emptyCounts } from "../../src/server/rollouts/rollout-views.ts";

// What `mpota jobs`, `jobs show`, `devices show` and `rollout list/show` print
// for an app job (the board fetches a release of Python files) beside a
// firmware job (the server pushes an image, or an ESP32 fetches one).

const NOW = 60_000;
const APP_ID = "0123456789abcdef0123456789abcdef";
const FW_ID = "fedcba9876543210fedcba9876543210";

const appJob: JobView = {
  id: "j-a1b2c3d4e5",
  device: "porch",
  firmware: { id: APP_ID, name: "thermostat", version: "1.4.1", size: 1985 },
  state: "pushing",
  attempt: 1,
  maxAttempts: 5,
  percent: 50,
  bytes: 9_525,
  total: 19_050,
  rate: 0,
  retransmits: 0,
  target: "127.0.0.1:40000",
  delivery: "app-pull",
  fetchedByDevice: true,
  error: null,
  createdAt: 0,
  updatedAt: 58_000,
  finishedAt: null,
  dueAt: null,
};

const firmwareJob: JobView = {
  ...appJob,
  id: "j-0f1e2d3c4b",
  device: "kitchen",
  firmware: { id: FW_ID, name: "sensor", version: "2.0", size: 614_400 },
  attempt: 2,
  percent: 40,
  bytes: 245_760,
  total: 614_400,
  rate: 20_480,
  target: "192.168.1.20:8266",
  delivery: "udp-push",
  fetchedByDevice: false,
  updatedAt: 55_000,
};

const detail = (j: JobView, extra: Partial<JobDetail> = {}): JobDetail => ({
  ...j,
  allowDowngrade: false,
  steps: [{ at: 1_000, kind: "created", message: "Job created.", data: null }],
  ...extra,
});

describe("`mpota jobs`: what each job installs, and how its bytes move", () => {
  it("lists an app job as an app that the board is fetching, a firmware job as firmware being pushed", () => {
    assert.equal(
      jobsTable([appJob, firmwareJob], NOW),
      [
        "JOB           DEVICE   RELEASE               STATE     TRY  PROGRESS                        UPDATED",
        "------------  -------  --------------------  --------  ---  ------------------------------  -------",
        "j-a1b2c3d4e5  porch    app thermostat 1.4.1  fetching  1/5  50% of 18.6 KiB staged          2 s ago",
        "j-0f1e2d3c4b  kitchen  firmware sensor 2.0   pushing   2/5  40% of 600.0 KiB at 20.0 KiB/s  5 s ago",
        "",
      ].join("\n"),
    );
  });

  it("an ESP32's image is firmware the device fetches; an older server's job (no delivery) keeps its plain words", () => {
    const esp32 = { ...firmwareJob, delivery: "esp32-pull", fetchedByDevice: true };
    const { delivery: _d, fetchedByDevice: _f, ...old } = firmwareJob;
    const rows = jobsTable([esp32, old], NOW).split("\n");
    assert.equal(
      rows[2],
      "j-0f1e2d3c4b  kitchen  firmware sensor 2.0  fetching  2/5  40% of 600.0 KiB at 20.0 KiB/s  5 s ago",
    );
    assert.equal(
      rows[3],
      "j-0f1e2d3c4b  kitchen  sensor 2.0           pushing   2/5  40% of 600.0 KiB at 20.0 KiB/s  5 s ago",
    );
  });

  it("cuts a long name in the release cell so the version still shows and the row fits 100 columns", () => {
    const long = {
      ...appJob,
      firmware: { ...appJob.firmware, name: "greenhouse_controller_north_wing", version: "12.40.3.7" },
    };
    const text = jobsTable([long], NOW);
    assert.equal(
      text.split("\n")[2],
      "j-a1b2c3d4e5  porch   app greenhous... 12.40.3.7  fetching  1/5  50% of 18.6 KiB staged  2 s ago",
    );
    for (const line of text.split("\n")) assert.ok(line.length <= 100, `${line.length}: ${line}`);
    // `jobs show` has room for the whole name.
    assert.match(
      jobText(detail(long), NOW),
      /^Job j-a1b2c3d4e5: porch to app greenhouse_controller_north_wing 12\.40\.3\.7 \(/,
    );
  });

  it("`jobs show` names an app job's app and says the board is fetching", () => {
    assert.equal(
      jobText(detail(appJob, { app: { files: 20, bytes: 19_050 } }), NOW),
      [
        `Job j-a1b2c3d4e5: porch to app thermostat 1.4.1 (${APP_ID}, 20 files, 18.6 KiB, 19,050 bytes)`,
        "  state      fetching",
        "  tries      1 of 5",
        "  progress   50% of 18.6 KiB staged",
        "  created    1 min ago",
        "",
        "Steps:",
        "  00:00:01.000  created        Job created.",
        "",
      ].join("\n"),
    );
  });

  it("`jobs show` names a firmware job's firmware, its push and the address it goes to", () => {
    assert.equal(
      jobText(detail(firmwareJob), NOW),
      [
        `Job j-0f1e2d3c4b: kitchen to firmware sensor 2.0 (${FW_ID}, 614400 bytes)`,
        "  state      pushing",
        "  tries      2 of 5",
        "  progress   40% of 600.0 KiB at 20.0 KiB/s",
        "  address    192.168.1.20:8266",
        "  created    1 min ago",
        "",
        "Steps:",
        "  00:00:01.000  created        Job created.",
        "",
      ].join("\n"),
    );
  });
});

describe("`mpota devices` and `devices show`: the device's jobs", () => {
  it("say what each installed and fetching for a release the device fetches", () => {
    const device: DeviceDetail = {
      id: "porch",
      status: "online",
      statusAt: null,
      firstSeen: 0,
      lastSeen: 0,
      lastStateAt: null,
      nextWakeAt: null,
      fw: null,
      firmware: null,
      v: 3,
      chip: "esp32",
      ver: null,
      ip: null,
      rssi: null,
      vbat: null,
      mem: null,
      flash: null,
      wake: null,
      sleep: null,
      job: { id: appJob.id, state: "pushing" },
      app: null,
      history: [],
      jobs: [
        appJob,
        {
          ...firmwareJob,
          firmware: { id: FW_ID, name: "board", version: "2.0", size: 300_000 },
          delivery: "esp32-pull",
          fetchedByDevice: true,
        },
        { ...firmwareJob, id: "j-99887766aa", state: "succeeded", finishedAt: 50_000 },
      ],
    };
    // `mpota devices`: the JOB column of a board fetching an app, beside one whose image is pushed.
    const list = devicesTable(
      [
        { ...device, job: { id: appJob.id, state: "pushing", delivery: "app-pull", fetchedByDevice: true } },
        {
          ...device,
          id: "kitchen",
          job: { id: firmwareJob.id, state: "pushing", delivery: "udp-push", fetchedByDevice: false },
        },
      ],
      NOW,
    ).split("\n");
    assert.match(list[2] ?? "", /^porch {3}.* j-a1b2c3d4e5 fetching$/);
    assert.match(list[3] ?? "", /^kitchen .* j-0f1e2d3c4b pushing$/);
    const text = deviceText(device, NOW);
    assert.equal(
      text.slice(text.indexOf("\nJobs (newest first):\n") + 1),
      [
        "Jobs (newest first):",
        "  JOB           STATE      RELEASE               CREATED",
        "  ------------  ---------  --------------------  ---------",
        "  j-a1b2c3d4e5  fetching   app thermostat 1.4.1  1 min ago",
        "  j-0f1e2d3c4b  fetching   firmware board 2.0    1 min ago",
        "  j-99887766aa  succeeded  firmware sensor 2.0   1 min ago",
        "",
      ].join("\n"),
    );
  });
});

describe("`mpota rollout list` and `rollout show`", () => {
  const counts = (c: Partial<RolloutView["counts"]>): RolloutView["counts"] => ({ ...emptyCounts(), ...c });
  const group = (
    index: number,
    spec: string,
    size: number,
    state: "finished" | "running",
    c: Partial<RolloutView["counts"]>,
  ) => ({
    index,
    spec,
    size,
    successThreshold: 100,
    errorThreshold: 20,
    minExecuted: 1,
    approve: false,
    state,
    counts: counts(c),
  });
  const appRollout: RolloutDetail = {
    id: "r-3f9a0c12d4",
    name: "porches",
    firmware: { id: APP_ID, name: "thermostat", version: "1.4.1", size: 1985 },
    delivery: "app-pull",
    fetchedByDevice: true,
    selector: { kind: "tag", tag: "porch" },
    state: "running",
    pauseKind: null,
    reason: null,
    currentGroup: 0,
    policy: { maxAttempts: 5, timeout: 900, concurrency: 10, allowDowngrade: false, onError: "pause" },
    startAt: 0,
    createdAt: 0,
    updatedAt: 0,
    startedAt: 0,
    finishedAt: null,
    groups: [
      group(0, "1", 1, "finished", { total: 1, done: 1 }),
      group(1, "rest", 2, "running", { total: 2, pushing: 1, pending: 1 }),
    ],
    counts: counts({ total: 3, done: 1, pushing: 1, pending: 1 }),
    devices: [
      {
        device: "porch-1",
        group: 0,
        status: "done",
        job: "j-1111111111",
        jobState: "succeeded",
        fromFw: null,
        sleepy: false,
        turnAt: 0,
        deadlineAt: null,
        finishedAt: 0,
        reason: null,
      },
      {
        device: "porch-2",
        group: 1,
        status: "pushing",
        job: appJob.id,
        jobState: "pushing",
        fromFw: null,
        sleepy: false,
        turnAt: 0,
        deadlineAt: 0,
        finishedAt: null,
        reason: null,
      },
      {
        device: "porch-3",
        group: 1,
        status: "pending",
        job: null,
        jobState: null,
        fromFw: null,
        sleepy: false,
        turnAt: null,
        deadlineAt: null,
        finishedAt: null,
        reason: null,
      },
    ],
    events: [{ at: 0, kind: "started", message: "Rollout started.", data: null }],
  };
  const firmwareRollout: RolloutView = {
    ...appRollout,
    id: "r-77aa00bb11",
    name: null,
    firmware: { id: FW_ID, name: "sensor", version: "2.0", size: 614_400 },
    delivery: "udp-push",
    fetchedByDevice: false,
    selector: { kind: "devices", devices: ["kitchen", "hall"] },
    state: "completed",
    finishedAt: 0,
    counts: counts({ total: 2, done: 2 }),
  };

  it("the list names the release and its kind", () => {
    assert.equal(
      rolloutsTable([appRollout, firmwareRollout], NOW),
      [
        // 106 columns whole: the widest free text (release, state) is cut to fit 100.
        "ROLLOUT       NAME     RELEASE            DEVICES        STATE               DONE  FAILED  CREATED",
        "------------  -------  -----------------  -------------  ------------------  ----  ------  ---------",
        "r-3f9a0c12d4  porches  app thermo… 1.4.1  tag porch      running, group 1 …  1/3   0       1 min ago",
        "r-77aa00bb11  -        firmware sen… 2.0  kitchen, hall  completed           2/2   0       1 min ago",
        "",
      ].join("\n"),
    );
    // A terminal wider than that shows it whole.
    assert.match(
      rolloutsTable([appRollout, firmwareRollout], NOW, 120),
      / app thermostat 1\.4\.1 .* running, group 1 of 2 /,
    );
  });

  it("an app rollout's devices are fetching, in the counts, the groups and the device rows", () => {
    assert.equal(
      rolloutText(appRollout, NOW),
      [
        `Rollout r-3f9a0c12d4 "porches": app thermostat 1.4.1 (${APP_ID}) to tag porch`,
        "  state      running, group 1 of 2",
        "  devices    3: 1 done, 1 fetching, 1 pending",
        "  policy     5 tries per device, timeout 900 s (sleepy devices: plus their sleep), 10 at once, pause on errors",
        "  created    1 min ago, started 1 min ago",
        "",
        "  GROUP     SIZE  SUCCESS  ERRORS       STATE     PENDING  SCHEDULED  FETCHING  VERIFYING  DONE  FAILED",
        "  --------  ----  -------  -----------  --------  -------  ---------  --------  ---------  ----  ------",
        "  1 (1)     1     100 %    >20 % of 1+  finished  0        0          0         0          1     0",
        "  2 (rest)  2     100 %    >20 % of 1+  running   1        0          1         0          0     0",
        "",
        "Devices not pending or done:",
        "  DEVICE   GROUP  STATUS    JOB           REASON",
        "  -------  -----  --------  ------------  ------",
        "  porch-2  2      fetching  j-a1b2c3d4e5",
        "",
        "Events (newest first):",
        "  1970-01-01 00:00:00  started        Rollout started.",
        "",
      ].join("\n"),
    );
  });

  it("a firmware rollout pushes", () => {
    const pushing: RolloutDetail = {
      ...appRollout,
      ...firmwareRollout,
      state: "running",
      finishedAt: null,
      counts: counts({ total: 3, done: 1, pushing: 1, pending: 1 }),
      devices: appRollout.devices,
      events: [],
    };
    const text = rolloutText(pushing, NOW);
    assert.match(
      text,
      new RegExp(`^Rollout r-77aa00bb11: firmware sensor 2\\.0 \\(${FW_ID}\\) to kitchen, hall\\n`),
    );
    assert.match(text, /\n {2}devices {4}3: 1 done, 1 pushing, 1 pending\n/);
    assert.match(
      text,
      /\n {2}GROUP +SIZE +SUCCESS +ERRORS +STATE +PENDING +SCHEDULED +PUSHING +VERIFYING +DONE +FAILED\n/,
    );
    assert.match(text, /\n {2}porch-2 {2}2 {6}pushing {2}j-a1b2c3d4e5\n/);
  });
});
