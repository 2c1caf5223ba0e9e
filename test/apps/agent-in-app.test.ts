import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { AgentDevice } from "../../src/agent-host/agent-device.ts";
import { readDeviceFile } from "../../src/agent-host/agent-files.ts";
import { ResetCause } from "../../src/agent-host/reset-cause.ts";
import { brokerHooks, CommandSigner } from "../agent/support.ts";
import {
  type AppRelease,
  AppServer,
  acks,
  appCommand,
  appDevice,
  appRelease,
  nextState,
  PASSWORD,
  settled,
} from "./agent-app-support.ts";
import { record } from "./slot-board.ts";

// The agent as part of an app release (issue 19) under MicroPython 1.27
// (wasm): the board's main.py (device/examples/app_main.py) runs the loader,
// then imports the agent, which comes from the app's slot when the app ships
// one. A new app whose agent raises at import goes back at once; one whose
// agent never reaches the broker goes back after TRIES boots (watchdog
// resets here). Real broker (Aedes), node:http for the server's device route.

const signer = new CommandSigner();
const AGENT = readDeviceFile("mpota_agent.py");
const CONNECT = "            self.mq.connect(True, self.ka or 60)\n";
assert.ok(AGENT.includes(CONNECT), "the agent connects in _online");

/** The real agent, printing `agent <tag> <its file>` when imported. */
const agentAs = (tag: string, body = AGENT) => `print("agent", "${tag}", __file__)\n${body}`;
const app = (version: string, agent: string): AppRelease =>
  appRelease(version, { "main.py": `print("app", "${version}")\n`, "mpota_agent.py": agent });

const A = app("1.0.0", agentAs("A"));
const B = app("1.1.0", agentAs("B"));
/** Its agent raises at import: a module the release forgot. */
const BROKEN = app("1.2.0", `${agentAs("C", "import mpota_sensors\n")}${AGENT}`);
/** Its agent imports and runs but never reaches the broker, so never confirms. */
const DEAF = app("1.3.0", agentAs("D", AGENT.replace(CONNECT, '            raise OSError("no broker")\n')));

let seq = 1;
const hooks = brokerHooks();
const { cleanups } = hooks;

const printed = (d: AgentDevice, text: string) => d.output.filter((l) => l.includes(text)).length;

/** A board (ESP8266, LittleFS) that runs app A with its agent, confirmed. */
async function rig(id: string): Promise<{ d: AgentDevice; server: AppServer }> {
  const server = await AppServer.start(id, PASSWORD);
  cleanups.push(() => server.close());
  const d = appDevice(hooks.broker.url, id, signer);
  cleanups.push(() => d.close());
  const first = nextState(d, () => true);
  await d.powerOn();
  await first;
  assert.equal(printed(d, "agent A"), 0, "no app yet: the agent on / runs");
  await update(id, d, server, A, "j-a");
  assert.equal(printed(d, "agent A /app/a/mpota_agent.py"), 1, "A's agent runs, from its slot");
  assert.deepEqual(
    { active: record(d.fs)?.active, state: record(d.fs)?.state },
    { active: "a", state: "ok" },
  );
  return { d, server };
}

/** Publishes the app command for r (retained, as the server does). */
async function publish(id: string, server: AppServer, r: AppRelease, job: string) {
  server.active = r.sha;
  const url = server.add(r);
  await hooks.broker.publish(`mpota/${id}/cmd`, appCommand(signer, id, seq++, job, r, url), true);
}

async function update(id: string, d: AgentDevice, server: AppServer, r: AppRelease, job: string) {
  const running = settled(d, (a) => a.id === r.sha);
  await publish(id, server, r, job);
  return running;
}

describe("the agent as part of an app release", () => {
  test("a release with its own agent: installed, that agent runs after the switch and confirms the app", async () => {
    const id = "agent-in-app";
    const { d, server } = await rig(id);
    const from = server.requests.length;
    const s = (await update(id, d, server, B, "j-b")).app as Record<string, unknown>;
    assert.deepEqual([s.name, s.ver, s.id, s.rb], ["thermostat", "1.1.0", B.sha, undefined]);
    assert.deepEqual(
      server.since(from).map((q) => [q.what, q.status]),
      [
        ["manifest", 200],
        ["main.py", 200],
        ["mpota_agent.py", 200],
      ],
    );
    assert.equal(printed(d, "app 1.1.0"), 1);
    assert.equal(printed(d, "agent B /app/b/mpota_agent.py"), 1, "the new release's agent, from its slot");
    assert.deepEqual(
      { active: record(d.fs)?.active, prev: record(d.fs)?.prev, state: record(d.fs)?.state },
      { active: "b", prev: "a", state: "ok" },
    );
    assert.equal(acks(d, "j-b").at(-1)?.done, true);
    // Confirmed: a power cut and the next boot run B and its agent again, not counted.
    const again = nextState(d, () => true);
    await d.powerOff();
    await d.powerOn();
    assert.equal(((await again).app as Record<string, unknown>).id, B.sha);
    assert.equal(printed(d, "agent B /app/b/mpota_agent.py"), 2);
    assert.equal(record(d.fs)?.state, "ok");
  });

  test("a release whose agent raises at import is rolled back at once; A and its agent run and report rb", async () => {
    const id = "agent-in-app-rb";
    const { d, server } = await rig(id);
    const back = settled(d, (a) => a.rb !== undefined);
    await publish(id, server, BROKEN, "j-broken");
    const s = (await back).app as Record<string, unknown>;
    assert.deepEqual([s.ver, s.id], ["1.0.0", A.sha], "the previous app runs again");
    const rb = s.rb as { job: string; why: string };
    assert.equal(rb.job, "j-broken");
    assert.match(
      rb.why,
      /^rolled back thermostat 1\.2\.0: File "\/app\/b\/mpota_agent\.py", line 2.*ImportError: no module named 'mpota_sensors'$/,
    );
    // At once: the broken agent ran once (no boots counted), then A's agent came back.
    assert.equal(printed(d, "app 1.2.0"), 1);
    assert.equal(printed(d, "agent C /app/b/mpota_agent.py"), 1);
    const gaveUp = d.output.findIndex((l) =>
      l.startsWith("mpota_loader: rolled back thermostat 1.2.0: File"),
    );
    assert.ok(gaveUp >= 0, "the loader printed why");
    assert.ok(d.output.slice(gaveUp).some((l) => l.includes("agent A /app/a/mpota_agent.py")));
    assert.equal(acks(d, "j-broken").at(-1)?.done, true);
    assert.deepEqual(
      { active: record(d.fs)?.active, state: record(d.fs)?.state },
      { active: "a", state: "ok" },
    );
  });

  test("a release whose agent never reaches the broker is rolled back by the loader's boot count (watchdog resets)", async () => {
    const id = "agent-in-app-deaf";
    const { d, server } = await rig(id);
    const back = settled(d, (a) => a.rb !== undefined);
    const marker = "agent D /app/b/mpota_agent.py";
    const firstRun = d.waitFor("stdout", (l) => l.includes(marker), 30_000);
    await publish(id, server, DEAF, "j-deaf");
    await firstRun;
    // The new agent retries its connection forever: a watchdog resets the board, three times.
    for (let i = 1; i <= 3; i++) {
      const offline = d.waitFor("stdout", (l) => l.includes("no broker"), 30_000);
      await offline;
      assert.equal(record(d.fs)?.state, "new", "not confirmed");
      await d.powerOff();
      const next =
        i < 3
          ? d.waitFor("stdout", (l) => l.includes(marker), 30_000)
          : d.waitFor("stdout", (l) => l.includes("agent A /app/a/mpota_agent.py"), 30_000);
      await d.boot(ResetCause.WDT_RESET);
      await next;
    }
    const s = (await back).app as Record<string, unknown>;
    assert.deepEqual([s.ver, s.id], ["1.0.0", A.sha]);
    assert.deepEqual(s.rb, {
      job: "j-deaf",
      why: "rolled back thermostat 1.3.0: not confirmed within 3 boots",
    });
    assert.equal(printed(d, marker), 3, "TRIES (3) boots of the new app, then the way back");
    assert.deepEqual(
      { active: record(d.fs)?.active, state: record(d.fs)?.state },
      { active: "a", state: "ok" },
    );
  });

  test("a first app whose agent raises at import: nothing to go back to, the agent on / runs and reports rb", async () => {
    const id = "agent-in-app-first";
    const server = await AppServer.start(id, PASSWORD);
    cleanups.push(() => server.close());
    const d = appDevice(hooks.broker.url, id, signer);
    cleanups.push(() => d.close());
    const first = nextState(d, () => true);
    await d.powerOn();
    await first;
    const back = settled(d, (a) => a.rb !== undefined);
    await publish(id, server, BROKEN, "j-first");
    const s = (await back).app as Record<string, unknown>;
    assert.equal(s.id, undefined, "no app runs");
    assert.match(
      (s.rb as { why: string }).why,
      /^rolled back thermostat 1\.2\.0: File "\/app\/a\/mpota_agent\.py", line 2/,
    );
    assert.equal((s.rb as { job: string }).job, "j-first");
    assert.equal(printed(d, "agent C /app/a/mpota_agent.py"), 1);
    assert.ok(d.output.includes("mpota_loader: no app to start"));
    assert.equal(record(d.fs)?.state, "bad");
  });

  test("a sleepy board: a release whose agent raises at import is rolled back in the same wake", async () => {
    const id = "agent-in-app-sleepy";
    const server = await AppServer.start(id, PASSWORD);
    cleanups.push(() => server.close());
    await publish(id, server, A, "j-sleepy-a");
    const d = appDevice(hooks.broker.url, id, signer, { sleepSeconds: 60, autoWake: false });
    cleanups.push(() => d.close());
    d.on("deepsleep", () => void d.boot(ResetCause.DEEPSLEEP_RESET));
    const a = settled(d, (app) => app.id === A.sha);
    await d.powerOn();
    await a;
    const back = settled(d, (app) => app.rb !== undefined);
    await publish(id, server, BROKEN, "j-sleepy-broken");
    const s = (await back).app as Record<string, unknown>;
    assert.equal(s.id, A.sha);
    assert.equal((s.rb as { job: string }).job, "j-sleepy-broken");
    assert.match((s.rb as { why: string }).why, /File "\/app\/b\/mpota_agent\.py", line 2/);
    // At once: the broken agent ran in one boot, not once a wake until the boot count ran out.
    assert.equal(printed(d, "agent C /app/b/mpota_agent.py"), 1);
    const gaveUp = d.output.findIndex((l) =>
      l.startsWith("mpota_loader: rolled back thermostat 1.2.0: File"),
    );
    assert.ok(gaveUp >= 0);
    assert.ok(d.output.slice(gaveUp).some((l) => l.includes("agent A /app/a/mpota_agent.py")));
  });

  test("a confirmed app whose agent fails is not rolled back: the board prints the error and stops", async () => {
    const id = "agent-in-app-ok";
    const { d } = await rig(id);
    // The agent file of the confirmed app A goes bad (as flash might): no way back is due.
    d.fs.writeFile("/app/a/mpota_agent.py", 'raise RuntimeError("flash went bad")\n');
    await d.powerOff();
    const ended = d.waitFor("ended", undefined, 30_000);
    await d.powerOn();
    assert.notEqual((await ended).kind, "reset");
    assert.ok(d.output.some((l) => l.includes("RuntimeError: flash went bad")));
    assert.equal(printed(d, "mpota_loader: rolled back"), 0);
    assert.deepEqual(
      { active: record(d.fs)?.active, state: record(d.fs)?.state },
      { active: "a", state: "ok" },
    );
  });
});
