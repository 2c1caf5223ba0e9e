import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { AgentDevice } from "../../src/agent-host/agent-device.ts";
import type { FilesystemKind } from "../../src/agent-host/device-filesystem.ts";
import { SimulatedDevice } from "../../src/simulator/simulated-device.ts";
import { SimulatedEsp32Device } from "../../src/simulator/simulated-esp32-device.ts";
import { buildSyntheticFirmware } from "../../src/simulator/synthetic-firmware.ts";
import { brokerHooks, CommandSigner } from "../agent/support.ts";
import { addressPool, FAST, key, SHORT_GPIO } from "../simulator/support.ts";
import { buildEsp32AppImage } from "../support/esp32-image.ts";
import {
  AppServer,
  acks,
  appCommand,
  appDevice,
  nextState,
  PASSWORD,
  settled,
  states,
  twentyFiles,
} from "./agent-app-support.ts";
import { MODULUS, record } from "./slot-board.ts";

// The agent's side of app updates (issue 19) under MicroPython 1.27 (wasm):
// the unmodified agent, loader and updater on a simulated ESP8266
// (LittleFS), a real broker (Aedes), and node:http standing in for the
// server's device route. Checked: what the server would see (acks, states,
// HTTP requests and their bytes) and what the board runs.

const signer = new CommandSigner();
const V1 = twentyFiles("1.0.0");
const V2 = twentyFiles("1.1.0", 7); // m07.py changed
const BAD = twentyFiles("1.2.0", 7, 'import m01\nraise ValueError("no sensor on pin 4")\n');

const bytes = (r: typeof V1) => Object.values(r.files).reduce((n, t) => n + t.length, 0);

let seq = 1;
const hooks = brokerHooks();
const { cleanups } = hooks;

async function rig(
  id: string,
  filesystem: FilesystemKind = "littlefs",
): Promise<{ d: AgentDevice; server: AppServer }> {
  const server = await AppServer.start(id, PASSWORD);
  cleanups.push(() => server.close());
  const d = appDevice(hooks.broker.url, id, signer, { filesystem });
  cleanups.push(() => d.close());
  const first = nextState(d, () => true);
  await d.powerOn();
  await first;
  return { d, server };
}

/** Sends the app command for r and resolves with the state the board publishes running it. */
async function update(id: string, d: AgentDevice, server: AppServer, r: typeof V1, job: string) {
  server.active = r.sha;
  const url = server.add(r);
  const running = settled(d, (app) => app.id === r.sha);
  await hooks.broker.publish(`mpota/${id}/cmd`, appCommand(signer, id, seq++, job, r, url), true);
  return running;
}

describe("the agent updates its app", () => {
  for (const fs of ["littlefs", "fat"] as const)
    test(`a 20-file app (${fs}): installed whole, then one file changed fetches that file and the manifest only`, async () => {
      const id = `app-20-${fs}`;
      const { d, server } = await rig(id, fs);
      const s0 = states(d)[0] as { v: number; chip: string; app: Record<string, unknown> };
      assert.equal(s0.v, 3);
      assert.equal(s0.chip, "esp8266");
      assert.deepEqual(Object.keys(s0.app).sort(), ["board", "free", "mpy"]);
      assert.equal(s0.app.board, "esp8266");
      assert.equal(s0.app.mpy, 0x2706);

      const s1 = await update(id, d, server, V1, "j-first");
      const app1 = s1.app as Record<string, unknown>;
      assert.deepEqual([app1.name, app1.ver, app1.id], ["thermostat", "1.0.0", V1.sha]);
      assert.ok(d.output.includes("app 1.0.0 1.0.0"), "the new app ran");
      const a1 = acks(d, "j-first");
      assert.deepEqual(a1[0], { job: "j-first", ready: true, pull: true });
      const total = bytes(V1);
      assert.deepEqual(a1.at(-1), { job: "j-first", got: total, total, files: 20, of: 20, done: true });
      assert.deepEqual(a1[1], { job: "j-first", got: 0, total, files: 0, of: 20 });
      // An ESP8266 fetches in a boot that only updates: the agent asked for it and reset.
      assert.ok(
        d.output.includes("mpota: job j-first goes on in a boot that only updates"),
        d.output.join("\n"),
      );
      assert.ok(d.output.includes("mpota: update boot for job j-first"));
      assert.equal(server.since(0).length, 21, "the manifest and 20 files");
      // Confirmed once the state was out: the loader no longer counts boots.
      assert.equal(record(d.fs)?.state, "ok");

      const from = server.requests.length;
      const s2 = await update(id, d, server, V2, "j-second");
      assert.equal((s2.app as Record<string, unknown>).ver, "1.1.0");
      assert.ok(d.output.includes("app 1.0.0 1.1.0"));
      const sent = server.since(from);
      assert.deepEqual(
        sent.map((q) => q.what),
        ["manifest", "m07.py"],
      );
      assert.equal(
        sent.reduce((n, q) => n + q.sent, 0),
        V2.manifest.length + (V2.files["m07.py"] as string).length,
      );
      const a2 = acks(d, "j-second");
      assert.deepEqual(a2.at(-1), { job: "j-second", got: total, total, files: 20, of: 20, done: true });
      assert.equal(record(d.fs)?.state, "ok");
    });

  test("a new app that raises at import is rolled back; the next state carries rb with the job and the error line, once", async () => {
    const id = "app-rb";
    const { d, server } = await rig(id);
    await update(id, d, server, V1, "j-v1");
    server.active = BAD.sha;
    const url = server.add(BAD);
    const back = settled(d, (app) => app.rb !== undefined);
    await hooks.broker.publish(`mpota/${id}/cmd`, appCommand(signer, id, seq++, "j-bad", BAD, url), true);
    const s = (await back).app as Record<string, unknown>;
    assert.equal(s.id, V1.sha, "the old app runs again");
    assert.equal(s.ver, "1.0.0");
    const rb = s.rb as { job: string; why: string };
    assert.equal(rb.job, "j-bad");
    assert.match(
      rb.why,
      /^rolled back thermostat 1\.2\.0: File "\/app\/b\/main\.py", line 2.*ValueError: no sensor on pin 4$/,
    );
    assert.deepEqual(acks(d, "j-bad").at(-1), {
      job: "j-bad",
      got: bytes(BAD),
      total: bytes(BAD),
      files: 20,
      of: 20,
      done: true,
    });
    assert.ok(d.output.some((l) => l.includes("mpota_loader: rolled back thermostat 1.2.0")));
    // Once: the next boot's state has no rb, and the old app is still confirmed.
    const again = nextState(d, () => true);
    await d.powerOff();
    await d.powerOn();
    const next = (await again).app as Record<string, unknown>;
    assert.equal(next.id, V1.sha);
    assert.equal(next.rb, undefined);
    assert.deepEqual(
      { active: record(d.fs)?.active, state: record(d.fs)?.state },
      { active: "a", state: "ok" },
    );
  });

  test("a Pico W (rp2): the retained command of the job it just did comes again after the reset, ignored without a note; an older one is still a replay", async () => {
    const id = "app-pico";
    const server = await AppServer.start(id, PASSWORD);
    cleanups.push(() => server.close());
    const d = appDevice(hooks.broker.url, id, signer, { chip: "rp2" });
    cleanups.push(() => d.close());
    const first = nextState(d, () => true);
    await d.powerOn();
    assert.equal((await first).chip, "rp2");
    // The broker keeps each command retained, as the server does until it reads the new app in
    // the state: the board gets it again at once after the reset that follows the switch.
    const s1 = seq;
    await update(id, d, server, V1, "j-pico-1");
    const s2 = seq;
    await update(id, d, server, V2, "j-pico-2");
    const cmd2 = appCommand(signer, id, s2, "j-pico-2", V2, server.add(V2));
    const cmd1 = appCommand(signer, id, s1, "j-pico-1", V1, server.add(V1));
    // The same command once more, as anybody on the broker could send it: nothing happens, nothing said.
    await hooks.broker.publish(`mpota/${id}/cmd`, cmd2, true);
    // An older one (captured by an attacker) is a replay: refused, with the note. The agent takes
    // commands in order, so once this note is out it has seen every earlier one.
    const note = d.waitFor("stdout", (l) => l.includes("replayed"));
    await hooks.broker.publish(`mpota/${id}/cmd`, cmd1, true);
    assert.equal(await note, `mpota: ignored replayed cmd, seq ${s1} <= ${s2}`);
    const out = d.output.join("\n");
    assert.ok(out.includes("mpota: job j-pico-1 done") && out.includes("mpota: job j-pico-2 done"), out);
    assert.deepEqual(
      d.output.filter((l) => l.includes("replayed")),
      [`mpota: ignored replayed cmd, seq ${s1} <= ${s2}`],
    );
    for (const job of ["j-pico-1", "j-pico-2"]) {
      assert.equal(acks(d, job).filter((a) => a.ready).length, 1, `${job}: taken once`);
    }
    assert.equal((states(d).at(-1)?.app as Record<string, unknown> | undefined)?.id, V2.sha);
    await hooks.broker.publish(`mpota/${id}/cmd`, "", true);
  });

  test("a Pico W below MIN_VBAT (VSYS, by VBAT_ADC_SCALE) answers ready:false, battery low; nothing fetched", async () => {
    const id = "app-pico-low";
    const server = await AppServer.start(id, PASSWORD);
    cleanups.push(() => server.close());
    const d = appDevice(hooks.broker.url, id, signer, { chip: "rp2", vbat: 3.2, minVbat: 3.3 });
    cleanups.push(() => d.close());
    const first = nextState(d, () => true);
    await d.powerOn();
    assert.equal((await first).vbat, 3.2);
    const refused = d.waitFor("published", (m) => m.topic.endsWith("/ack"));
    server.active = V1.sha;
    await hooks.broker.publish(
      `mpota/${id}/cmd`,
      appCommand(signer, id, seq++, "j-low", V1, server.add(V1)),
      true,
    );
    assert.deepEqual(JSON.parse((await refused).payload.toString()), {
      job: "j-low",
      ready: false,
      error: "battery low",
    });
    assert.equal(server.requests.length, 0);
    await hooks.broker.publish(`mpota/${id}/cmd`, "", true);
  });

  test("a simulated ESP32 (its own agent with the pull path) takes op app the same way", async () => {
    const id = "app-esp32";
    const server = await AppServer.start(id, PASSWORD);
    cleanups.push(() => server.close());
    const dev = new SimulatedEsp32Device({
      id,
      broker: hooks.broker.url,
      firmware: buildEsp32AppImage({ size: 120_000, seed: 11 }),
      agent: {
        commandKeys: [signer.modulusHex],
        appKeys: [MODULUS],
        config: { MQTT_USER: id, MQTT_PASSWORD: PASSWORD, RETRY_MS: 200 },
      },
    });
    cleanups.push(() => dev.stop());
    const d = dev.agent;
    const first = settled(d, () => true);
    await dev.start();
    const s0 = (await first) as { v: number; chip: string; app: Record<string, unknown> };
    assert.deepEqual([s0.v, s0.chip, s0.app.board, s0.app.mpy], [3, "esp32", "esp32", 0x2b06]);
    const s1 = await update(id, d, server, V1, "j-esp32");
    assert.equal((s1.app as Record<string, unknown>).id, V1.sha);
    assert.ok(d.output.includes("app 1.0.0 1.0.0"));
    // Its heap is large enough to update under the agent: no boot that only updates.
    assert.ok(!d.output.some((l) => l.includes("update boot")), d.output.join("\n"));
    assert.deepEqual(acks(d, "j-esp32").at(-1), {
      job: "j-esp32",
      got: bytes(V1),
      total: bytes(V1),
      files: 20,
      of: 20,
      done: true,
    });
    assert.equal(record(d.fs)?.state, "ok");
  });

  test("a simulated ESP8266 with yaota8266 (the emulator) on FAT: the reset after the switch boots the new app", async () => {
    const id = "app-yaota";
    const server = await AppServer.start(id, PASSWORD);
    cleanups.push(() => server.close());
    const dev = new SimulatedDevice({
      id,
      address: addressPool()(),
      broker: hooks.broker.url,
      key,
      firmware: buildSyntheticFirmware({ size: 40_000, seed: 1 }),
      timing: FAST,
      settings: SHORT_GPIO,
      agent: {
        commandKeys: [signer.modulusHex],
        appKeys: [MODULUS],
        filesystem: "fat",
        config: { MQTT_USER: id, MQTT_PASSWORD: PASSWORD, RETRY_MS: 200 },
      },
    });
    cleanups.push(() => dev.stop());
    const d = dev.agent;
    const first = settled(d, () => true);
    await dev.start();
    await first;
    const s1 = await update(id, d, server, V1, "j-yaota");
    assert.equal((s1.app as Record<string, unknown>).id, V1.sha);
    assert.ok(d.output.includes("app 1.0.0 1.0.0"));
    assert.ok(d.output.includes("mpota: update boot for job j-yaota"), d.output.join("\n"));
    assert.equal(record(d.fs)?.state, "ok");
  });
});
