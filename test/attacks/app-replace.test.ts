import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Command, CommanderError } from "commander";
import { defaultAppKeyPath, loadAppKey } from "../../src/apps/app-key.ts";
import type { SignedAppManifest } from "../../src/apps/app-manifest.ts";
import { MemoryIo } from "../../src/cli/io.ts";
import { jobText } from "../../src/cli/jobs.ts";
import { createRequest } from "../../src/cli/rollout-create.ts";
import { rolloutText } from "../../src/cli/rollout-text.ts";
import { registerUpdateCommand } from "../../src/cli/update.ts";
import { MpotaError } from "../../src/errors.ts";
import { type SignedAppCommand, verifyCommand } from "../../src/protocol/command-signature.ts";
import { RequestError } from "../../src/server/base/request-error.ts";
import { BridgeClient } from "../../src/server/bridge/bridge-client.ts";
import { call, type HttpTestServer, startHttpServer } from "../http/support.ts";
import { jobEnd, kinds } from "../server/support/job-suite.ts";
import { MqttDevice } from "../server/support/mqtt-device.ts";
import { tempDir } from "../server/support/test-server.ts";
import { eventually } from "../server/support/wait.ts";
import { addAppRelease } from "../support/app-releases.ts";

// An app release of another name than the board's app would wipe that app for another one. Every
// path that updates a board refuses it, naming both apps and the word to pass, before any job or
// command exists; with the word (--replace-app, replaceApp: true) the board is updated, its
// command signed with down 1 (the agent orders versions without looking at names). A board with no
// app yet needs no word; a rollout leaves boards of another app out unless it has the word. Real
// server and Aedes broker; the boards are played by the test over contract v3 (test/server/app-pull).

/** Two apps: lights' version is lower than thermostat's, as it may well be for another app. */
function appFiles(app: string): Map<string, Buffer> {
  return new Map([
    ["main.py", Buffer.from(`# ${app}\nimport lib.core\n`)],
    ["lib/core.py", Buffer.from(`# ${app} core\n${"x = 1\n".repeat(50)}`)],
  ]);
}

const refusal = (device: string) =>
  `Refusing to update ${device} to lights 1.0: ${device} runs the app thermostat 1.4.0, which the app lights, of another name, would replace. If that is what you want, pass --replace-app (replaceApp: true); to update the installed app, pick a release of thermostat.`;

/** Runs `mpota update ARGS` as bin/mpota does: output captured, the error's message and exit code. */
async function mpotaUpdate(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const io = new MemoryIo();
  const program = new Command("mpota").exitOverride();
  program.configureOutput({ writeOut: (s) => io.out(s), writeErr: (s) => io.err(s) });
  registerUpdateCommand(program, io);
  for (const sub of program.commands) {
    sub.exitOverride().configureOutput({ writeOut: (s) => io.out(s), writeErr: (s) => io.err(s) });
  }
  try {
    await program.parseAsync(["node", "mpota", "update", ...args]);
    return { code: 0, stdout: io.stdout, stderr: io.stderrText };
  } catch (error) {
    if (error instanceof CommanderError) return { code: 2, stdout: io.stdout, stderr: io.stderrText };
    if (!(error instanceof MpotaError)) throw error;
    io.err(`mpota: ${error.message}\n`);
    return { code: error.exitCode, stdout: io.stdout, stderr: io.stderrText };
  }
}

interface Board {
  id: string;
  mqtt: MqttDevice;
}

describe("an app of another name replaces the board's app only on request", () => {
  const t = tempDir("mpota-attack-app-replace-");
  let s: HttpTestServer;
  let bridge: BridgeClient;
  let thermostat: SignedAppManifest;
  let lights: SignedAppManifest;
  const boards: Board[] = [];

  const room = { board: "esp32", mpy: 6, free: 500_000 };
  const runsThermostat = () => ({ name: "thermostat", ver: "1.4.0", id: thermostat.id, ...room });
  const runsLights = () => ({ name: "lights", ver: "1.0", id: lights.id, ...room });

  const state = (b: Board, app: Record<string, unknown>) =>
    b.mqtt.publish(
      "state",
      JSON.stringify({ v: 3, fw: "c".repeat(32), ip: "127.0.0.1", seq: 0, chip: "esp32", app }),
    );

  async function board(id: string, app: Record<string, unknown>): Promise<Board> {
    await s.provision(id);
    const b: Board = { id, mqtt: await MqttDevice.connect(s.url, id) };
    boards.push(b);
    await state(b, app);
    await eventually(
      async () => (await s.server.storage.devices.get(id))?.state?.app !== undefined,
      `${id} known`,
    );
    return b;
  }

  async function appCommand(b: Board): Promise<SignedAppCommand> {
    const c = await b.mqtt.command((x) => x !== "" && (x as { op: string }).op === "app");
    verifyCommand(c, s.server.commandKey.publicKey);
    return c as unknown as SignedAppCommand;
  }

  /** Nothing happened to the board: no job, no command on its topic. */
  const untouched = async (b: Board) => {
    assert.deepEqual(await bridge.request("jobs", { device: b.id }), [], `no job for ${b.id}`);
    assert.deepEqual(
      b.mqtt.commands.filter((c) => c !== ""),
      [],
      `no command reached ${b.id}`,
    );
  };

  const phase = (job: string, wanted: string) =>
    eventually(async () => (await s.server.storage.jobs.get(job))?.phase === wanted, `job ${wanted}`);

  before(async () => {
    s = await startHttpServer(t.dir);
    bridge = await BridgeClient.connect({ connection: { url: s.url } });
    const key = loadAppKey(defaultAppKeyPath(t.dir), { create: true });
    thermostat = await addAppRelease(bridge, key, "thermostat", "1.4.0", appFiles("thermostat"));
    lights = await addAppRelease(bridge, key, "lights", "1.0", appFiles("lights"));
  });
  after(async () => {
    for (const b of boards) await b.mqtt.close();
    await bridge?.close();
    await s?.stop();
    t.remove();
  });

  test("bridge update: refused naming both apps and the word, no job, no command; with replaceApp the board takes lights (down 1)", async () => {
    const b = await board("b-bridge", runsThermostat());
    await assert.rejects(bridge.request("update", { device: b.id, firmware: "lights@1.0" }), {
      message: refusal(b.id),
    });
    await assert.rejects(
      bridge.request("update", {
        device: b.id,
        firmware: "lights@1.0",
        replaceApp: "yes" as unknown as boolean,
      }),
      (error: unknown) =>
        error instanceof RequestError && error.message === '"replaceApp" must be true or false.',
    );
    await untouched(b);

    const job = await bridge.request("update", { device: b.id, firmware: "lights@1.0", replaceApp: true });
    const cmd = await appCommand(b);
    // lights 1.0 is "older" than thermostat 1.4.0 by the agent's order: down 1, or the agent refuses.
    assert.deepEqual([cmd.job, cmd.name, cmd.ver, cmd.down], [job.id, "lights", "1.0", 1]);
    await b.mqtt.ack({ job: job.id, ready: true, pull: true });
    await phase(job.id, "pushing");
    await b.mqtt.ack({ job: job.id, got: lights.total, total: lights.total, files: 2, of: 2, done: true });
    await phase(job.id, "verifying");
    await state(b, runsLights());
    const end = await jobEnd(bridge, job.id);
    assert.equal(end.state, "succeeded", end.error ?? "");
    assert.deepEqual(kinds(end), ["created", "command", "ack", "push-started", "push-done", "succeeded"]);
    assert.equal(end.allowDowngrade, false);
    assert.deepEqual(end.replacedApp, { name: "thermostat", version: "1.4.0" });
    // `mpota jobs show` says so.
    assert.match(
      jobText(end),
      /\n {2}replaces {3}the app thermostat 1\.4\.0, on request \(--replace-app\)\n/,
    );
    assert.match(
      end.steps[0]?.message ?? "",
      /requested\. It replaces the app thermostat 1\.4\.0, on request \(replaceApp\)\.$/,
    );
    // Updating lights from here on is an update of the same app: no word needed.
    await assert.rejects(bridge.request("update", { device: b.id, firmware: "lights@1.0" }), {
      message: `Device ${b.id} already runs lights 1.0 (${lights.id.slice(0, 32)}); nothing to do.`,
    });
  });

  test("HTTP POST /api/v1/update: 400 with the same words; with replaceApp a job", async () => {
    const b = await board("b-http", runsThermostat());
    const refused = await call(s, "POST", "/api/v1/update", {
      json: { device: b.id, firmware: "lights@1.0" },
    });
    assert.equal(refused.status, 400);
    assert.equal(refused.body.error, refusal(b.id));
    // A client (the dashboard) tells this refusal from others by its cause, not by its words.
    assert.equal(refused.body.cause, "app-replace");
    await untouched(b);
    const allowed = await call(s, "POST", "/api/v1/update", {
      json: { device: b.id, firmware: "lights@1.0", replaceApp: true },
    });
    assert.equal(allowed.status, 201, JSON.stringify(allowed.body));
    const cmd = await appCommand(b);
    assert.deepEqual([cmd.job, cmd.name, cmd.down], [allowed.body.id, "lights", 1]);
    await bridge.request("job/cancel", { id: allowed.body.id });
  });

  test("mpota update: exit 22 with the message; --replace-app goes ahead", async () => {
    const b = await board("b-cli", runsThermostat());
    const args = ["--mqtt", s.brokerUrl, "--data", t.dir];
    const refused = await mpotaUpdate([b.id, "lights@1.0", ...args]);
    assert.equal(refused.code, 22);
    assert.equal(refused.stdout, "");
    assert.equal(refused.stderr, `mpota: ${refusal(b.id)}\n`);
    await untouched(b);
    const allowed = await mpotaUpdate([b.id, "lights@1.0", "--replace-app", ...args]);
    assert.equal(allowed.code, 0, allowed.stderr);
    assert.match(allowed.stdout, new RegExp(`^Job (j-[0-9a-f]+): update ${b.id} to app lights 1\\.0 \\(`));
    const id = /^Job (j-[0-9a-f]+)/.exec(allowed.stdout)?.[1] as string;
    assert.equal((await appCommand(b)).job, id);
    await bridge.request("job/cancel", { id });
  });

  test("a board with no app installed takes any app without the word (down 0)", async () => {
    const b = await board("b-fresh", room);
    const job = await bridge.request("update", { device: b.id, firmware: "lights@1.0" });
    const cmd = await appCommand(b);
    assert.deepEqual([cmd.job, cmd.name, cmd.down], [job.id, "lights", 0]);
    const detail = await bridge.request("job", { id: job.id });
    assert.doesNotMatch(detail.steps[0]?.message ?? "", /replace/);
    assert.equal(detail.replacedApp, undefined);
    await bridge.request("job/cancel", { id: job.id });
  });

  test("rollout: a board of another app is left out by tag, refused by name; with replaceApp it is updated", async () => {
    const fresh = await board("r-fresh", room);
    const thermo = await board("r-thermo", runsThermostat());
    for (const b of [fresh, thermo]) await bridge.request("device/tags", { id: b.id, tags: ["lights-lab"] });

    await assert.rejects(
      bridge.request("rollout/create", { firmware: "lights@1.0", devices: [thermo.id], timeout: 60 }),
      {
        message:
          "Refusing to roll out lights 1.0: it would replace the app of 1 board (r-thermo runs the app thermostat 1.4.0). If that is what you want, pass --replace-app (replaceApp: true), or leave this board out.",
      },
    );

    const leftOut = await bridge.request("rollout/create", {
      firmware: "lights@1.0",
      tag: "lights-lab",
      groups: "rest",
      timeout: 60,
    });
    const shown = await bridge.request("rollout/show", { id: leftOut.id, events: 10 });
    assert.deepEqual(
      shown.devices.map((d) => d.device),
      [fresh.id],
    );
    assert.equal(shown.policy.replaceApp, undefined);
    assert.match(
      shown.events.find((e) => e.kind === "created")?.message ?? "",
      /; 1 board running another app left out \(r-thermo runs the app thermostat 1\.4\.0; lights would replace it: pass --replace-app to include it\)\.$/,
    );
    await bridge.request("rollout/abort", { id: leftOut.id });
    await untouched(thermo);

    // The CLI's --replace-app is the request's replaceApp.
    const request = createRequest("lights@1.0", {
      tag: "lights-lab",
      groups: "rest",
      replaceApp: true,
      timeout: 10,
      data: t.dir,
      base: "mpota",
    });
    assert.equal(request.replaceApp, true);
    const replacing = await bridge.request("rollout/create", { ...request, timeout: 60 });
    assert.equal(replacing.policy.replaceApp, true);
    const detail = await bridge.request("rollout/show", { id: replacing.id, events: 10 });
    assert.deepEqual(detail.devices.map((d) => d.device).sort(), [fresh.id, thermo.id]);
    assert.match(rolloutText(detail), /, apps of another name replaced\n/);
    const cmd = await appCommand(thermo);
    assert.deepEqual([cmd.name, cmd.down], ["lights", 1]);
    const job = await bridge.request("job", { id: cmd.job });
    assert.match(
      job.steps[0]?.message ?? "",
      /It replaces the app thermostat 1\.4\.0, on request \(replaceApp\)\.$/,
    );
    await bridge.request("rollout/abort", { id: replacing.id });
  });

  test("rollout: a board whose app changed to another before its turn is skipped, with the reason", async () => {
    const first = await board("s-a-fresh", room);
    // An older lights the server never stored: the board names it.
    const later = await board("s-z-lights", { name: "lights", ver: "0.9", id: "e".repeat(64), ...room });
    for (const b of [first, later]) await bridge.request("device/tags", { id: b.id, tags: ["switch-lab"] });
    const created = await bridge.request("rollout/create", {
      firmware: "lights@1.0",
      tag: "switch-lab",
      groups: "1,rest",
      timeout: 60,
    });
    const listed = await bridge.request("rollout/show", { id: created.id, events: 10 });
    assert.deepEqual(
      listed.devices.map((d) => d.device),
      [first.id, later.id],
    );
    // Before its turn (the second group), someone put thermostat on it.
    await state(later, runsThermostat());
    await eventually(
      async () => (await s.server.storage.devices.get(later.id))?.state?.app?.name === "thermostat",
      "thermostat reported",
    );
    const cmd = await appCommand(first);
    await first.mqtt.ack({ job: cmd.job, ready: true, pull: true });
    await phase(cmd.job, "pushing");
    await first.mqtt.ack({
      job: cmd.job,
      got: lights.total,
      total: lights.total,
      files: 2,
      of: 2,
      done: true,
    });
    await phase(cmd.job, "verifying");
    await state(first, runsLights());
    const turned = await eventually(
      async () => {
        const r = await bridge.request("rollout/show", { id: created.id, events: 100 });
        return r.devices.find((d) => d.device === later.id && d.status !== "pending") ? r : undefined;
      },
      `${later.id} had its turn`,
      30_000,
    );
    const skipped = turned.devices.find((d) => d.device === later.id);
    assert.equal(skipped?.status, "skipped");
    assert.equal(
      skipped?.reason,
      `Skipped: ${later.id} now runs another app than when the rollout was created, and the rollout replaces no app without replace-app. ${refusal(later.id)}`,
    );
    assert.ok(turned.events.some((e) => e.kind === "device-skipped" && e.message === skipped?.reason));
    await untouched(later);
    await bridge.request("rollout/abort", { id: created.id }).catch(() => undefined);
  });
});
