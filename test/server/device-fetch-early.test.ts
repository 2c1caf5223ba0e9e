import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { VirtualClock } from "../../src/net/clock.ts";
import type { DeliveryOutcome } from "../../src/server/deliveries/delivery.ts";
import { DeviceFetches, type FetchFollowing } from "../../src/server/deliveries/device-fetch.ts";
import type { CheckedArtifact } from "../../src/server/releases/release-kind.ts";
import type { JobRecord } from "../../src/server/storage/storage.ts";

const following: FetchFollowing = {
  url: "http://127.0.0.1:8080/esp32/x.bin",
  op: "pull",
  noun: "pull",
  total: 300_000,
  isFinal: (report) => report.final === true,
  summary: () => "fetched",
  resumes: "The device keeps what it wrote and resumes from there on the next try.",
  silentHint: "Check its WiFi.",
};

const job = (ackedAt: number) => ({ id: "j-1", deviceId: "esp-7", ackedAt }) as JobRecord;

/** The outcome of following the job, or "following" when it is still open after `ms` of virtual time. */
async function followFor(fetches: DeviceFetches, clock: VirtualClock, ackedAt: number, ms: number) {
  const abort = new AbortController();
  let outcome: DeliveryOutcome | "following" = "following";
  const done = fetches
    .follow(
      {
        job: job(ackedAt),
        artifact: {} as CheckedArtifact,
        waitMs: 30_000,
        signal: abort.signal,
        onProgress: () => undefined,
      },
      following,
    )
    .then((o) => {
      outcome = o;
    });
  await clock.advance(ms);
  return { outcome: () => outcome, abort: () => abort.abort(), done };
}

// A device reports each try on its ack topic; a report that came before the delivery followed is
// kept for it. Only one of this try (handled since its ack) may end it.
describe("reports kept until a fetch's delivery follows", () => {
  it("a report handled since this try's ack is the try's: its battery low ends it at once", async () => {
    const clock = new VirtualClock(10_000);
    const fetches = new DeviceFetches(clock);
    fetches.report("esp-7", { job: "j-1", error: "battery low" });
    const f = await followFor(fetches, clock, 9_000, 10);
    const outcome = f.outcome();
    assert.ok(outcome !== "following" && outcome.kind === "failed", JSON.stringify(outcome));
    assert.match(outcome.reason, /^Device esp-7 stopped the pull: battery low/);
  });

  it("a report from before this try's ack (an earlier try's battery low) does not end it", async () => {
    const clock = new VirtualClock(10_000);
    const fetches = new DeviceFetches(clock);
    // The device resumed on its own between the server's tries and found its battery still low.
    fetches.report("esp-7", { job: "j-1", error: "battery low" });
    await clock.advance(5_000);
    // Charged since: it takes the next command (acked at 15 s) and reports progress.
    const f = await followFor(fetches, clock, 15_000, 10);
    assert.equal(f.outcome(), "following", "the old report was not replayed");
    fetches.report("esp-7", { job: "j-1", got: 65_536, total: 300_000, done: false });
    fetches.report("esp-7", { job: "j-1", got: 300_000, total: 300_000, done: true });
    await f.done;
    const outcome = f.outcome();
    assert.ok(outcome !== "following" && outcome.kind === "delivered", JSON.stringify(outcome));
  });
});
