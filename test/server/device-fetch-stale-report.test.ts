import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { SignedPullCommand } from "../../src/protocol/command-signature.ts";
import { BridgeClient } from "../../src/server/bridge/bridge-client.ts";
import { buildEsp32AppImage, esp32Identity } from "../support/esp32-image.ts";
import { Esp32Device } from "./support/esp32-device.ts";
import { jobEnd, kinds } from "./support/job-suite.ts";
import { startTestServer, type TestServer, tempDir } from "./support/test-server.ts";
import { eventually } from "./support/wait.ts";

const A = buildEsp32AppImage({ size: 200_000, seed: 91, banner: "v1.26.0 on 2025-08-09" });
const B = buildEsp32AppImage({ size: 300_000, seed: 92, banner: "v1.27.0 on 2025-12-09" });
const A_ID = esp32Identity({ seed: 91 }).slice(0, 32);
const B_ID = esp32Identity({ seed: 92 }).slice(0, 32);
/**
 * Between the server's tries: the device's own resume at the start of it
 * lands well before the next command (by more than the 1 s the server
 * allows for clocks that differ between instances).
 */
const RETRY_MS = 2500;
/** Answer and stall windows that a loaded machine cannot run out (these tests end tries by reports). */
const PATIENT_MS = 15_000;

/** An ESP32 (contract v3) running A, known to the server. */
async function esp32(s: TestServer, id: string): Promise<Esp32Device> {
  const dev = await Esp32Device.connect(
    s.url,
    id,
    await s.provision(id),
    A_ID,
    s.server.commandKey.publicKey,
  );
  await dev.state();
  await eventually(async () => (await s.server.storage.devices.get(id))?.state?.v === 3, `${id} known`);
  return dev;
}

async function stepCount(s: TestServer, job: string, kind: string): Promise<number> {
  return (await s.server.storage.jobs.steps(job)).filter((step) => step.kind === kind).length;
}

// A device that fetches its release goes on by itself between the server's tries (device/mpota_pull.py
// resumes at each boot, wake or back-off) and reports under the same job. The server keeps a report
// that comes while it follows no fetch of that device, for the fetch it follows next.
describe("a device's report from before the try's command does not decide the try", () => {
  const t = tempDir("mpota-stale-report-");
  let s: TestServer;
  let bridge: BridgeClient;

  before(async () => {
    s = await startTestServer(t.dir, {
      http: { host: "127.0.0.1", port: 0 },
      pullStallMs: PATIENT_MS,
      timings: {
        retryBaseMs: RETRY_MS,
        retryMaxMs: RETRY_MS,
        firstAnswerMs: PATIENT_MS,
        repushAnswerMs: PATIENT_MS,
      },
    });
    await s.server.library.add({ bytes: A, name: "board", version: "1.0" });
    await s.server.library.add({ bytes: B, name: "board", version: "2.0" });
    bridge = await BridgeClient.connect({ connection: { url: s.url } });
  });
  after(async () => {
    await bridge.close();
    await s.stop();
    t.remove();
  });

  it("a battery low the device sent resuming on its own, charged since: the next try goes on and the job succeeds", async () => {
    const dev = await esp32(s, "esp-b");
    const job = await bridge.request("update", { device: "esp-b", firmware: "board@2.0" });
    const first = await dev.pullCommand();
    await dev.report({ job: job.id, ready: true, pull: true });
    await eventually(async () => (await s.server.storage.jobs.get(job.id))?.phase === "pushing", "following");
    // Try 1: the battery runs down mid-fetch; the device keeps what it wrote.
    await dev.fetch(first, { stopAfter: 100_000 });
    await dev.report({ job: job.id, error: "battery low" });
    // That ended the try. Before the server asks again, the device resumes on its own and finds its
    // battery still low (it reports right away here, so the server's backoff separates the report
    // from the next command however slow the machine is).
    await dev.report({ job: job.id, error: "battery low" });
    await eventually(async () => (await stepCount(s, job.id, "retry")) === 1, "try 1 failed");
    // Then it is charged. It takes the server's next command and acks; its first report comes only
    // after it has hashed the blocks it wrote, so the server follows before it hears from it.
    const second = (await dev.mqtt.command(
      (c) => c !== "" && (c as unknown as SignedPullCommand).seq > first.seq,
      RETRY_MS + 10_000,
    )) as unknown as SignedPullCommand;
    await dev.report({ job: job.id, ready: true, pull: true });
    // The server sets the kept report aside when it starts following try 2. The device fetches only
    // then: a progress report that came before would replace the kept one (the device's latest word
    // is kept, and this one is of try 2), and nothing would be set aside.
    await eventually(async () => (await stepCount(s, job.id, "stale-report")) === 1, "try 2 follows");
    assert.equal(await stepCount(s, job.id, "push-started"), 2);
    const resumed = await dev.fetch(second);
    assert.equal(resumed.contentRange, `bytes 100000-299999/${B.length}`);
    assert.equal(await dev.finish(second), true);
    dev.fw = B_ID;
    await dev.state({ run: "ota_1" });
    const end = await jobEnd(bridge, job.id);
    assert.equal(end.state, "succeeded", end.error ?? "");
    // One try failed (the battery, genuinely); the second went on. The old report is in the log, set aside.
    assert.equal(end.attempt, 2);
    const failed = end.steps.filter((x) => x.kind === "push-failed").map((x) => x.message);
    assert.deepEqual(
      kinds(end),
      [
        "created",
        "command",
        "ack",
        "push-started",
        "push-failed",
        "retry",
        "command",
        "ack",
        "push-started",
        "stale-report",
        "push-done",
        "succeeded",
      ],
      failed.join("\n"),
    );
    assert.match(
      end.steps.find((x) => x.kind === "stale-report")?.message ?? "",
      /^Device esp-b's report "battery low" came \d+\.\d s before this try's command: it is from an earlier try, or from the device going on by itself between tries, and does not count for this one\.$/,
    );
    await dev.close();
  });

  it("a report that comes after the command and before the server follows counts for the try", async () => {
    const dev = await esp32(s, "esp-c");
    const job = await bridge.request("update", { device: "esp-c", firmware: "board@2.0" });
    await dev.pullCommand();
    // The device acks, then reports; the report, on a subscription of its own, often reaches the
    // server's fetch follower before the ack is handled. Sent first here, it surely does: it is kept
    // until the job follows, and then ends the try (a genuine battery low on this try).
    await dev.report({ job: job.id, error: "battery low" });
    await dev.report({ job: job.id, ready: true, pull: true });
    await eventually(async () => (await stepCount(s, job.id, "push-failed")) === 1, "the try failed");
    const steps = await s.server.storage.jobs.steps(job.id);
    assert.match(
      steps.find((x) => x.kind === "push-failed")?.message ?? "",
      /^Device esp-c stopped the pull: battery low \(below the MIN_VBAT in its config\)\. Charge it or put it on power\./,
    );
    assert.equal(await stepCount(s, job.id, "stale-report"), 0);
    await dev.close();
  });
});
