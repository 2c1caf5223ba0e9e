import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { progressText } from "../../src/cli/jobs.ts";

describe("a job's progress in `mpota jobs` and `mpota update --follow`", () => {
  it("a push: percent of the image and the rate", () => {
    assert.equal(
      progressText({ state: "pushing", percent: 40, bytes: 409_600, total: 1_024_000, rate: 20_480 }),
      "40% of 1000.0 KiB at 20.0 KiB/s",
    );
  });
  it("an app's fetch: the files staged beside the bytes", () => {
    assert.equal(
      progressText({
        state: "pushing",
        percent: 40,
        bytes: 24_252,
        total: 60_630,
        rate: 0,
        files: 8,
        of: 20,
      }),
      "40% of 59.2 KiB, 8 of 20 files",
    );
    assert.equal(
      progressText({ state: "succeeded", percent: 100, bytes: 1, total: 1, rate: 0, files: 20, of: 20 }),
      "done",
    );
  });
});
