import assert from "node:assert/strict";
import { test } from "node:test";
import { MqttPacketType } from "../../src/agent-host/mqtt-packets.ts";
import { brokerHooks, CommandSigner } from "../agent/support.ts";
import {
  AppServer,
  acks,
  appCommand,
  appDevice,
  appRelease,
  PASSWORD,
  settled,
} from "./agent-app-support.ts";

// A file that takes longer than the MQTT keep-alive to arrive, under
// MicroPython 1.27 (wasm) on a simulated ESP8266 with the unmodified agent
// and a real broker (Aedes, which closes a connection silent for 1.5
// keep-alives and then publishes its will): the update pings between the
// file's chunks, so its one connection lasts the whole update, in the
// ESP8266's update boot and under the agent (as on an ESP32) alike.

const signer = new CommandSigner();
const KEEPALIVE = 3; // s: Aedes drops a connection silent for 4.5 s
// 8 KiB, 256 bytes every 200 ms: about 6.4 s with nothing else to send.
const BIG = `DATA = "${"x".repeat(8192 - 10)}"\n`;
const SLOW = appRelease("1.0.0", { "big.py": BIG, "main.py": 'import big\nprint("big", len(big.DATA))\n' });

const hooks = brokerHooks();
const { cleanups } = hooks;

/**
 * Updates a board to SLOW (big.py trickled in) with a short KEEPALIVE; returns the
 * packet types the board sent from the command to the reset into the new app
 * (from the update boot's first line, if it has one) and the index of the first
 * sent after big.py was asked for.
 */
async function slowUpdate(id: string, updateBoot: boolean): Promise<{ sent: number[]; fromBig: number }> {
  const server = await AppServer.start(id, PASSWORD);
  cleanups.push(() => server.close());
  const d = appDevice(hooks.broker.url, id, signer, {
    config: { MQTT_USER: id, MQTT_PASSWORD: PASSWORD, RETRY_MS: 200, KEEPALIVE, APP_UPDATE_BOOT: updateBoot },
  });
  cleanups.push(() => d.close());
  const first = settled(d, () => true);
  await d.powerOn();
  await first;

  const sent: number[] = [];
  let on = !updateBoot;
  let fromBig = -1;
  d.on("stdout", (l) => {
    if (l === `mpota: update boot for job j-${id}`) on = true;
  });
  d.on("packet", (p) => {
    if (on) sent.push(p.type);
  });
  d.on("reset", () => {
    on = false;
  });
  server.onFile = (path) => {
    if (path === "big.py") fromBig = sent.length;
  };
  server.active = SLOW.sha;
  server.trickle = { file: "big.py", bytes: 256, everyMs: 200 };
  const url = server.add(SLOW);
  const up = settled(d, (app) => app.id === SLOW.sha);
  const started = Date.now();
  await hooks.broker.publish(`mpota/${id}/cmd`, appCommand(signer, id, 1, `j-${id}`, SLOW, url), true);
  await up;
  // The file did take longer than the broker waits for a silent client.
  assert.ok(Date.now() - started > KEEPALIVE * 1500, `the update took ${Date.now() - started} ms`);

  assert.ok(d.output.includes("big 8182"), "the new app ran");
  // The broker never gave up on the board: no will, and one try did it.
  assert.equal(hooks.broker.on(`mpota/${id}/status`).includes("offline"), false, "the will was published");
  assert.equal(d.output.filter((l) => l === `mpota: update boot for job j-${id}`).length, updateBoot ? 1 : 0);
  assert.deepEqual(
    server.since(0).map((q) => q.what),
    ["manifest", "big.py", "main.py"],
  );
  const done = acks(d, `j-${id}`).at(-1);
  assert.deepEqual([done?.files, done?.of, done?.done], [2, 2, true]);
  return { sent, fromBig };
}

const pingsAfter = (sent: number[], from: number) =>
  sent.slice(from).filter((t) => t === MqttPacketType.PINGREQ).length;

test("a file slower than 1.5 keep-alives: the update boot pings between chunks and keeps its one connection", async () => {
  const { sent, fromBig } = await slowUpdate("slow-boot", true);
  // One connection: CONNECT first, DISCONNECT last, none between; pings while big.py trickled in.
  assert.equal(sent[0], MqttPacketType.CONNECT);
  assert.equal(sent.at(-1), MqttPacketType.DISCONNECT);
  assert.equal(sent.filter((t) => t === MqttPacketType.CONNECT).length, 1);
  const pings = pingsAfter(sent, fromBig);
  assert.ok(pings >= 2, `the update boot pinged ${pings} times while big.py arrived`);
});

test("the same under the agent (APP_UPDATE_BOOT off, as on an ESP32): umqtt.simple's ping keeps the agent's connection", async () => {
  const { sent, fromBig } = await slowUpdate("slow-agent", false);
  // No reconnect from the command to the reset into the new app, which ends with a DISCONNECT.
  assert.equal(sent.filter((t) => t === MqttPacketType.CONNECT).length, 0);
  assert.equal(sent.at(-1), MqttPacketType.DISCONNECT);
  const pings = pingsAfter(sent, fromBig);
  assert.ok(pings >= 2, `the agent pinged ${pings} times while big.py arrived`);
});
