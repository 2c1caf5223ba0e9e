import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { AgentDevice } from "../../src/agent-host/agent-device.ts";
import type { MicroPythonRelease } from "../../src/agent-host/micropython-release.ts";
import type { PublishedMessage } from "../../src/agent-host/mqtt-packets.ts";
import { brokerHooks, CommandSigner } from "../agent/support.ts";
import {
  AppServer,
  acks,
  appCommand,
  appDevice,
  nextAck,
  PASSWORD,
  settled,
  twentyFiles,
} from "./agent-app-support.ts";
import { record } from "./slot-board.ts";

// A Pico W (rp2) with APP_UPDATE_BOOT on updates its app in the boot that
// only updates (mpota_appboot), as an ESP8266 does. That boot checks the
// battery by VBAT_ADC_SCALE before each fetch; the rp2 port has no
// ADC.read(), so it must read VSYS as the agent does (mpota_rp2.read: GPIO29
// with the CYW43's select high). The unmodified agent, loader and updater
// under MicroPython 1.27 (wasm) with the rp2 fakes, a real broker (Aedes) and
// node:http as the server's device route.

const signer = new CommandSigner();
const V1 = twentyFiles("1.0.0");
const bytes = Object.values(V1.files).reduce((n, t) => n + t.length, 0);

let seq = 1;
const hooks = brokerHooks();
const { cleanups } = hooks;

async function pico(
  id: string,
  micropython: MicroPythonRelease = "1.27",
): Promise<{ d: AgentDevice; server: AppServer }> {
  const server = await AppServer.start(id, PASSWORD);
  cleanups.push(() => server.close());
  const d = appDevice(hooks.broker.url, id, signer, {
    chip: "rp2",
    micropython,
    vbat: 3.7,
    minVbat: 3.3,
    config: { MQTT_USER: id, MQTT_PASSWORD: PASSWORD, RETRY_MS: 200, APP_UPDATE_BOOT: true },
  });
  cleanups.push(() => d.close());
  const first = settled(d, () => true);
  await d.powerOn();
  const s0 = await first;
  assert.deepEqual([s0.chip, s0.vbat], ["rp2", 3.7]);
  return { d, server };
}

/** Publishes the app command for V1 as job `job`. */
async function send(id: string, server: AppServer, job: string): Promise<void> {
  server.active = V1.sha;
  await hooks.broker.publish(`mpota/${id}/cmd`, appCommand(signer, id, seq++, job, V1, server.add(V1)), true);
}

const DONE = (job: string) => ({ job, got: bytes, total: bytes, files: 20, of: 20, done: true });

describe("a Pico W with APP_UPDATE_BOOT: the update boot reads VSYS as the agent does", () => {
  for (const release of ["1.27", "1.29"] as const)
    test(`MicroPython ${release}: VBAT_ADC_SCALE set, VSYS above MIN_VBAT: the app is installed in the update boot`, async () => {
      const id = `pico-boot-${release.replace(".", "")}`;
      const { d, server } = await pico(id, release);
      const job = `j-${id}`;
      const ended = nextAck(d, (a) => a.job === job && (a.done === true || a.error !== undefined));
      const running = settled(d, (app) => app.id === V1.sha);
      void running.catch(() => undefined); // awaited below, once the ack says how the job ended
      await send(id, server, job);
      assert.deepEqual(await ended, DONE(job));
      const s1 = await running;
      assert.deepEqual([s1.vbat, (s1.app as Record<string, unknown>).ver], [3.7, "1.0.0"]);
      const out = d.output.join("\n");
      assert.ok(out.includes(`mpota: job ${job} goes on in a boot that only updates`), out);
      assert.ok(out.includes(`mpota: update boot for job ${job}`), out);
      assert.ok(d.output.includes("app 1.0.0 1.0.0"), out);
      assert.ok(!d.output.some((l) => l.includes("stopped") || l.startsWith("mpota: vbat:")), out);
      assert.deepEqual(acks(d, job)[0], { job, ready: true, pull: true });
      assert.equal(server.since(0).length, 21, "the manifest and 20 files, each once");
      assert.equal(record(d.fs)?.state, "ok");
      await hooks.broker.publish(`mpota/${id}/cmd`, "", true);
    });

  test("VSYS falls below MIN_VBAT before the update boot: it stops with 'battery low', fetches nothing, and installs once charged", async () => {
    const id = "pico-boot-low";
    const { d, server } = await pico(id);
    // The agent takes the job at 3.7 V; the battery sags as it resets into the update boot.
    // The device is paused in the bridge call that writes the ack, so the boot sees 3.1 V.
    const sag = (m: PublishedMessage) => {
      if (m.topic.endsWith("/ack") && JSON.parse(m.payload.toString()).ready === true) {
        d.vbat = 3.1;
        d.off("published", sag);
      }
    };
    d.on("published", sag);
    const low = nextAck(d, (a) => a.job === "j-low" && a.error !== undefined);
    // The agent sends no state between taking the job and its reset: the next one follows the update boot.
    const after = d.waitFor("published", (m) => m.topic.endsWith("/state"), 30_000);
    await send(id, server, "j-low");
    assert.deepEqual(await low, { job: "j-low", error: "battery low", final: false });
    assert.ok(d.output.includes("mpota: update boot for job j-low"), d.output.join("\n"));
    assert.ok(
      d.output.includes("mpota: job j-low stopped at file 0 of 0 (battery low), again in 2 s"),
      d.output.join("\n"),
    );
    assert.equal(server.requests.length, 0, "nothing fetched on a low battery");
    // The state the agent sends after that boot carries the low reading, and the old app.
    const s1 = JSON.parse((await after).payload.toString()) as Record<string, unknown>;
    assert.deepEqual([s1.vbat, (s1.app as Record<string, unknown>).id], [3.1, undefined]);
    const charged = settled(d, (app) => app.id === V1.sha);
    // Charged again: the next update boot, after the back-off, installs the app.
    d.vbat = 3.7;
    await charged;
    assert.deepEqual(acks(d, "j-low").at(-1), DONE("j-low"));
    assert.equal(d.output.filter((l) => l === "mpota: update boot for job j-low").length, 2);
    assert.equal(server.since(0).length, 21);
    await hooks.broker.publish(`mpota/${id}/cmd`, "", true);
  });
});
