import assert from "node:assert/strict";
import { test } from "node:test";
import type { AgentDevice } from "../../src/agent-host/agent-device.ts";
import { SimulatedDevice } from "../../src/simulator/simulated-device.ts";
import { SimulatedEsp32Device } from "../../src/simulator/simulated-esp32-device.ts";
import { buildSyntheticFirmware, firmwareIdentity } from "../../src/simulator/synthetic-firmware.ts";
import {
  addressPool,
  CMD_KEYS,
  command,
  FAST,
  key,
  pushImage,
  SHORT_GPIO,
  stateWhere,
} from "../simulator/support.ts";
import { buildEsp32AppImage, esp32Identity } from "../support/esp32-image.ts";
import { ImageServer, sha256Hex, signedPull } from "./pull-support.ts";
import { brokerHooks, CommandSigner } from "./support.ts";

// After a firmware update the board resets into the new firmware, and the
// broker hands over the job's command again: the server withdraws it only
// once it reads the new fw in the state, which the agent sends after it has
// subscribed. That command is the job just done, not an attack: the agent
// ignores it without the "replayed" note. An older command, as an attacker
// may have captured it, is still noted. The unmodified agent under
// MicroPython 1.27 (wasm): an ESP8266 on the yaota8266 emulator, pushed over
// UDP, and an ESP32 that pulls over HTTP (the emulated board and bootloader).

const hooks = brokerHooks();
const { cleanups } = hooks;

/**
 * Publishes `older` once the board runs the new firmware, and resolves with every "replayed" note
 * up to the note it gives that one: the agent takes commands in order, so by then it has seen the
 * job's command again.
 */
async function replayNotes(d: AgentDevice, id: string, older: string, olderSeq: number): Promise<string[]> {
  const noted = d.waitFor("stdout", (l) => l.startsWith(`mpota: ignored replayed cmd, seq ${olderSeq} <=`));
  await hooks.broker.publish(`mpota/${id}/cmd`, older, false);
  await noted;
  return d.output.filter((l) => l.includes("replayed"));
}

test("ESP8266 (yaota8266): the retained command of the update just done is ignored without a note; an older one is a replay", async () => {
  const id = "fw-done-8266";
  const imageA = buildSyntheticFirmware({ size: 40_000, seed: 1 });
  const imageB = buildSyntheticFirmware({ size: 48_000, seed: 2 });
  const fwB = firmwareIdentity(imageB) as string;
  const device = new SimulatedDevice({
    id,
    address: addressPool()(),
    broker: hooks.broker.url,
    key,
    firmware: imageA,
    timing: FAST,
    settings: SHORT_GPIO,
    agent: { commandKeys: CMD_KEYS },
  });
  cleanups.push(() => device.stop());
  await device.start();
  await stateWhere(hooks.broker, id, () => true);
  // Signed before the job's command (a lower seq) and never sent until the end.
  const older = command(id, "j-older", fwB, imageB.length);
  const job = command(id, "j-fw", fwB, imageB.length);
  const [olderSeq, jobSeq] = [older, job].map((c) => (JSON.parse(c) as { seq: number }).seq) as [
    number,
    number,
  ];
  const acked = device.agent.nextPublish("ack");
  await hooks.broker.publish(`mpota/${id}/cmd`, job, true);
  const ack = JSON.parse((await acked).payload.toString()) as { ip: string; port: number; ready: boolean };
  assert.equal(ack.ready, true);
  await device.waitForStatus("ota", 10_000);
  await pushImage({ address: ack.ip, port: ack.port }, imageB);
  const s = await stateWhere(hooks.broker, id, (x) => x.fw === fwB);
  assert.equal(s.seq, jobSeq);
  assert.deepEqual(await replayNotes(device.agent, id, older, olderSeq), [
    `mpota: ignored replayed cmd, seq ${olderSeq} <= ${jobSeq}`,
  ]);
  assert.equal(device.agent.published.filter((m) => m.topic.endsWith("/ack")).length, 1, "taken once");
  await hooks.broker.publish(`mpota/${id}/cmd`, "", true);
});

test("ESP32 (pull): the retained command of the update just done is ignored without a note; an older one is a replay", async () => {
  const id = "fw-done-esp32";
  const PASSWORD = "s3cret";
  const signer = new CommandSigner();
  const A = { size: 120_000, seed: 11 };
  const B = { size: 300_000, seed: 12 };
  const imageB = buildEsp32AppImage(B);
  const fwB = esp32Identity(B).slice(0, 32);
  const server = await ImageServer.start(id, PASSWORD);
  cleanups.push(() => server.close());
  const dev = new SimulatedEsp32Device({
    id,
    broker: hooks.broker.url,
    firmware: buildEsp32AppImage(A),
    agent: {
      commandKeys: [signer.modulusHex],
      config: { MQTT_USER: id, MQTT_PASSWORD: PASSWORD, RETRY_MS: 200 },
    },
  });
  cleanups.push(() => dev.stop());
  const d = dev.agent;
  const online = d.waitFor(
    "published",
    (m) => m.topic.endsWith("/status") && m.payload.toString() === "online",
  );
  await dev.start();
  await online;
  const url = server.add(fwB, imageB);
  const pull = (seq: number, job: string) =>
    signedPull(
      {
        dev: id,
        seq,
        job,
        fw: fwB,
        size: imageB.length,
        ver: "1.28.0",
        down: 0,
        sha: sha256Hex(imageB),
        url,
      },
      signer,
    );
  const done = d.waitFor("stdout", (l) => l === "mpota: job j-pull done", 60_000);
  await hooks.broker.publish(`mpota/${id}/cmd`, pull(2, "j-pull"), true);
  await done;
  const s = JSON.parse(
    (d.published.filter((m) => m.topic.endsWith("/state")).at(-1)?.payload ?? "{}").toString(),
  ) as { fw: string; seq: number };
  assert.deepEqual([s.fw, s.seq], [fwB, 2]);
  assert.deepEqual(await replayNotes(d, id, pull(1, "j-older"), 1), [
    "mpota: ignored replayed cmd, seq 1 <= 2",
  ]);
  assert.equal(d.published.filter((m) => m.topic.endsWith("/ack") && m.payload.includes("ready")).length, 1);
  await hooks.broker.publish(`mpota/${id}/cmd`, "", true);
});
