import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { connectAsync } from "mqtt";
import { defaultAppKeyPath, loadAppKey } from "../../src/apps/app-key.ts";
import type { SignedAppManifest } from "../../src/apps/app-manifest.ts";
import { devicesTable, deviceText } from "../../src/cli/devices.ts";
import { MemoryIo } from "../../src/cli/io.ts";
import { jobText, progressText } from "../../src/cli/jobs.ts";
import { rolloutText } from "../../src/cli/rollout-text.ts";
import { updateCommand } from "../../src/cli/update.ts";
import { type SignedAppCommand, signedBytes, verifyCommand } from "../../src/protocol/command-signature.ts";
import type { JobProgressMessage } from "../../src/server/api/api.ts";
import { BridgeClient } from "../../src/server/bridge/bridge-client.ts";
import { addAppRelease, sha256Hex } from "../support/app-releases.ts";
import { jobEnd, kinds } from "./support/job-suite.ts";
import { MqttDevice } from "./support/mqtt-device.ts";
import { startTestServer, type TestServer, tempDir } from "./support/test-server.ts";
import { eventually } from "./support/wait.ts";

// The app-pull delivery and the job core against a board the test plays by
// contract v3: the signed `app` command, the device route for the manifest
// and the files, the reports on `ack`, the state's `app` that ends the job,
// and its `rb` after the loader went back. The real board (MicroPython and
// its loader) runs in test/apps and test/e2e; here every step is the test's,
// so nothing waits on a timer.

const sha = sha256Hex;

/** A 20-file app; `changed` alters lib/mod07.py. */
function appFiles(changed = false): Map<string, Buffer> {
  const files = new Map<string, Buffer>();
  for (let i = 0; i < 20; i++) {
    const path = i === 0 ? "main.py" : `lib/mod${String(i).padStart(2, "0")}.py`;
    files.set(path, Buffer.from(`# ${path}\n${"x = 1\n".repeat(400)}${changed && i === 7 ? "y = 2\n" : ""}`));
  }
  return files;
}

interface Board {
  mqtt: MqttDevice;
  login: { username: string; password: string };
  app: Record<string, unknown>;
}

describe("app pull (contract v3): a scripted board against the real server", () => {
  const t = tempDir("mpota-app-pull-");
  let s: TestServer;
  let bridge: BridgeClient;
  const v1 = appFiles();
  const v2 = appFiles(true);
  let m1: SignedAppManifest;
  let m2: SignedAppManifest;
  const boards: Board[] = [];

  before(async () => {
    s = await startTestServer(t.dir, { http: { host: "127.0.0.1", port: 0 }, pullStallMs: 400 });
    bridge = await BridgeClient.connect({ connection: { url: s.url } });
    const key = loadAppKey(defaultAppKeyPath(t.dir), { create: true });
    m1 = await addAppRelease(bridge, key, "thermostat", "1.4.0", v1);
    m2 = await addAppRelease(bridge, key, "thermostat", "1.4.1", v2);
  });
  after(async () => {
    for (const b of boards) await b.mqtt.close();
    await bridge.close();
    await s.stop();
    t.remove();
  });

  const running1 = () => ({
    name: "thermostat",
    ver: "1.4.0",
    id: m1.id,
    board: "esp32",
    mpy: 6,
    free: 500_000,
  });

  async function board(id: string, app: Record<string, unknown> = running1()): Promise<Board> {
    const login = await s.provision(id);
    const b: Board = { mqtt: await MqttDevice.connect(s.url, id), login, app };
    boards.push(b);
    await state(b);
    await eventually(
      async () => (await s.server.storage.devices.get(id))?.state?.app !== undefined,
      `${id} known`,
    );
    return b;
  }

  const state = (b: Board, app: Record<string, unknown> = b.app) =>
    b.mqtt.publish(
      "state",
      JSON.stringify({ v: 3, fw: "c".repeat(32), ip: "127.0.0.1", seq: 0, chip: "esp32", app }),
    );

  async function appCommand(b: Board): Promise<SignedAppCommand> {
    const c = await b.mqtt.command((x) => x !== "" && (x as { op: string }).op === "app");
    verifyCommand(c, s.server.commandKey.publicKey);
    return c as unknown as SignedAppCommand;
  }

  const get = (b: Board, url: string) =>
    fetch(url, {
      headers: {
        authorization: `Basic ${Buffer.from(`${b.login.username}:${b.login.password}`).toString("base64")}`,
      },
    });

  const phase = (job: string, wanted: string) =>
    eventually(async () => (await s.server.storage.jobs.get(job))?.phase === wanted, `job ${wanted}`);

  it("updates an app: signed app command, the board fetches the manifest and the changed file, reports, switches -> succeeded", async () => {
    const b = await board("app-1");
    const watcher = await connectAsync(s.url, { reconnectPeriod: 0 });
    const progress: JobProgressMessage[] = [];
    watcher.on("message", (_topic, payload) => {
      if (payload.length > 0) progress.push(JSON.parse(payload.toString()) as JobProgressMessage);
    });
    const job = await bridge.request("update", { device: "app-1", firmware: "thermostat@1.4.1" });
    assert.equal(job.firmware.id, m2.id.slice(0, 32));
    assert.deepEqual([job.delivery, job.fetchedByDevice], ["app-pull", true]);
    await watcher.subscribeAsync(`mpota/bridge/jobs/${job.id}`, { qos: 1 });
    const cmd = await appCommand(b);
    const url = `${s.server.deviceUrl}/device/app/${m2.id}`;
    assert.deepEqual(
      { v: cmd.v, op: cmd.op, dev: cmd.dev, job: cmd.job, name: cmd.name, ver: cmd.ver, down: cmd.down },
      { v: 3, op: "app", dev: "app-1", job: job.id, name: "thermostat", ver: "1.4.1", down: 0 },
    );
    assert.deepEqual([cmd.sha, cmd.size, cmd.url], [m2.id, m2.bytes.length, url]);
    assert.equal(
      signedBytes(cmd).toString(),
      `mpota-cmd/3\napp-1\n${cmd.seq}\napp\n${job.id}\nthermostat\n1.4.1\n0\n${m2.id}\n${m2.bytes.length}\n${url}`,
    );
    await b.mqtt.ack({ job: job.id, ready: true, pull: true });
    await phase(job.id, "pushing");
    // `mpota devices`: the board's job is a release it fetches, so its JOB column says so.
    const listed = (await bridge.request("devices", {})).filter((d) => d.id === "app-1");
    assert.match(devicesTable(listed, Date.now(), 200), new RegExp(` ${job.id} fetching\n$`));
    const manifest = await get(b, `${cmd.url}/manifest`);
    assert.equal(manifest.status, 200);
    assert.ok(Buffer.from(await manifest.arrayBuffer()).equals(m2.bytes));
    // The board holds 19 of the 20 files already: it fetches lib/mod07.py alone.
    const changed = v2.get("lib/mod07.py") as Buffer;
    const file = await get(b, `${cmd.url}/file/${sha(changed)}`);
    assert.equal(file.status, 200);
    assert.ok(Buffer.from(await file.arrayBuffer()).equals(changed));
    const total = m2.total;
    await b.mqtt.ack({ job: job.id, got: Math.floor(total / 2), total, files: 10, of: 20 });
    await eventually(
      async () => progress.some((p) => p.files === 10 && p.of === 20),
      "files on the progress topic",
    );
    // What `mpota update --follow` prints of them: before the board's first report only the
    // manifest's size is known (no total claimed), then the files staged.
    const fetching = progress.filter((p) => p.state === "pushing");
    assert.deepEqual([fetching[0]?.bytes, fetching[0]?.total], [0, m2.bytes.length]);
    assert.equal(progressText(fetching[0] as JobProgressMessage, job), "no report from the board yet");
    assert.equal(
      progressText(progress.find((p) => p.files === 10) as JobProgressMessage, job),
      `10 of 20 files staged (${(Math.floor(total / 2) / 1024).toFixed(1)} of ${(total / 1024).toFixed(1)} KiB)`,
    );
    await b.mqtt.ack({ job: job.id, got: total, total, files: 20, of: 20, done: true });
    await phase(job.id, "verifying");
    // The new app runs and the agent reports it.
    b.app = { ...running1(), ver: "1.4.1", id: m2.id };
    await state(b);
    const end = await jobEnd(bridge, job.id);
    await watcher.endAsync();
    assert.equal(end.state, "succeeded", end.error ?? "");
    assert.deepEqual(kinds(end), ["created", "command", "ack", "push-started", "push-done", "succeeded"]);
    // `mpota jobs show`: the release's files and bytes (not the manifest's size), no push address.
    assert.deepEqual(end.app, { files: 20, bytes: total });
    const shown = jobText(end);
    assert.match(
      shown,
      new RegExp(
        `^Job ${job.id}: app-1 to app thermostat 1\\.4\\.1 \\(${m2.id.slice(0, 32)}, 20 files, ${(total / 1024).toFixed(1)} KiB, ${total.toLocaleString("en-US")} bytes\\)\n`,
      ),
    );
    assert.doesNotMatch(shown, /address/);
    // `mpota devices show`: the device's job names the app it installed.
    const device = await bridge.request("device", { id: "app-1" });
    assert.deepEqual(
      device.jobs.map((j) => [j.id, j.delivery, j.fetchedByDevice]),
      [[job.id, "app-pull", true]],
    );
    assert.match(
      deviceText(device),
      new RegExp(`\n {2}${job.id} {2}succeeded {2}app thermostat 1\\.4\\.1 {2}`),
    );
    assert.equal(
      end.steps.find((x) => x.kind === "ack")?.message,
      "Device is ready; it fetches the release itself (from 127.0.0.1).",
    );
    assert.match(
      end.steps.find((x) => x.kind === "push-done")?.message ?? "",
      new RegExp(
        `^Board app-1 staged thermostat 1\\.4\\.1 \\(20 files, ${total} bytes\\) in \\d+\\.\\d s, each file checked by its SHA-256, and switched to it\\. Waiting for the device to boot it and report\\.$`,
      ),
    );
    assert.equal(
      end.steps.find((x) => x.kind === "succeeded")?.message,
      `Device reports thermostat 1.4.1 (${m2.id.slice(0, 32)}): updated.`,
    );
    // Its job is over: the route no longer gives it the release.
    assert.equal((await get(b, `${cmd.url}/manifest`)).status, 403);
    // Already there: a second request says so.
    await assert.rejects(bridge.request("update", { device: "app-1", firmware: "thermostat@1.4.1" }), {
      message: `Device app-1 already runs thermostat 1.4.1 (${m2.id.slice(0, 32)}); nothing to do.`,
    });
  });

  it("an error the board marks final fails the job at once; the running app is the old one", async () => {
    const b = await board("app-2");
    const job = await bridge.request("update", { device: "app-2", firmware: "thermostat@1.4.1" });
    await appCommand(b);
    await b.mqtt.ack({ job: job.id, ready: true, pull: true });
    await phase(job.id, "pushing");
    await b.mqtt.ack({
      job: job.id,
      error: "lib/mod07.py: its SHA-256 differs from the manifest's; the file was discarded",
      final: true,
    });
    const end = await jobEnd(bridge, job.id);
    assert.equal(end.state, "failed");
    assert.equal(end.attempt, 1);
    assert.match(
      end.error ?? "",
      /^Device app-2 reports: lib\/mod07\.py: its SHA-256 differs from the manifest's; the file was discarded Gave up after 1 try\./,
    );
  });

  it("an error that is not final is tried again", async () => {
    const b = await board("app-3");
    const job = await bridge.request("update", { device: "app-3", firmware: "thermostat@1.4.1" });
    await appCommand(b);
    await b.mqtt.ack({ job: job.id, ready: true, pull: true });
    await phase(job.id, "pushing");
    await b.mqtt.ack({ job: job.id, error: "OSError: [Errno 113] EHOSTUNREACH", final: false });
    await phase(job.id, "retrying");
    const current = await s.server.storage.jobs.get(job.id);
    assert.match(current?.error ?? "", /^Device app-3 reports: OSError: \[Errno 113\] EHOSTUNREACH$/);
    await bridge.request("job/cancel", { id: job.id }).catch(() => undefined);
  });

  it("a board that comes back without its app loader before the next try fails the job saying what to copy", async () => {
    const b = await board("app-10");
    const job = await bridge.request("update", { device: "app-10", firmware: "thermostat@1.4.1" });
    await appCommand(b);
    await b.mqtt.ack({ job: job.id, ready: true, pull: true });
    await phase(job.id, "pushing");
    await b.mqtt.ack({ job: job.id, error: "OSError: [Errno 113] EHOSTUNREACH", final: false });
    await phase(job.id, "retrying");
    // Its owner put a main.py without the loader on it: the state it reports has no app.
    await b.mqtt.publish(
      "state",
      JSON.stringify({ v: 3, fw: "c".repeat(32), ip: "127.0.0.1", seq: 0, chip: "esp32" }),
    );
    const end = await jobEnd(bridge, job.id);
    assert.equal(end.state, "failed");
    assert.equal(
      end.error,
      'Device app-10 reports contract v3 without its app (the state\'s "app"): mpota\'s app loader is no longer on the board, so it cannot fetch an app release. Copy the app modules and examples/app_main.py as main.py to it beside the agent (device/README.md, "Apps") and restart it. Gave up after 1 try. When the cause is fixed, run `mpota update app-10 thermostat@1.4.1` again.',
    );
  });

  it("a battery low mid-fetch says to charge the board, and that it keeps what it staged", async () => {
    const b = await board("app-low");
    const job = await bridge.request("update", { device: "app-low", firmware: "thermostat@1.4.1" });
    await appCommand(b);
    await b.mqtt.ack({ job: job.id, ready: true, pull: true });
    await phase(job.id, "pushing");
    // As device/mpota_appjob.py below MIN_VBAT between two files.
    await b.mqtt.ack({ job: job.id, got: 4_800, total: 48_000, files: 2, of: 20 });
    await b.mqtt.ack({ job: job.id, error: "battery low", final: false });
    await eventually(
      async () => (await s.server.storage.jobs.steps(job.id)).some((x) => x.kind === "retry"),
      "the try failed",
    );
    const shown = jobText(await bridge.request("job", { id: job.id }));
    assert.match(
      shown,
      /\n {2}last error {2}Device app-low stopped the fetch at 4800 of 48000 bytes \(2 of 20 files\): battery low \(below the MIN_VBAT in its config\)\. Charge it or put it on power\. The board keeps the files it staged and checked, and fetches the rest on the next try\. Each stop for the battery uses one of the job's tries\.\n/,
    );
    await bridge.request("job/cancel", { id: job.id }).catch(() => undefined);
  });

  it("a state whose app reports the rollback of the job fails it with the loader's reason", async () => {
    const b = await board("app-4");
    const job = await bridge.request("update", { device: "app-4", firmware: "thermostat@1.4.1" });
    await appCommand(b);
    await b.mqtt.ack({ job: job.id, ready: true, pull: true });
    await phase(job.id, "pushing");
    await b.mqtt.ack({ job: job.id, got: m2.total, total: m2.total, files: 20, of: 20, done: true });
    await phase(job.id, "verifying");
    const why =
      "rolled back thermostat 1.4.1: File \"/app/b/main.py\", line 3, in <module>: ImportError: no module named 'sensor'";
    await state(b, { ...running1(), rb: { job: job.id, why } });
    const end = await jobEnd(bridge, job.id);
    assert.equal(end.state, "failed");
    assert.equal(end.attempt, 1);
    assert.ok(
      (end.error ?? "").startsWith(`${why}; it runs thermostat 1.4.0 again. Fix the app`),
      end.error ?? "",
    );
    assert.deepEqual(kinds(end).slice(-2), ["rolled-back", "failed"]);
  });

  it("a board that stops reporting mid-fetch is stopped and followed again; it keeps what it staged", async () => {
    const b = await board("app-5");
    const job = await bridge.request("update", { device: "app-5", firmware: "thermostat@1.4.1" });
    await appCommand(b);
    await b.mqtt.ack({ job: job.id, ready: true, pull: true });
    await phase(job.id, "pushing");
    await b.mqtt.ack({ job: job.id, got: 1000, total: m2.total, files: 3, of: 20 });
    await eventually(
      async () =>
        (await s.server.storage.jobs.steps(job.id)).filter((x) => x.kind === "push-started").length === 2,
      "a second try",
    );
    const stopped = (await s.server.storage.jobs.steps(job.id)).find((x) => x.kind === "push-failed");
    assert.match(
      stopped?.message ?? "",
      new RegExp(
        `^The fetch of http://127\\.0\\.0\\.1:\\d+/device/app/${m2.id} broke off at 1000 of ${m2.total} bytes \\(3 of 20 files\\): no report from device app-5 for 0\\.4 s\\. The board keeps the files it staged and checked, and fetches the rest on the next try\\.$`,
      ),
    );
    // The board's state of the old app while the fetch is broken off is no failed try.
    await state(b);
    await b.mqtt.ack({ job: job.id, got: m2.total, total: m2.total, files: 20, of: 20, done: true });
    await phase(job.id, "verifying");
    b.app = { ...running1(), ver: "1.4.1", id: m2.id };
    await state(b);
    const end = await jobEnd(bridge, job.id);
    assert.equal(end.state, "succeeded", end.error ?? "");
    assert.ok(!kinds(end).includes("wrong-firmware"), kinds(end).join(" "));
  });

  it("refuses, before anything is sent, a board without an app agent, another board kind, too little room", async () => {
    await board("app-6", { board: "rp2", mpy: 6, free: 500_000 });
    await assert.rejects(bridge.request("update", { device: "app-6", firmware: "thermostat@1.4.1" }), {
      message:
        "thermostat 1.4.1 for app-6: thermostat 1.4.1 is for esp32, esp8266; the device is a rp2 board. Add the release again with --board rp2 if its files run there.",
    });
    await board("app-7", { board: "esp32", mpy: 6, free: 1000 });
    await assert.rejects(bridge.request("update", { device: "app-7", firmware: "thermostat@1.4.1" }), {
      message: `thermostat 1.4.1 for app-7: thermostat 1.4.1 is ${m2.total} bytes; the device reports 1000 bytes free for a new app. Free space on the device, or make the app smaller.`,
    });
    const login = await s.provision("app-8");
    const v2board: Board = { mqtt: await MqttDevice.connect(s.url, "app-8"), login, app: {} };
    boards.push(v2board);
    await v2board.mqtt.publish(
      "state",
      JSON.stringify({ v: 2, fw: "c".repeat(32), ip: "127.0.0.1", seq: 0 }),
    );
    await eventually(async () => (await s.server.storage.devices.get("app-8"))?.state !== undefined, "app-8");
    await assert.rejects(bridge.request("update", { device: "app-8", firmware: "thermostat@1.4.1" }), {
      message:
        'thermostat 1.4.1 for app-8: the device reports contract v2 without its app (the state\'s "app"): mpota\'s app loader is not on the board, so it cannot fetch an app release. Copy the app modules and examples/app_main.py as main.py to it beside the agent (device/README.md, "Apps") and restart it.',
    });
  });

  it("a downgrade of the app is refused unless allowed, and the allowed one is signed with down 1", async () => {
    const b = await board("app-9", { ...running1(), ver: "1.4.1", id: m2.id });
    await assert.rejects(
      bridge.request("update", { device: "app-9", firmware: "thermostat@1.4.0" }),
      /app-9 runs thermostat 1\.4\.1, newer than 1\.4\.0/,
    );
    const job = await bridge.request("update", {
      device: "app-9",
      firmware: "thermostat@1.4.0",
      allowDowngrade: true,
    });
    const cmd = await appCommand(b);
    assert.deepEqual([cmd.job, cmd.ver, cmd.down], [job.id, "1.4.0", 1]);
    await bridge.request("job/cancel", { id: job.id }).catch(() => undefined);
  });

  it("rolls an app out by tag: boards that cannot take it are left out, the rest are updated and the rollout completes", async () => {
    const ids = ["roll-1", "roll-2", "roll-3"];
    const fleet = [];
    for (const id of ids) fleet.push(await board(id));
    await board("roll-rp2", { board: "rp2", mpy: 6, free: 500_000 });
    for (const id of [...ids, "roll-rp2"]) await bridge.request("device/tags", { id, tags: ["lab"] });
    // Each board answers its command as the agent does: ready, done, then the new app's state.
    for (const b of fleet) {
      void appCommand(b).then(async (cmd) => {
        await b.mqtt.ack({ job: cmd.job, ready: true, pull: true });
        await eventually(
          async () => (await s.server.storage.jobs.get(cmd.job))?.phase === "pushing",
          "pushing",
        );
        await b.mqtt.ack({ job: cmd.job, got: m2.total, total: m2.total, files: 20, of: 20, done: true });
        await eventually(
          async () => (await s.server.storage.jobs.get(cmd.job))?.phase === "verifying",
          "verifying",
        );
        b.app = { ...running1(), ver: "1.4.1", id: m2.id };
        await state(b);
      });
    }
    const created = await bridge.request("rollout/create", {
      firmware: "thermostat@1.4.1",
      tag: "lab",
      groups: "1,rest",
      timeout: 60,
    });
    const end = await eventually(
      async () => {
        const r = await bridge.request("rollout/show", { id: created.id, events: 100 });
        return r.state === "running" || r.state === "scheduled" ? undefined : r;
      },
      "rollout ended",
      30_000,
    );
    assert.equal(end.state, "completed", end.reason ?? "");
    assert.equal(end.reason, "All 3 devices verified on thermostat 1.4.1.");
    // `mpota rollout show` names the app, and says its boards fetch it.
    assert.deepEqual([created.delivery, end.delivery, end.fetchedByDevice], ["app-pull", "app-pull", true]);
    assert.match(rolloutText(end), new RegExp(`^Rollout ${created.id}: app thermostat 1\\.4\\.1 \\(`));
    assert.match(
      rolloutText(end),
      /\n {2}GROUP +SIZE +SUCCESS +ERRORS +STATE +PENDING +SCHEDULED +FETCHING +VERIFYING/,
    );
    assert.deepEqual(end.devices.map((d) => d.device).sort(), ids);
    const createdEvent = end.events.find((e) => e.kind === "created")?.message ?? "";
    assert.match(
      createdEvent,
      /1 device left out that cannot take thermostat 1\.4\.1 \(roll-rp2; first reason: /,
    );
    // A list naming a board that cannot take it is refused with the reason.
    await assert.rejects(
      bridge.request("rollout/create", { firmware: "thermostat@1.4.1", devices: ["roll-rp2"], timeout: 60 }),
      {
        message:
          "Refused: thermostat 1.4.1 for roll-rp2: thermostat 1.4.1 is for esp32, esp8266; the device is a rp2 board. Add the release again with --board rp2 if its files run there. Leave it out of the list.",
      },
    );
  });
  it("`mpota update` says it starts an app update", async () => {
    await board("app-words");
    const io = new MemoryIo();
    const options = { mqtt: s.brokerUrl, base: "mpota", timeout: 5, data: t.dir };
    const job = await updateCommand("app-words", "thermostat@1.4.1", options, io);
    assert.equal(
      io.stdout.split("\n")[0],
      `Job ${job.id}: update app-words to app thermostat 1.4.1 (${m2.id.slice(0, 32)}).`,
    );
    await bridge.request("job/cancel", { id: job.id });
  });
});
