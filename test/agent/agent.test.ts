import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, afterEach, before, describe, test } from "node:test";
import { AgentDevice } from "../../src/agent-host/agent-device.ts";
import type { AgentDeviceOptions } from "../../src/agent-host/agent-device-options.ts";
import { DEVICE_DIR } from "../../src/agent-host/agent-files.ts";
import { buildFlash } from "../../src/agent-host/flash-source.ts";
import { MqttPacketType } from "../../src/agent-host/mqtt-packets.ts";
import { ResetCause } from "../../src/agent-host/reset-cause.ts";
import { VirtualClock } from "../../src/net/clock.ts";
import { buildMicroPythonImage, imageIdentity } from "../support/images.ts";
import { CommandSigner, MuteRelay, TestBroker } from "./support.ts";

// The device agent's own files (device/) under MicroPython 1.27 (wasm), against a real broker.

const image = buildMicroPythonImage({ size: 48_000, seed: 7 });
const fw = imageIdentity(image);
const otherFw = imageIdentity(buildMicroPythonImage({ size: 52_000, seed: 8 }));

let broker: TestBroker;
const devices: AgentDevice[] = [];
// The devices trust this key (CMD_KEYS); every command they obey is signed with it.
const signer = new CommandSigner();

before(async () => {
  broker = await TestBroker.start();
});
afterEach(async () => {
  await Promise.all(devices.splice(0).map((d) => d.close()));
});
after(async () => {
  await broker.close();
});

function device(options: Partial<AgentDeviceOptions> & { id: string }): AgentDevice {
  const d = new AgentDevice({
    broker: broker.url,
    flash: buildFlash(image),
    commandKeys: [signer.modulusHex],
    ...options,
  });
  devices.push(d);
  return d;
}

const cmd = (dev: string, job: string, target: string, size = 600_000) =>
  signer.ota({ dev, job, fw: target, size });
const topics = (d: AgentDevice) => d.published.map((m) => `${m.topic.split("/")[2]}=${m.payload.toString()}`);

describe("check-in at boot", () => {
  test("state carries the MD5 trailer read from flash and the device's facts, then status online; both retained", async () => {
    const d = device({
      id: "boot-1",
      vbat: 3.05,
      wifi: { ip: "192.168.1.23", rssi: -55 },
    });
    await d.powerOn();
    await broker.seen("mpota/boot-1/status", "online");

    const state = JSON.parse(await broker.seen("mpota/boot-1/state"));
    assert.deepEqual(
      { ...state, mem: typeof state.mem },
      {
        v: 2,
        fw,
        ver: "v1.27.0 on 2025-12-10",
        ip: "192.168.1.23",
        flash: 1_048_576,
        mem: "number",
        rssi: -55,
        wake: "power",
        sleep: 0,
        seq: 0,
        keys: [signer.kid],
        vbat: 3.05,
      },
    );
    assert.ok(state.mem > 0);
    // State comes before anything else, both retained at QoS 1.
    const [first, second] = d.published;
    assert.deepEqual([first?.topic, first?.retain, first?.qos], ["mpota/boot-1/state", true, 1]);
    assert.deepEqual(
      [second?.topic, second?.payload.toString(), second?.retain],
      ["mpota/boot-1/status", "online", true],
    );
    assert.equal(await broker.retained("mpota/boot-1/status"), "online");
    assert.equal(JSON.parse(await broker.retained("mpota/boot-1/state")).fw, fw);
  });

  test("without DEVICE_ID the id is the hex of machine.unique_id(); no vbat without a battery reader", async () => {
    const d = new AgentDevice({
      broker: broker.url,
      flash: buildFlash(image),
      uniqueId: Uint8Array.of(0xa1, 0xb2, 0xc3, 0xd4),
    });
    devices.push(d);
    await d.powerOn();
    const state = JSON.parse(await broker.seen("mpota/a1b2c3d4/state"));
    assert.equal(state.fw, fw);
    assert.equal("vbat" in state, false);
  });

  test("an unclean drop leaves the last will: status offline, retained", async () => {
    const d = device({ id: "will-1" });
    await d.powerOn();
    await broker.seen("mpota/will-1/status", "online");
    await d.powerOff();
    await broker.seen("mpota/will-1/status", "offline");
    assert.equal(await broker.retained("mpota/will-1/status"), "offline");
  });
});

describe("update command", () => {
  test("a retained cmd found at check-in: ack ready, status ota, clean disconnect, RTC magic, reset", async () => {
    await broker.publish("mpota/ota-1/cmd", cmd("ota-1", "j-7f3a", otherFw), true);
    const d = device({ id: "ota-1", sleepSeconds: 300, wifi: { ip: "192.168.1.40" } });
    const ota = d.waitFor("ota");
    await d.powerOn();
    const { rtc } = await ota;

    assert.equal(Buffer.from(rtc).toString(), "yaotaota");
    assert.equal(d.phase, "ota");
    assert.deepEqual(
      d.published.map((m) => [m.topic, m.retain]),
      [
        ["mpota/ota-1/state", true],
        ["mpota/ota-1/status", true],
        ["mpota/ota-1/ack", false],
        ["mpota/ota-1/status", true],
      ],
    );
    assert.deepEqual(
      d.published.filter((m) => m.topic.endsWith("/status")).map((m) => m.payload.toString()),
      ["online", "ota"],
    );
    const ack = JSON.parse(d.published[2]?.payload.toString() ?? "");
    assert.deepEqual(ack, { job: "j-7f3a", ready: true, ip: "192.168.1.40", port: 8266 });
    assert.deepEqual(JSON.parse(await broker.seen("mpota/ota-1/ack")), ack);
    // Clean disconnect: the broker keeps status=ota, no last will.
    assert.equal(await broker.retained("mpota/ota-1/status"), "ota");
    await broker.publish("mpota/ota-1/cmd", "", true);
  });

  test("an always-on device acts on a command as soon as it arrives", async () => {
    const d = device({ id: "live-1" });
    let disconnects = 0;
    d.on("packet", (p) => {
      if (p.type === MqttPacketType.DISCONNECT) disconnects++;
    });
    await d.powerOn();
    await broker.seen("mpota/live-1/status", "online");
    const ota = d.waitFor("ota");
    await broker.publish("mpota/live-1/cmd", cmd("live-1", "j-live", otherFw), true);
    const { rtc } = await ota;
    assert.equal(Buffer.from(rtc).toString(), "yaotaota");
    assert.deepEqual(JSON.parse(await broker.seen("mpota/live-1/ack")), {
      job: "j-live",
      ready: true,
      ip: "127.0.0.1",
      port: 8266,
    });
    assert.deepEqual(topics(d).slice(-1), ["status=ota"]);
    assert.equal(disconnects, 1);
    await broker.publish("mpota/live-1/cmd", "", true);
  });

  test("a cmd naming the running firmware is ignored: no ack, the device goes on to sleep", async () => {
    await broker.publish("mpota/same-1/cmd", cmd("same-1", "j-same", fw), true);
    const d = device({ id: "same-1", sleepSeconds: 60 });
    const sleep = d.waitFor("deepsleep");
    await d.powerOn();
    assert.deepEqual(await sleep, { ms: 60_000 });
    assert.equal(d.published.filter((m) => m.topic.endsWith("/ack")).length, 0);
    assert.ok(d.output.some((l) => l.includes("j-same") && l.includes("running firmware")));
    assert.deepEqual(topics(d).slice(-1), ["status=sleeping"]);
    assert.equal(d.rtc.length, 0);
    await broker.publish("mpota/same-1/cmd", "", true);
  });

  test("battery below MIN_VBAT: ack ready:false 'battery low', no reset", async () => {
    await broker.publish("mpota/batt-1/cmd", cmd("batt-1", "j-batt", otherFw), true);
    const d = device({ id: "batt-1", sleepSeconds: 60, vbat: 2.9, minVbat: 3.3 });
    const sleep = d.waitFor("deepsleep");
    await d.powerOn();
    await sleep;
    assert.deepEqual(JSON.parse(await broker.seen("mpota/batt-1/ack")), {
      job: "j-batt",
      ready: false,
      error: "battery low",
    });
    assert.equal(d.rtc.length, 0);
    assert.equal(d.published.filter((m) => m.payload.toString() === "ota").length, 0);
    await broker.publish("mpota/batt-1/cmd", "", true);
  });

  test("an image larger than the firmware area: ack ready:false with the sizes", async () => {
    await broker.publish("mpota/room-1/cmd", cmd("room-1", "j-room", otherFw, 700_000), true);
    const d = device({ id: "room-1", sleepSeconds: 60 });
    const sleep = d.waitFor("deepsleep");
    await d.powerOn();
    await sleep;
    // esp.flash_user_start() 0xd4000 - MAIN_APP_OFFSET 0x3c000 = 622592 bytes.
    assert.deepEqual(JSON.parse(await broker.seen("mpota/room-1/ack")), {
      job: "j-room",
      ready: false,
      error: "no room: 700000 > 622592 bytes",
    });
    await broker.publish("mpota/room-1/cmd", "", true);
  });

  test("malformed commands are ignored with a printed note; a good one still works after them", async () => {
    const d = device({ id: "bad-1" });
    await d.powerOn();
    await broker.seen("mpota/bad-1/status", "online");
    const bad = [
      "not json{",
      "[1, 2]",
      '"ota"',
      '{"op": "ota"}',
      `{"op": "ota", "job": "j-x", "fw": "abc"}`,
      `{"op": "reboot", "job": "j-x", "fw": "${otherFw}"}`,
      `{"op": "ota", "job": 7, "fw": "${otherFw}"}`,
      `{"op": "ota", "job": "j-x", "fw": "${otherFw}", "size": "big"}`,
    ];
    for (const payload of bad) {
      const note = d.waitFor("stdout", (l) => l.includes("ignored malformed cmd"));
      await broker.publish("mpota/bad-1/cmd", payload, false);
      await note;
    }
    assert.equal(d.phase, "running");
    const ota = d.waitFor("ota");
    await broker.publish("mpota/bad-1/cmd", cmd("bad-1", "j-good", otherFw), false);
    await ota;
    assert.deepEqual(
      d.published.filter((m) => m.topic.endsWith("/ack")).map((m) => JSON.parse(m.payload.toString()).job),
      ["j-good"],
    );
  });

  test("an empty retained cmd (cleared by the server) is no command", async () => {
    await broker.publish("mpota/clear-1/cmd", "", true);
    const d = device({ id: "clear-1", sleepSeconds: 30 });
    const sleep = d.waitFor("deepsleep");
    await d.powerOn();
    assert.deepEqual(await sleep, { ms: 30_000 });
    assert.equal(d.output.filter((l) => l.includes("cmd")).length, 0);
  });
});

describe("deep sleep", () => {
  test("a sleepy device publishes status sleeping and sleeps its period; the wake reports wake=deepsleep", async () => {
    const clock = new VirtualClock();
    const d = device({ id: "sleepy-1", sleepSeconds: 5, clock });
    const sleep = d.waitFor("deepsleep");
    await d.powerOn();
    assert.deepEqual(await sleep, { ms: 5000 });
    assert.equal(await broker.seen("mpota/sleepy-1/status", "sleeping"), "sleeping");
    assert.equal(await broker.retained("mpota/sleepy-1/status"), "sleeping");
    assert.equal(JSON.parse(d.published[0]?.payload.toString() ?? "").sleep, 5);
    assert.deepEqual(
      topics(d).filter((t) => !t.startsWith("state=")),
      ["status=online", "adc=0", "status=sleeping"],
    );

    const woke = d.waitFor("booted");
    const secondState = d.waitFor("published", (m) => m.topic === "mpota/sleepy-1/state" && d.boots === 2);
    await clock.advance(4999);
    assert.equal(d.boots, 1);
    await clock.advance(1);
    assert.deepEqual(await woke, { cause: ResetCause.DEEPSLEEP_RESET, count: 2 });
    const state = JSON.parse((await secondState).payload.toString());
    assert.equal(state.wake, "deepsleep");
    await d.waitFor("deepsleep");
  });

  test("awakeMs keeps a sleepy device awake after check-in (machine.lightsleep) before it publishes", async () => {
    const d = device({ id: "slow-1", sleepSeconds: 20, awakeMs: 200, autoWake: false });
    const sleep = d.waitFor("deepsleep");
    await d.powerOn();
    assert.deepEqual(await sleep, { ms: 20_000 });
    assert.deepEqual(
      topics(d).filter((t) => !t.startsWith("state=")),
      ["status=online", "adc=0", "status=sleeping"],
    );
    assert.deepEqual(d.output, []);
  });

  test("a sleep period beyond the ~71 min deep-sleep limit is clamped to 4294 s, with a note", async () => {
    const d = device({ id: "long-1", sleepSeconds: 10_000, autoWake: false });
    const sleep = d.waitFor("deepsleep");
    await d.powerOn();
    assert.deepEqual(await sleep, { ms: 4_294_000 });
    assert.equal(JSON.parse(d.published[0]?.payload.toString() ?? "").sleep, 4294);
    assert.ok(d.output.some((l) => l.includes("SLEEP 10000 s is above the deep-sleep limit")));
  });

  test("boot(DEEPSLEEP_RESET) chosen by the caller carries RTC memory and reports the wake", async () => {
    const d = device({ id: "wake-1", sleepSeconds: 60, autoWake: false, rtc: Buffer.from("keep me") });
    const sleep = d.waitFor("deepsleep");
    await d.powerOn();
    await sleep;
    assert.equal(d.phase, "sleeping");
    const state = d.waitFor("published", (m) => m.topic === "mpota/wake-1/state");
    await d.boot(ResetCause.DEEPSLEEP_RESET);
    assert.equal(JSON.parse((await state).payload.toString()).wake, "deepsleep");
    assert.equal(Buffer.from(d.rtc).toString(), "keep me");
  });
});

describe("when the network fails", () => {
  test("no broker: checkin() returns False with a note, and the sensor still goes back to sleep", async () => {
    const d = device({ id: "nobroker-1", sleepSeconds: 60, broker: "mqtt://127.0.0.1:1" });
    const sleep = d.waitFor("deepsleep");
    await d.powerOn();
    assert.deepEqual(await sleep, { ms: 60_000 });
    assert.deepEqual(d.published, []);
    assert.ok(
      d.output.some((l) => l.startsWith("mpota: offline: OSError(104")),
      d.output.join("\n"),
    );
  });

  test("no WiFi: checkin() gives up after WIFI_TIMEOUT_MS, and the sensor still goes back to sleep", async () => {
    const d = device({
      id: "nowifi-1",
      sleepSeconds: 60,
      wifi: { connected: false },
      config: { WIFI_TIMEOUT_MS: 200 },
    });
    const sleep = d.waitFor("deepsleep");
    await d.powerOn();
    await sleep;
    assert.deepEqual(d.published, []);
    assert.ok(d.output.includes("mpota: offline: OSError('no WiFi',)"), d.output.join("\n"));
  });

  test("an always-on device reconnects after an outage and reports its state again", async () => {
    const d = device({ id: "outage-1", config: { RETRY_MS: 100 } });
    await d.powerOn();
    await broker.seen("mpota/outage-1/status", "online");
    const back = d.waitFor(
      "published",
      (m) => m.topic === "mpota/outage-1/status" && m.payload.toString() === "online",
    );
    d.dropConnections();
    await broker.seen("mpota/outage-1/status", "offline");
    await back;
    assert.deepEqual(await broker.seenCount("mpota/outage-1/status", 3), ["online", "offline", "online"]);
    assert.equal(d.published.filter((m) => m.topic === "mpota/outage-1/state").length, 2);
    assert.equal(d.boots, 1);
    assert.ok(
      d.output.some((l) => l.startsWith("mpota: connection lost: OSError(104")),
      d.output.join("\n"),
    );
  });
});

describe("a broker that takes the connection and never answers", () => {
  // A hung broker, or one whose host is gone with the connection half open: no CONNACK ever
  // comes. The agent's connect times out after its keep-alive (here 1 s) with ETIMEDOUT, the
  // port's error for a socket timeout, and the try fails as a refused one does.
  const relays: MuteRelay[] = [];
  afterEach(async () => {
    await Promise.all(relays.splice(0).map((r) => r.close()));
  });
  async function muteRelay(): Promise<MuteRelay> {
    const relay = await MuteRelay.start(broker.url);
    relays.push(relay);
    relay.mute = true;
    return relay;
  }
  const timedOut = (prefix: string) => (line: string) => line === `${prefix} OSError(110,)`;

  test("an always-on device gives up after a keep-alive, tries again after RETRY_MS, and is online once the broker answers", async () => {
    const relay = await muteRelay();
    const d = device({ id: "mute-on-1", broker: relay.url, keepalive: 1, config: { RETRY_MS: 100 } });
    let lost = 0;
    d.on("stdout", (line) => {
      if (timedOut("mpota: connection lost:")(line)) lost++;
    });
    const second = d.waitFor("stdout", () => lost === 2, 15_000);
    await d.powerOn();
    await second;
    assert.ok(relay.muted >= 2, `each try was a new connection (${relay.muted})`);
    const online = broker.seen("mpota/mute-on-1/status", "online", 15_000);
    relay.mute = false;
    await online;
    assert.equal(JSON.parse(await broker.seen("mpota/mute-on-1/state")).fw, fw);
    assert.equal(d.boots, 1, "no reset: the same loop went on");
    assert.equal(d.phase, "running");
    // The tries that gave up closed their sockets: only the live connection is open.
    assert.equal(relay.open, 1);
  });

  test("a sleepy device's check-in gives up after a keep-alive and it goes back to deep sleep; the next wake checks in", async () => {
    const relay = await muteRelay();
    const d = device({
      id: "mute-sleep-1",
      broker: relay.url,
      keepalive: 1,
      sleepSeconds: 60,
      autoWake: false,
    });
    const sleep = d.waitFor("deepsleep", undefined, 15_000);
    await d.powerOn();
    assert.deepEqual(await sleep, { ms: 60_000 });
    assert.ok(d.output.some(timedOut("mpota: offline:")), d.output.join("\n"));
    assert.deepEqual(d.published, []);
    relay.mute = false;
    const online = broker.seen("mpota/mute-sleep-1/status", "online");
    await d.boot(ResetCause.DEEPSLEEP_RESET);
    await online;
    assert.equal(relay.muted, 1);
  });

  test("a broker that hangs after its CONNACK and SUBACK: the publish waiting for its PUBACK gives up after a keep-alive, and the next try goes through", async () => {
    const relay = await muteRelay();
    relay.mute = false;
    relay.answerBytes = 4 + 5; // CONNACK, then SUBACK for the one topic; no PUBACK for the state
    const d = device({ id: "mute-mid-1", broker: relay.url, keepalive: 1, config: { RETRY_MS: 100 } });
    const lost = d.waitFor("stdout", timedOut("mpota: connection lost:"), 15_000);
    await d.powerOn();
    await lost;
    // The state reached the broker; the agent never saw it acknowledged, so it went no further.
    assert.equal(JSON.parse(await broker.seen("mpota/mute-mid-1/state")).fw, fw);
    assert.ok(!broker.on("mpota/mute-mid-1/status").includes("online"));
    relay.answerBytes = undefined;
    await broker.seen("mpota/mute-mid-1/status", "online", 15_000);
    assert.equal(d.boots, 1);
  });

  test("with an umqtt.simple whose connect() takes no timeout (frozen before v1.25) the agent still connects", async () => {
    // mpota's client under another name, with connect() as umqtt.simple had it before 1.5.
    const old = [
      "from umqtt_mpota import MQTTClient as _C",
      "",
      "",
      "class MQTTClient(_C):",
      "    def connect(self, clean_session=True):",
      "        return _C.connect(self, clean_session)",
      "",
    ].join("\n");
    const files = {
      "lib/umqtt_mpota.py": readFileSync(join(DEVICE_DIR, "lib/umqtt/simple.py"), "utf8"),
      "lib/umqtt/simple.py": old,
    };
    const d = device({ id: "old-umqtt-1", files });
    await d.powerOn();
    await broker.seen("mpota/old-umqtt-1/status", "online").catch((e) => {
      throw new Error(`${e}\n${d.output.join("\n")}`);
    });
    assert.ok(!d.output.some((l) => l.includes("offline")), d.output.join("\n"));
  });
});

describe("a broker that goes silent mid-session", () => {
  // The broker stops answering without closing the connection (its process stopped while its
  // host's kernel still takes the bytes, or a NAT that dropped the flow). umqtt.simple's
  // wait_msg() and check_msg() return None for a PINGRESP as for nothing, so the agent counts
  // any byte it can read as the broker's sign of life. Its pings go out half a keep-alive
  // apart on its own clock; after two with nothing back (1.5 keep-alives of silence, MQTT's
  // rule for a broker) it drops the connection and connects again.
  const relays: MuteRelay[] = [];
  afterEach(async () => {
    await Promise.all(relays.splice(0).map((r) => r.close()));
  });

  // umqtt.simple 1.5 and later, frozen from v1.25: connect() leaves its timeout on the socket,
  // every wait_msg() makes the socket blocking after its first byte, and the waits for an
  // acknowledgement set no timeout of their own: after the first message every read waits
  // for good unless the caller sets one. mpota's client under another name, with those rules.
  const frozen = {
    "lib/umqtt_mpota.py": readFileSync(join(DEVICE_DIR, "lib/umqtt/simple.py"), "utf8"),
    "lib/umqtt/simple.py": [
      "from umqtt_mpota import MQTTClient as _C",
      "",
      "",
      "class MQTTClient(_C):",
      "    def _await(self, kind, pid):",
      "        while True:",
      "            self.wait_msg()",
      "            a = self._ack",
      "            if a and a[0] == kind and a[1] == pid:",
      "                self._ack = None",
      "                return a[2]",
      "",
      "    def wait_msg(self):",
      "        self.t = None  # the first read keeps the socket's timeout; blocking after it",
      "        return _C.wait_msg(self)",
      "",
    ].join("\n"),
  };

  // A main loop that counts on `n` at QoS 1 after each poll.
  const qos1Loop = [
    "from mpota_agent import Agent",
    "a = Agent()",
    "n = 0",
    "while True:",
    "    if a.poll(100):",
    "        n += 1",
    "        a.publish('n', n, False, 1)",
  ].join("\n");

  for (const [client, files] of [
    ["mpota's own umqtt.simple", undefined],
    ["a frozen-like umqtt.simple (timeout on the connect only)", frozen],
  ] as const) {
    test(`with ${client}: the agent notices after two unanswered pings, connects again, reports online, and a command then reaches it`, async () => {
      const relay = await MuteRelay.start(broker.url);
      relays.push(relay);
      const id = files ? "silent-frozen-1" : "silent-own-1";
      const d = device({
        id,
        broker: relay.url,
        keepalive: 1,
        config: { RETRY_MS: 100 },
        ...(files ? { files } : {}),
      });
      // What the device sends from the moment the broker went silent.
      let after: number[] | undefined;
      d.on("packet", (p) => {
        if (after) after.push(p.type);
        // Right after one of its pings: that ping's answer never comes.
        else if (p.type === MqttPacketType.PINGREQ && broker.on(`mpota/${id}/status`).includes("online")) {
          relay.silence();
          after = [];
        }
      });
      const again = d.waitFor(
        "published",
        (m) => m.topic === `mpota/${id}/status` && m.payload.toString() === "online" && after !== undefined,
        20_000,
      );
      await d.powerOn();
      await again;
      // One more ping, both unanswered, then a new connection: no third ping on the silent one.
      const connect = (after ?? []).indexOf(MqttPacketType.CONNECT);
      assert.deepEqual((after ?? []).slice(0, connect), [MqttPacketType.PINGREQ]);
      assert.ok(d.output.includes("mpota: connection lost: OSError('no ping answer',)"), d.output.join("\n"));
      // The broker saw it go (the last will) and come back, with its state reported again.
      assert.deepEqual(await broker.seenCount(`mpota/${id}/status`, 3), ["online", "offline", "online"]);
      assert.equal(d.published.filter((m) => m.topic === `mpota/${id}/state`).length, 2);
      const ota = d.waitFor("ota");
      await broker.publish(`mpota/${id}/cmd`, cmd(id, "j-back", otherFw), true);
      await ota;
      assert.equal(JSON.parse(await broker.seen(`mpota/${id}/ack`)).job, "j-back");
      assert.equal(d.boots, 1, "no reset until the command: the same loop went on");
      await broker.publish(`mpota/${id}/cmd`, "", true);
    });
  }

  test("with a frozen-like umqtt.simple, a broker that goes silent before a QoS 1 publish fails it after KEEPALIVE; the agent connects again", async () => {
    const relay = await MuteRelay.start(broker.url);
    relays.push(relay);
    const id = "silent-pub-1";
    const d = device({
      id,
      broker: relay.url,
      keepalive: 1,
      main: qos1Loop,
      config: { RETRY_MS: 100 },
      files: frozen,
    });
    let silenced = false;
    d.on("published", (m) => {
      // The third count goes out and its PUBACK never comes.
      if (!silenced && m.topic === `mpota/${id}/n` && m.payload.toString() === "3") {
        relay.silence();
        silenced = true;
      }
    });
    const again = d.waitFor(
      "published",
      (m) => m.topic === `mpota/${id}/status` && m.payload.toString() === "online" && silenced,
      20_000,
    );
    await d.powerOn();
    await again;
    assert.ok(
      d.output.some((l) => l.startsWith("mpota: publish failed: OSError(110")),
      d.output.join("\n"),
    );
    assert.deepEqual(await broker.seenCount(`mpota/${id}/status`, 3), ["online", "offline", "online"]);
  });

  test("a loop that publishes at QoS 1 right after each poll keeps its connection: the ack's wait reads the PINGRESP, and the ack counts as the broker's answer", async () => {
    const d = device({ id: "qos1-loop-1", keepalive: 1, main: qos1Loop });
    let pings = 0;
    let connects = 0;
    d.on("packet", (p) => {
      if (p.type === MqttPacketType.PINGREQ) pings++;
      if (p.type === MqttPacketType.CONNECT) connects++;
    });
    const sixth = d.waitFor("packet", () => pings >= 6, 20_000);
    await d.powerOn();
    await sixth;
    assert.equal(connects, 1, d.output.join("\n"));
    assert.ok(!d.output.some((l) => l.includes("connection lost")), d.output.join("\n"));
  });
});

describe("ota.start() and keepalive", () => {
  test("ota.start() writes b'yaotaota' to RTC memory and resets; the caller decides what boots next", async () => {
    const main = [
      "import machine, ota",
      "print('rtc', machine.RTC().memory())",
      "if machine.reset_cause() == machine.PWRON_RESET:",
      "    ota.start()",
      "    print('never here')",
    ].join("\n");
    const d = device({ id: "repl-1", main });
    const reset = d.waitFor("reset");
    await d.powerOn();
    assert.deepEqual(await reset, { rtc: Uint8Array.from(Buffer.from("yaotaota")), ota: true });
    assert.equal(d.phase, "ota");
    assert.deepEqual(d.output, ["rtc b''"]);
    // Nothing boots by itself. The caller boots the app again, here with the
    // RTC memory boot8266 leaves after consuming the magic.
    d.rtc = Buffer.from("zaotaota");
    const ended = d.waitFor("ended");
    await d.boot(ResetCause.SOFT_RESET);
    assert.deepEqual(await ended, { kind: "exit" });
    assert.deepEqual(d.output, ["rtc b''", "rtc b'zaotaota'"]);
    assert.equal(d.phase, "halted");
  });

  test("an always-on device pings the broker itself (umqtt.simple sends no pings)", async () => {
    const d = device({ id: "ping-1", keepalive: 1 });
    const ping = d.waitFor("packet", (p) => p.type === MqttPacketType.PINGREQ);
    await d.powerOn();
    await ping;
    assert.equal(d.phase, "running");
  });
});
