import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { afterEach, describe, it } from "node:test";
import { connectAsync, type IClientOptions } from "mqtt";
import type { JobDetail, JobProgressMessage } from "../../../src/server/api/api.ts";
import { BridgeClient } from "../../../src/server/bridge/bridge-client.ts";
import type { MqttConnection } from "../../../src/server/mqtt/mqtt-connect.ts";
import type { ServerOptions } from "../../../src/server/server-options.ts";
import { buildMicroPythonImage, imageIdentity } from "../../support/images.ts";
import type { TestBroker } from "./brokers.ts";
import { CorruptingFlash } from "./corrupting-flash.ts";
import { DeviceTwin, MAIN_APP_OFFSET, type TwinOptions } from "./device-twin.ts";
import { startTestServer, type TestServer, tempDir } from "./test-server.ts";
import { eventually } from "./wait.ts";

export const V1 = buildMicroPythonImage({ size: 40000, seed: 21 });
export const V2 = buildMicroPythonImage({ size: 44000, seed: 22 });
export const ID1 = imageIdentity(V1);
export const ID2 = imageIdentity(V2);

export async function jobEnd(bridge: BridgeClient, id: string, timeoutMs = 20_000): Promise<JobDetail> {
  return eventually(
    async () => {
      const job = await bridge.request("job", { id });
      return job.finishedAt !== null ? job : undefined;
    },
    `job ${id} to end`,
    timeoutMs,
  );
}

export function flashHolds(twin: DeviceTwin, image: Uint8Array): boolean {
  return Buffer.from(twin.flash.read(MAIN_APP_OFFSET, image.length)).equals(Buffer.from(image));
}

/** Step kinds of a job, without the informational device-state/device-status steps. */
export const kinds = (job: JobDetail) =>
  job.steps.map((s) => s.kind).filter((k) => k !== "device-state" && k !== "device-status");

/**
 * The commands a fresh subscriber (a tool, with the admin's or the broker's
 * login) gets on a device's command topic within 200 ms: the retained one, if any.
 */
async function retainedCommands(url: string, options: IClientOptions, id: string): Promise<string[]> {
  const topic = `mpota/${id}/cmd`;
  const client = await connectAsync(url, { ...options, reconnectPeriod: 0 });
  const got: string[] = [];
  client.on("message", (t, payload) => {
    if (t === topic && payload.length > 0) got.push(payload.toString());
  });
  await client.subscribeAsync(topic, { qos: 1 });
  await new Promise((resolve) => setTimeout(resolve, 200));
  await client.endAsync();
  return got;
}

/** Where the suite's server and devices meet. */
export interface BrokerSetup {
  /** The server starts its own embedded broker for the tests that do not restart it. */
  embedded: boolean;
  /** A broker that outlives servers (for the restart tests, and every test when not embedded). */
  external: () => Promise<TestBroker>;
}

interface Rig {
  s: TestServer;
  bridge: BridgeClient;
  connection: MqttConnection;
  clientOptions: IClientOptions;
  twins: DeviceTwin[];
  twin(options: Partial<TwinOptions> & { id: string }): Promise<DeviceTwin>;
  known(id: string, fw?: string): Promise<unknown>;
  close(): Promise<void>;
}

async function startRig(
  setup: BrokerSetup,
  dataDir: string,
  options: Partial<ServerOptions> = {},
): Promise<Rig> {
  const broker = setup.embedded ? undefined : await setup.external();
  const s = await startTestServer(dataDir, {
    ...(broker ? { broker: { kind: "external", connection: broker.connection } } : {}),
    ...options,
  });
  const connection = broker ? broker.connection : { url: s.url };
  const clientOptions = broker ? broker.clientOptions : {};
  const bridge = await BridgeClient.connect({ connection });
  await bridge.request("firmware/add", {
    image: Buffer.from(V2).toString("base64"),
    name: "sensor",
    version: "2.0",
  });
  const rig: Rig = {
    s,
    bridge,
    connection,
    clientOptions,
    twins: [],
    async twin(o) {
      const d = new DeviceTwin({ url: connection.url, image: V1, mqttOptions: clientOptions, ...o });
      rig.twins.push(d);
      await d.start();
      return d;
    },
    known: (id, fw = ID1) =>
      eventually(
        async () => (await bridge.request("devices", {})).some((d) => d.id === id && d.fw === fw),
        `${id} reports ${fw}`,
      ),
    async close() {
      for (const twin of rig.twins.splice(0)) await twin.close();
      await bridge.close();
      await s.stop();
      await broker?.stop();
    },
  };
  return rig;
}

/**
 * The update flows end to end, with emulated yaota8266 devices on real UDP
 * sockets and agents over MQTT, run over any broker setup (the embedded
 * Aedes, Mosquitto with credentials, Mosquitto over TLS).
 */
export function defineJobSuite(label: string, setup: BrokerSetup, skip: string | false = false): void {
  describe(`update jobs end to end over ${label}`, { skip }, () => {
    let t: ReturnType<typeof tempDir>;
    let rig: Rig | undefined;
    const start = async (options: Partial<ServerOptions> = {}) => {
      t = tempDir();
      rig = await startRig(setup, t.dir, { maxAttempts: 3, ...options });
      return rig;
    };
    afterEach(async () => {
      await rig?.close();
      rig = undefined;
      t?.remove();
    });

    it("updates an always-on device at once", async () => {
      const { bridge, twin, known, s, connection, clientOptions } = await start();
      const dev = await twin({ id: "kitchen" });
      await known("kitchen");
      const progress: JobProgressMessage[] = [];
      const job = await bridge.request("update", { device: "kitchen", firmware: "sensor@2.0" });
      const stop = await bridge.watchJob(job.id, (m) => progress.push(m));
      const end = await jobEnd(bridge, job.id);
      await stop();
      assert.equal(end.state, "succeeded", end.error ?? "");
      assert.equal(end.error, null);
      assert.equal(end.percent, 100);
      assert.equal(end.attempt, 1);
      assert.deepEqual(kinds(end), ["created", "command", "ack", "push-started", "push-done", "succeeded"]);
      assert.equal(end.target, `127.0.0.1:${dev.endpoint.port}`);
      assert.ok(flashHolds(dev, V2), "the new image is in the device's flash");
      assert.deepEqual(dev.boots, [ID1, ID2]);
      const view = await eventually(
        async () => (await bridge.request("devices", {})).find((d) => d.fw === ID2),
        "kitchen on v2",
      );
      assert.deepEqual(view.firmware, { id: ID2, name: "sensor", version: "2.0" });
      assert.equal(view.job, null);
      // The retained command is cleared: a fresh subscriber gets nothing.
      assert.deepEqual(await retainedCommands(connection.url, clientOptions, "kitchen"), []);
      // Progress was published along the way; the last retained message says done.
      const states = progress.map((m) => m.state);
      assert.ok(states.includes("pushing") && states.at(-1) === "succeeded", states.join(","));
      assert.ok(
        progress.some((m) => m.state === "pushing" && m.percent > 0 && m.percent < 100),
        "intermediate progress",
      );
      assert.deepEqual(
        { ...progress.at(-1), updatedAt: 0, rate: 0, retransmits: 0 },
        {
          job: job.id,
          device: "kitchen",
          firmware: { id: ID2, name: "sensor", version: "2.0" },
          state: "succeeded",
          percent: 100,
          bytes: V2.length,
          total: V2.length,
          rate: 0,
          retransmits: 0,
          attempt: 1,
          maxAttempts: 3,
          error: null,
          updatedAt: 0,
        },
      );
      assert.deepEqual(s.logs.warnings(), []);
    });

    it("updates a sleepy device on its next wake", async () => {
      const { bridge, twin, known } = await start();
      const dev = await twin({ id: "garden", sleepMs: 1500, windowMs: 200 });
      await known("garden");
      await eventually(
        async () => (await bridge.request("device", { id: "garden" })).status === "sleeping",
        "garden asleep",
      );
      const created = Date.now();
      const job = await bridge.request("update", { device: "garden", firmware: "sensor@2.0" });
      // The job waits for the device (the scheduler takes it up a moment after it is created).
      await eventually(
        async () => (await bridge.request("job", { id: job.id })).state === "waiting",
        "the job waits for garden",
      );
      const end = await jobEnd(bridge, job.id);
      assert.equal(end.state, "succeeded", end.error ?? "");
      const ack = end.steps.find((st) => st.kind === "ack");
      assert.ok(ack, "the device took the command");
      assert.ok(
        ack.at - created <= 1500 + 200 + 1000,
        `taken within one wake cycle (after ${ack.at - created} ms)`,
      );
      const woke = end.steps.find((st) => st.kind === "device-state");
      assert.ok(woke && woke.at <= ack.at && /Device woke running/.test(woke.message));
      assert.ok(flashHolds(dev, V2));
    });

    it("pushes again when the new image fails its checksum, and recovers", async () => {
      const { bridge, twin, known } = await start();
      const flash = new CorruptingFlash(MAIN_APP_OFFSET);
      const dev = await twin({ id: "cellar", flash });
      await known("cellar");
      flash.armed = 1;
      const job = await bridge.request("update", { device: "cellar", firmware: "sensor@2.0" });
      const end = await jobEnd(bridge, job.id);
      assert.equal(end.state, "succeeded", end.error ?? "");
      assert.equal(flash.corrupted, 1);
      assert.equal(end.attempt, 2);
      assert.deepEqual(kinds(end), [
        "created",
        "command",
        "ack",
        "push-started",
        "push-done",
        "verify-timeout",
        "push-started",
        "push-done",
        "succeeded",
      ]);
      assert.match(
        end.steps.find((st) => st.kind === "verify-timeout")?.message ?? "",
        /probably sits in OTA mode \(its checksum failed\)/,
      );
      assert.ok(flashHolds(dev, V2));
      assert.deepEqual(dev.boots, [ID1, ID2]);
    });

    it("fails with the reason when the device never comes back", async () => {
      const { bridge, twin, known, connection, clientOptions } = await start();
      const dev = await twin({ id: "shed" });
      await known("shed");
      dev.emulator.events.on("otaFinished", () => {
        dev.agentEnabled = false;
        setImmediate(() => dev.emulator.powerOff());
      });
      const job = await bridge.request("update", { device: "shed", firmware: "sensor@2.0" });
      const end = await jobEnd(bridge, job.id, 30_000);
      assert.equal(end.state, "failed");
      assert.equal(end.attempt, 3);
      assert.match(
        end.error ?? "",
        /^Device shed has not come back since the push at .*: no state on its topic and no answer in OTA mode at 127\.0\.0\.1:\d+\. It may not boot the new firmware .* Gave up after 3 tries\. When the cause is fixed, run `mpota update shed sensor@2\.0` again/,
      );
      assert.equal(kinds(end).filter((k) => k === "push-started").length, 3);
      assert.equal(kinds(end).at(-1), "failed");
      assert.deepEqual(
        await retainedCommands(connection.url, clientOptions, "shed"),
        [],
        "the command is withdrawn when the job fails",
      );
    });
  });

  describe(`update jobs across server restarts over ${label}`, { skip }, () => {
    it("finishes a job whose push was cut off by a server stop, from a fresh OTA mode", async () => {
      const t = tempDir();
      const broker = await setup.external();
      const options: Partial<ServerOptions> = {
        broker: { kind: "external", connection: broker.connection },
        // The emulated receiver resets after PKT_WAIT (1 s) + IDLE_REBOOT (2 s), each checked on a 1 s tick, + boot.
        timings: { receiverResetMs: 6000 },
      };
      let twin: DeviceTwin | undefined;
      let s: TestServer | undefined;
      let bridge: BridgeClient | undefined;
      try {
        s = await startTestServer(t.dir, options);
        const first = await BridgeClient.connect({ connection: broker.connection });
        bridge = first;
        await first.request("firmware/add", {
          image: Buffer.from(V2).toString("base64"),
          name: "sensor",
          version: "2.0",
        });
        twin = new DeviceTwin({
          url: broker.connection.url,
          id: "boiler",
          image: V1,
          mqttOptions: broker.clientOptions,
        });
        await twin.start();
        await eventually(
          async () => (await first.request("devices", {})).some((d) => d.fw === ID1),
          "boiler known",
        );
        const job = await first.request("update", { device: "boiler", firmware: "sensor" });
        await eventually(
          () => (twin?.emulator.receiverState?.expectedOffset ?? 0) >= 16384 || undefined,
          "push under way",
        );
        bridge = undefined;
        await first.close();
        const stopping = s;
        s = undefined;
        await stopping.stop();
        const stopped = twin.emulator.receiverState;
        assert.ok(stopped && stopped.expectedOffset < V2.length, "stopped mid-push");
        s = await startTestServer(t.dir, options);
        const again = await BridgeClient.connect({ connection: broker.connection });
        bridge = again;
        // Until the push goes on, the job shows how far the stopped server's push came (stored as it
        // stopped), not 0 or its first progress.
        const shown = await again.request("job", { id: job.id });
        assert.ok(
          shown.bytes > 4096 && shown.bytes <= stopped.expectedOffset,
          `${shown.bytes} bytes shown, the receiver at ${stopped.expectedOffset}`,
        );
        const end = await jobEnd(again, job.id, 30_000);
        assert.equal(end.state, "succeeded", end.error ?? "");
        assert.deepEqual(kinds(end), [
          "created",
          "command",
          "ack",
          "push-started",
          "interrupted",
          "push-started",
          "push-done",
          "succeeded",
        ]);
        assert.match(
          end.steps.find((st) => st.kind === "interrupted")?.message ?? "",
          /Waiting 6\.0 s for the receiver to reset/,
        );
        assert.ok(flashHolds(twin, V2));
        assert.deepEqual(twin.boots, [ID1, ID2]);
      } finally {
        // Also when an assertion failed half-way: a server left running would hold the test open.
        await bridge?.close();
        await s?.stop();
        await twin?.close();
        await broker.stop();
        t.remove();
      }
    });

    it("takes over a job from a server that was killed mid-push, once its lease runs out", async () => {
      const t = tempDir();
      const broker = await setup.external();
      const timings = { receiverResetMs: 6000, leaseMs: 1500 };
      let twin: DeviceTwin | undefined;
      const child = spawn(
        process.execPath,
        [
          "--import",
          "tsx",
          new URL("./server-process.ts", import.meta.url).pathname,
          t.dir,
          JSON.stringify(broker.connection),
          JSON.stringify(timings),
        ],
        { stdio: ["ignore", "pipe", "inherit"] },
      );
      try {
        await new Promise<void>((resolve, reject) => {
          child.stdout.on("data", (chunk: Buffer) => {
            if (chunk.toString().includes("ready")) resolve();
          });
          child.on("exit", (code) => reject(new Error(`server process exited early (${code})`)));
        });
        const bridge = await BridgeClient.connect({ connection: broker.connection });
        await bridge.request("firmware/add", {
          image: Buffer.from(V2).toString("base64"),
          name: "sensor",
          version: "2.0",
        });
        // The server runs in another process: the device is provisioned through its bridge, as `mpota devices add` does.
        await bridge.request("devices/add", { id: "heater" });
        twin = new DeviceTwin({
          url: broker.connection.url,
          id: "heater",
          image: V1,
          mqttOptions: broker.clientOptions,
        });
        await twin.start();
        await eventually(
          async () => (await bridge.request("devices", {})).some((d) => d.fw === ID1),
          "heater known",
        );
        const job = await bridge.request("update", { device: "heater", firmware: "sensor" });
        await eventually(
          () => (twin?.emulator.receiverState?.expectedOffset ?? 0) >= 16384 || undefined,
          "push under way",
        );
        child.kill("SIGKILL");
        await new Promise((resolve) => child.on("close", resolve));
        const s = await startTestServer(t.dir, {
          broker: { kind: "external", connection: broker.connection },
          timings,
        });
        const end = await jobEnd(bridge, job.id, 30_000);
        assert.equal(end.state, "succeeded", end.error ?? "");
        assert.ok(kinds(end).includes("interrupted"));
        assert.ok(flashHolds(twin, V2));
        await bridge.close();
        await s.stop();
      } finally {
        child.kill("SIGKILL");
        await twin?.close();
        await broker.stop();
        t.remove();
      }
    });
  });
}
