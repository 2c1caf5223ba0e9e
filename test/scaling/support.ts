import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { connect, createServer } from "node:net";
import { join } from "node:path";
import { createInterface } from "node:readline";
import type { RolloutDetail } from "../../src/server/api/rollout-api.ts";
import { BridgeClient } from "../../src/server/bridge/bridge-client.ts";
import type { MqttConnection } from "../../src/server/mqtt/mqtt-connect.ts";
import type { RolloutState } from "../../src/server/storage/rollout-store.ts";
import { b64, V1, V2 } from "../rollouts/support.ts";
import { MOSQUITTO } from "../server/support/brokers.ts";
import { DeviceTwin } from "../server/support/device-twin.ts";
import { tempDir } from "../server/support/test-server.ts";
import { eventually } from "../server/support/wait.ts";
import { imageIdentity } from "../support/images.ts";

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (typeof address !== "object" || address === null) throw new Error("no port");
  return address.port;
}

/** Mosquitto (MQTT 5, shared subscriptions) on a fixed loopback port, so it can be restarted in place. */
export class RestartableMosquitto {
  private child: ChildProcess | undefined;

  private constructor(
    readonly port: number,
    private readonly config: string,
  ) {}

  static async start(dir: string): Promise<RestartableMosquitto> {
    const port = await freePort();
    const config = join(dir, "mosquitto.conf");
    writeFileSync(
      config,
      [`listener ${port} 127.0.0.1`, "allow_anonymous true", "persistence false", "log_dest none", ""].join(
        "\n",
      ),
    );
    const broker = new RestartableMosquitto(port, config);
    await broker.run();
    return broker;
  }

  get connection(): MqttConnection {
    return { url: `mqtt://127.0.0.1:${this.port}` };
  }

  private async run(): Promise<void> {
    const child = spawn(MOSQUITTO, ["-c", this.config], { stdio: "ignore" });
    this.child = child;
    // Ready when the port accepts a connection. (Probing by binding the port
    // ourselves, as this did, could hold it at the moment Mosquitto binds:
    // Mosquitto then exits with "address in use" and the wait times out.)
    await eventually(
      () => {
        if (child.exitCode !== null) throw new Error(`mosquitto exited with code ${child.exitCode}`);
        return new Promise<boolean>((resolve) => {
          const socket = connect(this.port, "127.0.0.1");
          socket.once("connect", () => {
            socket.destroy();
            resolve(true);
          });
          socket.once("error", () => resolve(false));
        });
      },
      `mosquitto on ${this.port}`,
      10_000,
    );
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    child.kill("SIGTERM");
    await new Promise((resolve) => child.once("exit", resolve));
  }

  async restart(downMs = 500): Promise<void> {
    await this.stop();
    await new Promise((resolve) => setTimeout(resolve, downMs));
    await this.run();
  }
}

/** One `MpotaServer` in a child process (test/scaling/instance-process.ts). */
export class Instance {
  exited: Promise<number | null>;
  stderr = "";
  /** The dashboard's URL, when started with `http`. */
  http = "";

  private constructor(
    readonly id: string,
    readonly child: ChildProcess,
  ) {
    this.exited = new Promise((resolve) => child.once("exit", (code) => resolve(code)));
    child.stderr?.on("data", (chunk: Buffer) => {
      this.stderr = (this.stderr + chunk.toString()).slice(-20_000);
    });
  }

  static async start(config: {
    id: string;
    dataDir: string;
    db: string;
    connection: MqttConnection;
    firmwareDir?: string;
    timings?: object;
    maxPushes?: number;
    http?: boolean;
  }): Promise<Instance> {
    mkdirSync(config.dataDir, { recursive: true });
    const child = spawn(
      process.execPath,
      ["--import", "tsx", new URL("./instance-process.ts", import.meta.url).pathname, JSON.stringify(config)],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    const instance = new Instance(config.id, child);
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    await Promise.race([
      new Promise<void>((resolve) =>
        lines.once("line", (line) => {
          instance.http = line.slice("ready ".length).trim().replace(/\/$/, "");
          resolve();
        }),
      ),
      instance.exited.then((code) => {
        throw new Error(`instance ${config.id} exited (${code}) before it was ready: ${instance.stderr}`);
      }),
    ]);
    return instance;
  }

  kill(signal: NodeJS.Signals = "SIGKILL"): Promise<number | null> {
    if (this.child.exitCode === null) this.child.kill(signal);
    return this.exited;
  }
}

/** A fleet of device twins on one broker. */
export async function startTwins(
  connection: MqttConnection,
  ids: string[],
  bridge: BridgeClient,
): Promise<Map<string, DeviceTwin>> {
  // Provisioned first (as `mpota devices add` does), so the servers keep their command counters
  // and sign their commands; this Mosquitto lets anyone in, so the twins do not log in with it.
  await provision(bridge, ids);
  const twins = new Map<string, DeviceTwin>();
  for (let i = 0; i < ids.length; i += 20) {
    await Promise.all(
      ids.slice(i, i + 20).map(async (id) => {
        const twin = new DeviceTwin({
          url: connection.url,
          id,
          image: V1,
          mqttOptions: { reconnectPeriod: 300 },
        });
        twins.set(id, twin);
        await twin.start();
      }),
    );
  }
  const fw = imageIdentity(V1);
  await eventually(
    async () => {
      const known = await bridge.request("devices", {});
      return known.filter((d) => d.fw === fw && ids.includes(d.id)).length === ids.length;
    },
    `${ids.length} devices known`,
    30_000,
  );
  return twins;
}

/** Gives each device a credential on the servers of `bridge` (a new one if it had one). */
export async function provision(bridge: BridgeClient, ids: string[]): Promise<void> {
  const known = new Set((await bridge.request("devices/credentials", {})).map((c) => c.device));
  for (const id of ids) await bridge.request(known.has(id) ? "devices/rotate" : "devices/add", { id });
}

export async function addFirmware(bridge: BridgeClient): Promise<void> {
  await bridge.request("firmware/add", { image: b64(V1), name: "sensor", version: "1.0" });
  await bridge.request("firmware/add", { image: b64(V2), name: "sensor", version: "2.0" });
}

export function untilRollout(
  bridge: BridgeClient,
  id: string,
  states: RolloutState[],
  timeoutMs: number,
): Promise<RolloutDetail> {
  return eventually(
    async () => {
      const r = await bridge.request("rollout/show", { id, events: 1000 });
      return states.includes(r.state) ? r : undefined;
    },
    `rollout ${id} ${states.join(" or ")}`,
    timeoutMs,
  );
}

/**
 * Checks the pushes of every job: no two instances pushed one device at the
 * same time (each `push-started` is followed by its end before another
 * instance starts one, unless the job was taken over after its lease ran
 * out). Returns the instances that pushed, per device.
 */
export async function pushesByInstance(
  bridge: BridgeClient,
): Promise<{ byDevice: Map<string, string[]>; overlaps: string[]; mostAtOnce: number }> {
  const byDevice = new Map<string, string[]>();
  const overlaps: string[] = [];
  /** +1 at each push start, -1 at its end: the most pushes at once, all instances together. */
  const edges: Array<[number, number]> = [];
  const jobs = await bridge.request("jobs", { limit: 10_000 });
  for (const job of jobs) {
    const detail = await bridge.request("job", { id: job.id });
    let pushing: string | undefined;
    for (const step of detail.steps) {
      if (step.kind === "push-started") {
        const instance = String(step.data?.instance ?? "?");
        byDevice.set(job.device, [...(byDevice.get(job.device) ?? []), instance]);
        if (pushing !== undefined && pushing !== instance)
          overlaps.push(`${job.device}: ${instance} started while ${pushing} was pushing`);
        pushing = instance;
        edges.push([step.at, 1]);
      } else if (
        ["push-done", "push-failed", "interrupted", "succeeded", "failed", "cancelled"].includes(step.kind)
      ) {
        // "interrupted": the lease of a push ran out (its instance died) and another instance took the job over.
        if (pushing !== undefined) edges.push([step.at, -1]);
        pushing = undefined;
      }
    }
  }
  let now = 0;
  let mostAtOnce = 0;
  for (const [, delta] of edges.sort((x, y) => x[0] - y[0] || x[1] - y[1])) {
    now += delta;
    mostAtOnce = Math.max(mostAtOnce, now);
  }
  return { byDevice, overlaps, mostAtOnce };
}

export { BridgeClient, tempDir };

/** The named events of a dashboard's stream (/api/v1/events), as they arrive. */
export async function watchEvents(base: string) {
  const controller = new AbortController();
  const response = await fetch(`${base}/api/v1/events`, { signal: controller.signal });
  if (!response.ok || !response.body) throw new Error(`event stream: HTTP ${response.status}`);
  const events: Array<{ name: string; data: Record<string, unknown> }> = [];
  const decoder = new TextDecoder();
  let buffer = "";
  let name = "";
  (async () => {
    for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
      buffer += decoder.decode(chunk, { stream: true });
      for (let end = buffer.indexOf("\n"); end >= 0; end = buffer.indexOf("\n")) {
        const line = buffer.slice(0, end);
        buffer = buffer.slice(end + 1);
        if (line.startsWith("event: ")) name = line.slice(7);
        else if (line.startsWith("data: ")) events.push({ name, data: JSON.parse(line.slice(6)) });
      }
    }
  })().catch(() => undefined);
  return { events, close: () => controller.abort() };
}
