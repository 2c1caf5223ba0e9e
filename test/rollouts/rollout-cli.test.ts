import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Command, CommanderError } from "commander";
import { MemoryIo } from "../../src/cli/io.ts";
import { registerRolloutCommand } from "../../src/cli/rollout.ts";
import { MpotaError } from "../../src/errors.ts";
import { BridgeClient } from "../../src/server/bridge/bridge-client.ts";
import { DeviceTwin } from "../server/support/device-twin.ts";
import { MqttDevice } from "../server/support/mqtt-device.ts";
import { startTestServer, type TestServer, tempDir } from "../server/support/test-server.ts";
import { eventually } from "../server/support/wait.ts";
import { b64, ID1, ID2, V1, V2 } from "./support.ts";

/** Runs `mpota rollout ARGS` in-process as main() does: output captured, exit code per error class. */
async function mpota(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const io = new MemoryIo();
  const program = new Command("mpota").enablePositionalOptions().exitOverride();
  registerRolloutCommand(program, io);
  const configure = (cmd: Command) => {
    cmd.exitOverride().configureOutput({ writeOut: (s) => io.out(s), writeErr: (s) => io.err(s) });
    for (const sub of cmd.commands) configure(sub);
  };
  configure(program);
  try {
    await program.parseAsync(["node", "mpota", ...args]);
    return { code: 0, stdout: io.stdout, stderr: io.stderrText };
  } catch (error) {
    if (error instanceof CommanderError)
      return { code: error.exitCode === 0 ? 0 : 2, stdout: io.stdout, stderr: io.stderrText };
    if (error instanceof MpotaError) {
      io.err(`mpota: ${error.message}\n`);
      return { code: error.exitCode, stdout: io.stdout, stderr: io.stderrText };
    }
    throw error;
  }
}

describe("mpota rollout", () => {
  const t = tempDir("mpota-rollout-cli-");
  let s: TestServer;
  const fakes: MqttDevice[] = [];
  const twins: DeviceTwin[] = [];
  const ask = (...args: string[]) => mpota(["rollout", ...args, "--mqtt", s.url]);

  before(async () => {
    s = await startTestServer(t.dir);
    for (const id of ["f1", "f2", "f3"]) {
      const d = await MqttDevice.connect(s.url, id);
      fakes.push(d);
      await d.state({ fw: ID1, ip: "127.0.0.1", sleep: 600 });
    }
    const add = async (image: Uint8Array, version: string) => {
      const bridge = await BridgeClient.connect({ connection: { url: s.url } });
      await bridge.request("firmware/add", { image: b64(image), name: "sensor", version });
      await eventually(async () => (await bridge.request("devices", {})).length >= 3, "devices known");
      await bridge.close();
    };
    await add(V1, "1.0");
    await add(V2, "2.0");
  });
  after(async () => {
    for (const d of fakes) await d.close();
    for (const twin of twins) await twin.close();
    await s.stop();
    t.remove();
  });

  it("tags devices, creates a rollout by tag, lists and shows it, pauses, resumes and aborts it", async () => {
    const tagged = await ask("tag", "f1", "garden", "north");
    assert.deepEqual([tagged.code, tagged.stdout], [0, "f1: garden, north\n"]);
    await ask("tag", "f2", "garden");
    assert.equal((await ask("tag", "f3")).stdout, "f3: no tags\n");

    const created = await ask(
      "create",
      "sensor@2.0",
      "--tag",
      "garden",
      "--groups",
      "1,rest",
      "--name",
      "beds",
    );
    assert.equal(created.code, 0, created.stderr);
    const id =
      /^Rollout (r-[0-9a-f]+): firmware sensor 2\.0 to 2 devices in groups of 1 \+ 1; running, group 1 of 2\.\n/.exec(
        created.stdout,
      )?.[1];
    assert.ok(id, created.stdout);

    const list = await ask("list");
    assert.match(list.stdout, /^ROLLOUT\s+NAME\s+RELEASE\s+DEVICES\s+STATE\s+DONE\s+FAILED\s+CREATED\n/);
    assert.match(
      list.stdout,
      new RegExp(
        `${id}\\s+beds\\s+firmware sensor 2\\.0\\s+tag garden\\s+running, group 1 of 2\\s+0/2\\s+0\\s+`,
      ),
    );

    const shown = await ask("show", "beds");
    assert.equal(shown.code, 0);
    assert.match(
      shown.stdout,
      new RegExp(`^Rollout ${id} "beds": firmware sensor 2\\.0 \\(${ID2}\\) to tag garden\\n`),
    );
    assert.match(shown.stdout, /devices {4}2: 1 scheduled, 1 pending\n/);
    assert.match(
      shown.stdout,
      /GROUP\s+SIZE\s+SUCCESS\s+ERRORS\s+STATE\s+PENDING\s+SCHEDULED\s+PUSHING\s+VERIFYING\s+DONE\s+FAILED/,
    );
    assert.match(shown.stdout, /1 \(1\)\s+1\s+100 %\s+>20 % of 1\+\s+running\s+0\s+1\s+0\s+0\s+0\s+0\n/);
    assert.match(shown.stdout, /f1\s+1\s+scheduled \(asleep\)\s+j-\w+/);

    const json = JSON.parse((await ask("show", id, "--json")).stdout);
    assert.equal(json.id, id);
    assert.deepEqual(
      json.devices.map((d: { device: string; status: string }) => [d.device, d.status]),
      [
        ["f1", "scheduled"],
        ["f2", "pending"],
      ],
    );

    const paused = await ask("pause", id, "--reason", "lunch");
    assert.equal(
      paused.stdout,
      `Rollout ${id} paused: 2 pending. Resume with \`mpota rollout resume ${id}\`.\n`,
    );
    const resumed = await ask("resume", id);
    assert.equal(resumed.stdout, `Rollout ${id} running, group 1 of 2: 1 scheduled, 1 pending.\n`);
    const aborted = await ask("abort", id);
    assert.equal(aborted.stdout, `Rollout ${id} aborted: 2 cancelled.\n`);
    const again = await ask("abort", id);
    assert.equal(again.code, 22);
    assert.match(
      again.stderr,
      /^mpota: Rollout r-\w+ has ended \(aborted: Aborted by hand\); there is nothing to abort\.\n$/,
    );
  });

  it("refuses bad options before asking the server, and reports the server's refusals", async () => {
    const none = await ask("create", "sensor@2.0");
    assert.equal(none.code, 2);
    assert.match(none.stderr, /Say which devices: --devices ID,ID,\.\.\. or --tag TAG or --line NAME/);
    const two = await ask("create", "sensor@2.0", "--tag", "a", "--line", "b");
    assert.equal(two.code, 2);
    const threshold = await ask("create", "sensor@2.0", "--tag", "garden", "--error", "150");
    assert.equal(threshold.code, 2);
    assert.match(threshold.stderr, /--error must be a number from 0 to 100, not "150"/);
    const onError = await ask("create", "sensor@2.0", "--tag", "garden", "--on-error", "shrug");
    assert.equal(onError.code, 2);
    const unknown = await ask("create", "lamp@1.0", "--devices", "f1");
    assert.equal(unknown.code, 22);
    assert.match(unknown.stderr, /^mpota: No firmware "lamp" version "1\.0" is in the store/);
    const groups = await ask("create", "sensor@2.0", "--devices", "f3", "--groups", "1,lots", "--approve");
    assert.equal(groups.code, 22);
    assert.match(groups.stderr, /"lots" is not a group/);
  });

  it("--follow shows progress and exits 43 when the rollout pauses (here for approval); resume completes it", async () => {
    for (const id of ["t1", "t2"]) {
      const twin = new DeviceTwin({ url: s.url, id, image: V1 });
      twins.push(twin);
      await twin.start();
    }
    await eventually(async () => {
      const r = await ask("tag", "t2");
      return r.code === 0;
    }, "t2 known");
    const result = await ask(
      "create",
      "sensor@2.0",
      "--devices",
      "t1,t2",
      "--groups",
      "1,rest",
      "--approve",
      "--follow",
    );
    // --approve pauses after the first group: --follow stops there with exit 43.
    assert.equal(result.code, 43, result.stderr);
    assert.match(result.stderr, /running, group 1 of 2: /);
    assert.match(
      result.stderr,
      /mpota: Rollout r-\w+ is paused: Group 1 of 2 \(1 device\) reached its success threshold \(1 of 1 verified\); waiting for approval/,
    );
    const id = /Rollout (r-\w+)/.exec(result.stdout)?.[1] as string;
    const resumed = await ask("resume", id);
    assert.equal(resumed.code, 0);
    await eventually(
      async () => (await ask("show", id)).stdout.includes("state      completed"),
      "completed",
    );
    assert.deepEqual(
      twins.map((tw) => tw.boots),
      [
        [ID1, ID2],
        [ID1, ID2],
      ],
    );
  });
});
