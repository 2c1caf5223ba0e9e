import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { devicesTable } from "../../src/cli/devices.ts";
import { firmwareTable } from "../../src/cli/firmware.ts";
import { jobsTable } from "../../src/cli/jobs.ts";
import { rolloutsTable } from "../../src/cli/rollout-text.ts";
import { cutCell, tableWidth } from "../../src/cli/table-fit.ts";
import type { DeviceView, FirmwareView, JobView } from "../../src/server/api/api.ts";
import type { RolloutView } from "../../src/server/api/rollout-api.ts";

// The lists with realistic long rows: 24-character device ids (an ESP32's
// MAC-based default), long release names, an app's file progress. Piped
// (no terminal) they keep to 100 columns; the ids stay whole.

const NOW = 3_600_000;
const DEVICE = "esp32-c8f09e2a4b10-garden"; // 25
const JOB = "j-0f1e2d3c4b";
const ID = "fedcba9876543210fedcba9876543210";
const widest = (text: string) => Math.max(...text.split("\n").map((l) => l.length));

const job: JobView = {
  id: JOB,
  device: DEVICE,
  firmware: { id: ID, name: "greenhouse_thermostat", version: "2.14.3", size: 48_000 },
  state: "pushing",
  attempt: 2,
  maxAttempts: 5,
  percent: 40,
  bytes: 19_200,
  total: 48_000,
  rate: 0,
  retransmits: 0,
  target: null,
  delivery: "app-pull",
  fetchedByDevice: true,
  error: null,
  createdAt: 0,
  updatedAt: NOW - 2_000,
  finishedAt: null,
  dueAt: null,
  files: 12,
  of: 20,
} as JobView;

describe("lists keep to the terminal's width, cutting free text and never an id", () => {
  it("the width: the terminal's when stdout is one, else 100; never below 40", () => {
    assert.equal(tableWidth({}), 100);
    assert.equal(tableWidth({ columns: undefined }), 100);
    assert.equal(tableWidth({ columns: 80 }), 80);
    assert.equal(tableWidth({ columns: 240 }), 240);
    assert.equal(tableWidth({ columns: 12 }), 40);
  });

  it("a cell is cut at its end, before its version, or after its id", () => {
    assert.equal(cutCell("12 of 20 files staged (18.8 of 46.9 KiB)", 16, "end"), "12 of 20 files …");
    assert.equal(cutCell("app greenhouse_thermostat 2.14.3", 20, "keep-last-word"), "app greenhou… 2.14.3");
    assert.equal(cutCell(`${JOB} verifying`, 16, "keep-first-word"), `${JOB} ve…`);
    assert.equal(cutCell(`${JOB} verifying`, 8, "keep-first-word"), JOB);
    assert.equal(cutCell("short", 16, "end"), "short");
    assert.equal(cutCell("thermostat 1.0.0 (rolled back)", 24, "keep-last-word"), "the… 1.0.0 (rolled back)");
    assert.equal(cutCell("thermostat 1.0.0 (rolled back)", 16, "keep-last-word"), "t… (rolled back)");
    assert.equal(cutCell("cccccccc (unknown)", 15, "keep-last-word"), "cccc… (unknown)");
  });

  it("`mpota jobs`: 24-character device ids and an app's file progress", () => {
    const jobs = [job, { ...job, id: "j-99887766aa", device: "esp32-0a1b2c3d4e5f-porch-01" }];
    const whole = jobsTable(jobs, NOW, 300);
    assert.ok(widest(whole) > 100, `the rows are wide: ${widest(whole)}`);
    const text = jobsTable(jobs, NOW);
    assert.equal(widest(text), 100, text);
    const row = text.split("\n")[2] ?? "";
    assert.match(
      row,
      new RegExp(`^${JOB} +${DEVICE} +app gree… 2\\.14\\.3 +fetching +2/5 +12 of 20 files… +2 s ago$`),
    );
    assert.match(text, /esp32-0a1b2c3d4e5f-porch-01 /);
    // An 80-column terminal: the free text goes down to its header's width, the ids stay (84 columns).
    const narrow = jobsTable(jobs, NOW, 80);
    assert.match(narrow, new RegExp(`\\n${JOB} +${DEVICE} +app gr… +fetching +2/5 +12 of 2… +2 s ago\\n`));
    assert.equal(widest(narrow), 84);
  });

  it("`mpota devices`: a sleeping device with an app and an active job", () => {
    const device: DeviceView = {
      id: DEVICE,
      status: "sleeping",
      statusAt: 0,
      firstSeen: 0,
      lastSeen: NOW - 60_000,
      lastStateAt: null,
      nextWakeAt: NOW - 720_000,
      fw: ID,
      firmware: { id: ID, name: "micropython-esp32-ota", version: "1.24.1" },
      v: 3,
      chip: "esp32",
      ver: null,
      ip: "192.168.178.123",
      rssi: -71,
      vbat: 3.71,
      mem: null,
      flash: null,
      wake: null,
      sleep: 900,
      job: { id: JOB, state: "verifying", delivery: "app-pull", fetchedByDevice: true },
      app: {
        name: "greenhouse_thermostat",
        version: "2.14.3",
        id: null,
        board: "esp32",
        free: null,
        rolledBack: null,
      },
    };
    assert.ok(widest(devicesTable([device], NOW, 300)) > 100);
    // Awake, on a short address: 100 columns; the releases and the job's phase are what gives.
    const awake = devicesTable([{ ...device, status: "online", ip: "10.0.0.17" }], NOW);
    assert.equal(widest(awake), 100, awake);
    assert.equal(
      awake.split("\n")[2],
      `${DEVICE}  online  micropy…  greenh…  10.0.0.17  -71   3.71  1 min ago  ${JOB}`,
    );
    // Everything long at once: the free text at its floor, the job id whole without its phase (105 columns).
    const text = devicesTable([device], NOW);
    assert.equal(
      text.split("\n")[2],
      `${DEVICE}  sleep…  micropy…  green…  192.168.178.123  -71   3.71  1 min ago  ${JOB}`,
    );
    // Whole in a wide terminal.
    assert.match(
      devicesTable([device], NOW, 200),
      / sleeping, overdue 12 min +micropython-esp32-ota 1\.24\.1 +greenhouse_thermostat 2\.14\.3 .* j-0f1e2d3c4b verifying$/m,
    );
  });

  it("`mpota rollout list`: a long name and a list of device ids", () => {
    const rollout = {
      id: "r-3f9a0c12d4",
      name: "spring-2026-greenhouse-thermostats",
      firmware: { id: ID, name: "greenhouse_thermostat", version: "2.14.3", size: 48_000 },
      delivery: "app-pull",
      fetchedByDevice: true,
      selector: { kind: "devices", devices: [DEVICE, "esp32-0a1b2c3d4e5f-porch"] },
      state: "running",
      pauseKind: null,
      reason: null,
      currentGroup: 0,
      startAt: 0,
      createdAt: NOW - 60_000,
      updatedAt: 0,
      startedAt: 0,
      finishedAt: null,
      groups: [{}, {}, {}],
      counts: { total: 2, done: 1, failed: 0, overdue: 0 },
    } as unknown as RolloutView;
    assert.ok(widest(rolloutsTable([rollout], NOW, 300)) > 100);
    const text = rolloutsTable([rollout], NOW);
    assert.equal(widest(text), 100, text);
    assert.match(
      text.split("\n")[2] ?? "",
      /^r-3f9a0c12d4 +spring-\S*… +app \S*… 2\.14\.3 +esp32-\S*… +running\S*/,
    );
  });

  it("`mpota firmware list`: long notes and build are cut; name, version and identity stay whole", () => {
    const firmware: FirmwareView = {
      id: ID,
      name: "sensor",
      version: "2.0",
      size: 614_400,
      notes: "Fixes the deep-sleep wake on GPIO 4 and the DS18B20 bus timing",
      addedAt: NOW - 120_000,
      micropython: "v1.24.1 on 2024-11-29",
      build: null,
      kind: "esp8266-ota",
      target: "esp8266",
      chips: ["esp8266"],
      checks: [],
      devices: 12,
    };
    const whole = firmwareTable([firmware], NOW, 300);
    const text = firmwareTable([firmware], NOW);
    assert.ok(widest(text) < widest(whole), `${widest(text)} < ${widest(whole)}`);
    assert.match(
      text.split("\n")[2] ?? "",
      new RegExp(`^sensor +2\\.0 +esp8266 +${ID} +614400 +v1\\.24\\.1 on… +12 +2 min ago +Fixes…$`),
    );
    // With nine columns and a 32-digit identity, 100 is out of reach: the free text is down to its floor.
    assert.equal(widest(text), 107);
  });
});
