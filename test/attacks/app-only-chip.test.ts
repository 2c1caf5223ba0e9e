import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Command, CommanderError } from "commander";
import { MemoryIo } from "../../src/cli/io.ts";
import { registerRolloutCommand } from "../../src/cli/rollout.ts";
import { registerUpdateCommand } from "../../src/cli/update.ts";
import { MpotaError } from "../../src/errors.ts";
import { EXIT_CODES } from "../../src/exit-codes.ts";
import { call, type HttpTestServer, startHttpServer } from "../http/support.ts";
import { MqttDevice } from "../server/support/mqtt-device.ts";
import { tempDir } from "../server/support/test-server.ts";
import { eventually } from "../server/support/wait.ts";
import { buildEsp32AppImage } from "../support/esp32-image.ts";
import { buildMicroPythonImage } from "../support/images.ts";

// A Raspberry Pi Pico W (chip rp2) takes app updates only: no firmware kind serves its chip. The
// dashboard offers it no firmware, but the server decides on its own: an update or a rollout that
// names it directly, through the HTTP API or the CLI, is refused in one set of words with exit 22,
// and no job or rollout is made. Real server, embedded Aedes broker, SQLite; scripted devices.

const ESP8266_IMAGE = buildMicroPythonImage({ size: 40 * 1024, seed: 171 });
const ESP32_IMAGE = buildEsp32AppImage({ size: 120_000, seed: 172 });
const UNKNOWN_1 = "0123456789abcdef0123456789abcdef";
const UNKNOWN_2 = "fedcba9876543210fedcba9876543210";

/** What a user is told when `release` is asked for on the Pico W `device`. */
const appOnly = (release: string, device: string) =>
  `${release} for ${device}: the device is a Raspberry Pi Pico W (rp2), which takes app updates only: mpota does not update its firmware. Update its app with an app release (mpota update <device> <app>@<version>); flash its MicroPython by USB.`;

/** Runs `mpota ARGS` (update or rollout) as bin/mpota does: the error's message and exit code. */
async function mpota(args: string[]): Promise<{ code: number; stderr: string }> {
  const io = new MemoryIo();
  const program = new Command("mpota").exitOverride();
  program.configureOutput({ writeOut: (s) => io.out(s), writeErr: (s) => io.err(s) });
  registerUpdateCommand(program, io);
  registerRolloutCommand(program, io);
  const all = (c: Command): Command[] => [c, ...c.commands.flatMap(all)];
  for (const sub of all(program).slice(1)) {
    sub.exitOverride().configureOutput({ writeOut: (s) => io.out(s), writeErr: (s) => io.err(s) });
  }
  try {
    await program.parseAsync(["node", "mpota", ...args]);
    return { code: 0, stderr: io.stderrText };
  } catch (error) {
    if (error instanceof CommanderError) return { code: 2, stderr: io.stderrText };
    if (!(error instanceof MpotaError)) throw error;
    io.err(`mpota: ${error.message}\n`);
    return { code: error.exitCode, stderr: io.stderrText };
  }
}

describe("a firmware for a Pico W (app updates only) is refused by the server itself, on every path", () => {
  const data = tempDir("mpota-attack-app-only-");
  let s: HttpTestServer;
  const devices: MqttDevice[] = [];

  before(async () => {
    s = await startHttpServer(data.dir);
    await s.server.library.add({ bytes: ESP8266_IMAGE, name: "board", version: "2.0" });
    await s.server.library.add({ bytes: ESP32_IMAGE, name: "board32", version: "1.0" });
    const states = {
      pico: {
        v: 3 as const,
        fw: UNKNOWN_1,
        ip: "127.0.0.1",
        chip: "rp2",
        app: { board: "rp2", free: 800_000 },
      },
      pico2: { v: 3 as const, fw: UNKNOWN_1, ip: "127.0.0.1", chip: "rp2", app: { board: "rp2" } },
      hall: { v: 3 as const, fw: UNKNOWN_2, ip: "127.0.0.1", chip: "esp8266" },
    };
    for (const [id, state] of Object.entries(states)) {
      const device = await MqttDevice.connect(s.url, id);
      devices.push(device);
      await device.state(state);
    }
    await s.server.storage.tags.set("pico", ["garden", "picos"]);
    await s.server.storage.tags.set("pico2", ["picos"]);
    await s.server.storage.tags.set("hall", ["garden"]);
    await eventually(
      async () =>
        (await s.server.storage.devices.list()).filter((d) => d.state?.chip !== undefined).length === 3,
      "three devices with their chips",
    );
  });
  after(async () => {
    for (const device of devices) await device.close();
    await s.stop();
    data.remove();
  });

  test("the release view says which chips each release's kind serves", async () => {
    const list = (await call(s, "GET", "/api/v1/firmware")).body;
    const items: Array<{ name: string; chips: string[] | null }> = Array.isArray(list) ? list : list.items;
    const board = items.find((f) => f.name === "board");
    const board32 = items.find((f) => f.name === "board32");
    assert.deepEqual(board?.chips, ["esp8266"]);
    assert.ok(board32?.chips?.includes("esp32") && !board32.chips.includes("rp2"), JSON.stringify(board32));
  });

  test("POST /update of either firmware kind to the Pico W is refused with what to do; no job", async () => {
    for (const [firmware, release] of [
      ["board@2.0", "board 2.0"],
      ["board32@1.0", "board32 1.0"],
    ]) {
      const r = await call(s, "POST", "/api/v1/update", { json: { device: "pico", firmware } });
      assert.equal(r.status, 400);
      assert.equal(r.body.error, appOnly(release, "pico"));
    }
    assert.deepEqual((await call(s, "GET", "/api/v1/jobs")).body, []);
  });

  test("POST /rollouts naming the Pico W is refused in the same words, alone or beside a device that fits", async () => {
    for (const devicesNamed of [["pico"], ["hall", "pico"]]) {
      const r = await call(s, "POST", "/api/v1/rollouts", {
        json: { firmware: "board@2.0", devices: devicesNamed },
      });
      assert.equal(r.status, 400, JSON.stringify(r.body));
      assert.equal(r.body.error, `Refused: ${appOnly("board 2.0", "pico")} Leave it out of the list.`);
    }
    const both = await call(s, "POST", "/api/v1/rollouts", {
      json: { firmware: "board32@1.0", devices: ["pico", "pico2"] },
    });
    assert.equal(both.status, 400);
    assert.equal(
      both.body.error,
      `Refused: ${appOnly("board32 1.0", "pico")} 1 more selected device takes app updates only too. Leave them out of the list.`,
    );
    const rollouts = (await call(s, "GET", "/api/v1/rollouts")).body;
    assert.deepEqual(Array.isArray(rollouts) ? rollouts : rollouts.items, [], "no rollout was made");
  });

  test("a rollout over a tag of Pico Ws only is refused; over a mixed tag the Pico W is left out, saying so", async () => {
    const picos = await call(s, "POST", "/api/v1/rollouts", {
      json: { firmware: "board@2.0", tag: "picos" },
    });
    assert.equal(picos.status, 400);
    assert.equal(
      picos.body.error,
      `Refused: ${appOnly("board 2.0", "pico")} 1 more selected device takes app updates only too.`,
    );
    const garden = await call(s, "POST", "/api/v1/rollouts", {
      json: { firmware: "board@2.0", tag: "garden", groups: "rest" },
    });
    assert.equal(garden.status, 201, JSON.stringify(garden.body));
    const detail = (await call(s, "GET", `/api/v1/rollouts/${garden.body.id}`)).body;
    assert.deepEqual(
      detail.devices.map((d: { device: string }) => d.device),
      ["hall"],
    );
    assert.equal(
      detail.events.find((e: { kind: string }) => e.kind === "created").message,
      "Rollout of board 2.0 to 1 device created: groups of 1; 1 device of another chip left out (board 2.0 is built for esp8266): pico runs rp2.",
    );
    await call(s, "POST", `/api/v1/rollouts/${garden.body.id}/abort`, { json: {} });
    await eventually(
      async () => (await call(s, "GET", `/api/v1/rollouts/${garden.body.id}`)).body.state === "aborted",
      "aborted",
    );
  });

  test("the CLI's update and rollout create print the refusal and exit 22", async () => {
    const bridge = ["--mqtt", s.brokerUrl, "--data", data.dir];
    const update = await mpota(["update", "pico", "board@2.0", ...bridge]);
    assert.equal(update.code, EXIT_CODES.requestRefused.code);
    assert.equal(update.code, 22);
    assert.equal(update.stderr, `mpota: ${appOnly("board 2.0", "pico")}\n`);
    const rollout = await mpota(["rollout", "create", "board@2.0", "--devices", "pico", ...bridge]);
    assert.equal(rollout.code, 22);
    assert.equal(
      rollout.stderr,
      `mpota: Refused: ${appOnly("board 2.0", "pico")} Leave it out of the list.\n`,
    );
  });
});
