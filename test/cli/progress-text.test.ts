import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { jobText, progressText } from "../../src/cli/jobs.ts";
import type { JobDetail } from "../../src/server/api/api.ts";

describe("a job's progress in `mpota jobs` and `mpota update --follow`", () => {
  it("a push: percent of the image and the rate", () => {
    assert.equal(
      progressText({ state: "pushing", percent: 40, bytes: 409_600, total: 1_024_000, rate: 20_480 }),
      "40% of 1000.0 KiB at 20.0 KiB/s",
    );
    assert.equal(
      progressText({ state: "recovering", percent: 40, bytes: 409_600, total: 1_024_000, rate: 0 }),
      "40% (last push)",
    );
  });
  it("an ESP32's fetch: the same bytes and rate, its last try a fetch", () => {
    const how = { delivery: "esp32-pull", fetchedByDevice: true };
    assert.equal(
      progressText({ state: "pushing", percent: 40, bytes: 409_600, total: 1_024_000, rate: 20_480 }, how),
      "40% of 1000.0 KiB at 20.0 KiB/s",
    );
    assert.equal(
      progressText({ state: "recovering", percent: 40, bytes: 409_600, total: 1_024_000, rate: 0 }, how),
      "40% (last fetch)",
    );
  });
  it("an app's fetch: the files staged and their bytes, no rate, no total before the board's first report", () => {
    const how = { delivery: "app-pull", fetchedByDevice: true };
    // The job's first message: only the manifest's size (1985 bytes) is known yet.
    assert.equal(
      progressText({ state: "pushing", percent: 0, bytes: 0, total: 1985, rate: 0 }, how),
      "no report from the board yet",
    );
    assert.equal(
      progressText({
        state: "pushing",
        percent: 40,
        bytes: 24_252,
        total: 60_630,
        rate: 9_000,
        files: 8,
        of: 20,
      }),
      "8 of 20 files staged (23.7 of 59.2 KiB)",
    );
    assert.equal(
      progressText(
        { state: "pushing", percent: 100, bytes: 19_050, total: 19_050, rate: 141_107, files: 20, of: 20 },
        how,
      ),
      "20 of 20 files staged (18.6 KiB)",
    );
    // A job stored before its first report with files says bytes.
    assert.equal(
      progressText({ state: "pushing", percent: 50, bytes: 9_525, total: 19_050, rate: 0 }, how),
      "50% of 18.6 KiB staged",
    );
    // Waiting for its next try, the stored job still says what the board had staged.
    assert.equal(
      progressText(
        { state: "retrying", percent: 50, bytes: 9_525, total: 19_050, rate: 0, files: 7, of: 20 },
        how,
      ),
      "7 of 20 files staged (last fetch)",
    );
    assert.equal(
      progressText({ state: "retrying", percent: 50, bytes: 9_525, total: 19_050, rate: 0 }, how),
      "50% (last fetch)",
    );
    assert.equal(
      progressText({ state: "succeeded", percent: 100, bytes: 1, total: 1, rate: 0, files: 20, of: 20 }),
      "done",
    );
  });
});

describe("`mpota jobs show`", () => {
  const job: JobDetail = {
    id: "j-1",
    device: "porch",
    firmware: { id: "0123456789abcdef0123456789abcdef", name: "thermostat", version: "1.0.1", size: 1985 },
    state: "succeeded",
    attempt: 1,
    maxAttempts: 5,
    percent: 100,
    bytes: 19_050,
    total: 19_050,
    rate: 0,
    retransmits: 0,
    target: "127.0.0.1:8266",
    delivery: "app-pull",
    fetchedByDevice: true,
    app: { files: 20, bytes: 19_050 },
    error: null,
    createdAt: 1_000,
    updatedAt: 2_000,
    finishedAt: 2_000,
    dueAt: null,
    allowDowngrade: false,
    steps: [],
  };
  const lines = (j: JobDetail) => jobText(j, 3_000).split("\n").slice(0, 6).join("\n");

  it("an app job: the release's files and bytes, no address (the board fetches)", () => {
    assert.equal(
      lines(job),
      [
        "Job j-1: porch to app thermostat 1.0.1 (0123456789abcdef0123456789abcdef, 20 files, 18.6 KiB, 19,050 bytes)",
        "  state      succeeded",
        "  tries      1 of 5",
        "  progress   done",
        "  created    2 s ago, finished 1 s ago",
        "",
      ].join("\n"),
    );
    const { app: _app, ...unread } = job;
    assert.match(
      jobText(unread, 3_000),
      /^Job j-1: porch to app thermostat 1\.0\.1 \(0123456789abcdef0123456789abcdef, manifest 1985 bytes\)\n/,
    );
  });

  it("an ESP8266 job keeps its push address and the image's size", () => {
    const { app: _app, ...rest } = job;
    const push: JobDetail = {
      ...rest,
      delivery: "udp-push",
      fetchedByDevice: false,
      firmware: { ...job.firmware, size: 42_000 },
    };
    assert.match(
      jobText(push, 3_000),
      /^Job j-1: porch to firmware thermostat 1\.0\.1 \(0123456789abcdef0123456789abcdef, 42000 bytes\)\n(.*\n){3} {2}address {4}127\.0\.0\.1:8266\n/,
    );
  });
});
