// npm run bench:fleet: one server (embedded broker, SQLite) in a process of
// its own, a simulated fleet (each device an emulated yaota8266 with the
// spec's timing model and the `lan` link on its own loopback address, a mix of
// always-on and sleepy), one rollout of a 128 KiB firmware across all of
// them. Then a registry row: many devices reporting state over MQTT only.
// Results: bench/results/fleet-<devices>.json and .svg (a run of some rows updates those
// rows there; without the rollout rows, esp32-fleet-<N>.json or app-fleet-<N>.json;
// MPOTA_BENCH_DIAG's runs write into its directory instead).
//
// Options: --devices N (1000)
//          --concurrency N (50)  --sleepy-share F (0.2)  --sleep S (20)
//          --registry N (10000; 0 skips the row)  --rounds N (3: rounds of reports)
//          --image-kib K (128)
//          --esp32 N (200; 0 skips the row): ESP32s (contract v3, scripted) that pull a
//          1.5 MiB release over HTTP from one server on SQLite, in a rollout
//          --apps N (200; 0 skips the row): Pico W boards (contract v3, op app, scripted) that
//          take a signed app release of 20 files over HTTP from one server on SQLite, fetching
//          only the 2 files that changed, in a rollout
//          --setups sqlite,pg1,pg2,pg3 (the rollout rows: one server on SQLite with its
//          embedded broker; 1-3 instances on a throwaway PostgreSQL and Mosquitto)
//          (--devices 0 skips the rollout rows)
// MPOTA_BENCH_DIAG=DIR: each server writes a CPU profile into DIR when it stops, and the
// ESP32 and app rows have it write heap snapshots (after a full GC) before and after their rollout
// (the snapshots take seconds and double the RSS for a while: its figures are not comparable).
import { type ChildProcess, spawn } from "node:child_process";
import { createHash, createPublicKey, generateKeyPairSync, type KeyObject } from "node:crypto";
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connectAsync, type MqttClient } from "mqtt";
import type { SignedAppManifest } from "../src/apps/app-manifest.ts";
import { signAppManifest } from "../src/apps/app-signature.ts";
import { DEFAULT_TIMING, deviceFloorMs } from "../src/emulator/timing.ts";
import { NodeUdpNetwork } from "../src/net/node-udp.ts";
import { seededRandom } from "../src/net/random.ts";
import { DEFAULT_SETTINGS } from "../src/protocol/config-h.ts";
import { generateKeyPair } from "../src/protocol/rsa-key.ts";
import type { RolloutDetail } from "../src/server/api/rollout-api.ts";
import { BridgeClient } from "../src/server/bridge/bridge-client.ts";
import { DEFAULT_JOB_TIMINGS } from "../src/server/jobs/job-timings.ts";
import { ADMIN_USERNAME } from "../src/server/mqtt/principals.ts";
import { COMMAND_KEY_FILE } from "../src/server/trust/command-key.ts";
import { loopbackAddresses, sleepyIndexes } from "../src/simulator/fleet.ts";
import { buildEsp32AppImage, esp32Identity } from "../src/simulator/synthetic-esp32-app.ts";
import { buildSyntheticFirmware, firmwareIdentity } from "../src/simulator/synthetic-firmware.ts";
import { freshDatabase, startPostgresCluster } from "../test/support/postgres.ts";
import { BenchAppDevice } from "./fleet-app-device.ts";
import { BenchDevice } from "./fleet-device.ts";
import { BenchEsp32Device } from "./fleet-esp32-device.ts";
import { mergeRows, readResults } from "./results-file.ts";

function option(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const value = Number(process.argv[i + 1]);
  if (!Number.isFinite(value) || value < 0) {
    console.error(`--${name} needs a number, not ${process.argv[i + 1]}`);
    process.exit(2);
  }
  return value;
}

const DEVICES = Math.floor(option("devices", 1000));
const CONCURRENCY = Math.max(1, Math.floor(option("concurrency", 50)));
const SLEEPY_SHARE = option("sleepy-share", 0.2);
const SLEEP_S = option("sleep", 20);
const REGISTRY = Math.floor(option("registry", 10_000));
/** Rounds of every registry device reporting again (10 s each). */
const REPORT_ROUNDS = Math.max(1, Math.floor(option("rounds", 3)));
const IMAGE_BYTES = Math.floor(option("image-kib", 128) * 1024);
const ESP32_DEVICES = Math.floor(option("esp32", 200));
/** Close to the OTA variant's 1.5 MiB slot, as real builds are. */
const ESP32_IMAGE_BYTES = 0x180000 - 4096;
/** From `machine.reset()` to the new firmware's first state (a typical ESP32 boot and WiFi join). */
const ESP32_BOOT_MS = 2000;
const APP_DEVICES = Math.floor(option("apps", 200));
/** The app: 20 files of 3 KiB (a few KiB each, as ESP8266 and Pico W apps are); the new release changes 2. */
const APP_FILES = 20;
const APP_FILE_BYTES = 3072;
const APP_CHANGED = [3, 11];
/** From `machine.reset()` to the new app's first state (a Pico W's boot and WiFi join). */
const APP_BOOT_MS = 2000;
const BLOCK = 256;
/** Rollout rows: "sqlite" (one server, embedded broker), "pg1", "pg2", "pg3" (instances on PostgreSQL + Mosquitto). */
const SETUPS = (() => {
  const i = process.argv.indexOf("--setups");
  const list = (i < 0 ? "sqlite,pg1,pg2,pg3" : (process.argv[i + 1] ?? "")).split(",").filter(Boolean);
  for (const setup of list) {
    if (!/^(sqlite|pg[1-9])$/.test(setup)) {
      console.error(`--setups takes sqlite, pg1, pg2, pg3 ... separated by commas, not "${setup}"`);
      process.exit(2);
    }
  }
  return list;
})();

interface ServerProcess {
  /** The broker, without credentials (what devices connect to). */
  url: string;
  /** The broker as mpota-admin with the admin token (embedded broker); else `url`. */
  adminUrl: string;
  /** The dashboard and API (no auth, loopback). */
  http: string;
  dataDir: string;
  pid: number;
  stats(): Promise<{ cpuSeconds: number; rssBytes: number; maxRssBytes: number }>;
  stop(): Promise<void>;
}

/** A free TCP port on loopback. */
function freePort(): Promise<number> {
  return new Promise<number>((resolve) => {
    const probe = createServer().listen(0, "127.0.0.1", () => {
      const address = probe.address();
      probe.close(() => resolve(typeof address === "object" && address ? address.port : 0));
    });
  });
}

/** CPU seconds, RSS and peak RSS of a process, from Linux's /proc. */
function processStats(pid: number): { cpuSeconds: number; rssBytes: number; maxRssBytes: number } {
  // utime and stime are fields 14 and 15, counted after the ")" that ends the command name.
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(fields[11]) + Number(fields[12]);
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kib = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? 0);
  return { cpuSeconds: ticks / CLOCK_TICKS, rssBytes: kib("VmRSS") * 1024, maxRssBytes: kib("VmHWM") * 1024 };
}
/** CPU seconds of a process with its reaped children (PostgreSQL's backends that ended) and live children. */
function treeCpuSeconds(pid: number): number {
  const fieldsOf = (p: number) => {
    const stat = readFileSync(`/proc/${p}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  };
  const own = fieldsOf(pid);
  let ticks = Number(own[11]) + Number(own[12]) + Number(own[13]) + Number(own[14]);
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const fields = fieldsOf(Number(entry));
      if (Number(fields[1]) === pid) ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // The process ended meanwhile.
    }
  }
  return ticks / CLOCK_TICKS;
}
/** USER_HZ: 100 on every Linux this runs on. */
const CLOCK_TICKS = 100;

/**
 * One `mpota serve` exactly as a user runs it (bin/mpota.js, the built
 * code, no TypeScript loader), measured from outside through /proc.
 */
async function startServer(config: {
  dataDir: string;
  keyFile: string;
  db?: string;
  mqtt?: string;
}): Promise<ServerProcess> {
  const httpPort = await freePort();
  const mqttPort = config.mqtt ? 0 : await freePort();
  const bin = new URL("../bin/mpota.js", import.meta.url).pathname;
  // The node flags of the bin's first line, as when it runs as the `mpota` command.
  const nodeFlags = (readFileSync(bin, "utf8").split("\n")[0] ?? "")
    .split(/\s+/)
    .filter((a) => a.startsWith("--"));
  const diag = process.env.MPOTA_BENCH_DIAG;
  const args = [
    ...nodeFlags,
    ...(diag
      ? ["--heapsnapshot-signal=SIGUSR2", `--diagnostic-dir=${diag}`, "--cpu-prof", `--cpu-prof-dir=${diag}`]
      : []),
    bin,
    "serve",
    "--data",
    config.dataDir,
    "--key",
    config.keyFile,
    "--max-pushes",
    String(CONCURRENCY),
    "--http-host",
    "127.0.0.1",
    "--http-port",
    String(httpPort),
    "--no-auth",
    "--log-level",
    "warn",
    ...(config.db ? ["--db", config.db] : []),
    ...(config.mqtt
      ? ["--mqtt", config.mqtt]
      : ["--mqtt-host", "127.0.0.1", "--mqtt-port", String(mqttPort)]),
  ];
  const child: ChildProcess = spawn(process.execPath, args, { stdio: ["ignore", "ignore", "inherit"] });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const url = config.mqtt ?? `mqtt://127.0.0.1:${mqttPort}`;
  const http = `http://127.0.0.1:${httpPort}`;
  // Ready when the dashboard answers (it starts after storage and the broker).
  for (let tries = 0; ; tries++) {
    const early = await Promise.race([
      exited,
      new Promise((resolve) => setTimeout(() => resolve("wait"), 200)),
    ]);
    if (early !== "wait") throw new Error(`mpota serve exited (${early}) before it was ready`);
    const up = await fetch(`${http}/api/v1/info`).then(
      (r) => r.ok,
      () => false,
    );
    if (up) break;
    if (tries > 300) throw new Error("mpota serve did not start within 60 s");
  }
  const pid = child.pid as number;
  // The embedded broker lets no one in anonymously: the bench's bridge client logs in as the admin.
  const token = readFileSync(join(config.dataDir, "admin-token"), "utf8").trim();
  const admin = new URL(url);
  admin.username = ADMIN_USERNAME;
  admin.password = encodeURIComponent(token);
  return {
    url,
    adminUrl: config.mqtt ? url : admin.toString().replace(/\/$/, ""),
    http,
    dataDir: config.dataDir,
    pid,
    stats: async () => processStats(pid),
    async stop() {
      child.kill("SIGTERM");
      await exited;
    },
  };
}

/** Where the rollout row runs: one server on SQLite, or N instances on PostgreSQL and Mosquitto. */
interface Deployment {
  label: string;
  /** The broker devices use. */
  url: string;
  /** The broker as the bridge client (an admin) logs in. */
  adminUrl: string;
  /** Devices log in with the credential provisioning gave them (the embedded broker); else anonymously. */
  deviceLogin: boolean;
  servers: ServerProcess[];
  /** CPU seconds so far of the shared parts (PostgreSQL and Mosquitto), when the set-up has them. */
  sharedCpuSeconds?: () => number;
  stop(): Promise<void>;
}

async function sqliteDeployment(keyFile: string): Promise<Deployment> {
  const dir = mkdtempSync(join(tmpdir(), "mpota-fleet-bench-"));
  const server = await startServer({ dataDir: dir, keyFile });
  return {
    label: "SQLite, embedded broker, 1 instance",
    url: server.url,
    adminUrl: server.adminUrl,
    deviceLogin: true,
    servers: [server],
    async stop() {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

let cluster: Awaited<ReturnType<typeof startPostgresCluster>> | undefined;

async function postgresDeployment(keyFile: string, instances: number): Promise<Deployment> {
  cluster ??= await startPostgresCluster();
  const dir = mkdtempSync(join(tmpdir(), "mpota-fleet-bench-pg-"));
  const db = await freshDatabase("bench", cluster.adminUrl);
  const broker = await startMosquitto(dir);
  const servers: ServerProcess[] = [];
  for (let i = 1; i <= instances; i++) {
    // Instances on one database sign with one command key: the first one makes it, the others get a copy.
    if (i > 1) {
      mkdirSync(join(dir, `i${i}`), { recursive: true });
      copyFileSync(join(dir, "i1", COMMAND_KEY_FILE), join(dir, `i${i}`, COMMAND_KEY_FILE));
    }
    servers.push(
      await startServer({
        dataDir: join(dir, `i${i}`),
        keyFile,
        db,
        mqtt: broker.url,
      }),
    );
  }
  const postmaster = Number(readFileSync(join(cluster.dir, "data", "postmaster.pid"), "utf8").split("\n")[0]);
  return {
    label: `PostgreSQL, Mosquitto, ${instances} instance${instances > 1 ? "s" : ""}`,
    url: broker.url,
    adminUrl: broker.url,
    // This Mosquitto lets anyone in; the devices are provisioned all the same (the server signs their commands).
    deviceLogin: false,
    servers,
    sharedCpuSeconds: () => treeCpuSeconds(postmaster) + treeCpuSeconds(broker.pid),
    async stop() {
      for (const server of servers) await server.stop();
      await broker.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Mosquitto on a free loopback port (anonymous, no persistence). */
async function startMosquitto(dir: string) {
  const port = await freePort();
  const config = join(dir, "mosquitto.conf");
  writeFileSync(
    config,
    `listener ${port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 10000\n`,
  );
  const child = spawn("/usr/sbin/mosquitto", ["-c", config], { stdio: "ignore" });
  const url = `mqtt://127.0.0.1:${port}`;
  for (let tries = 0; ; tries++) {
    try {
      const probe = await connectAsync(url, { reconnectPeriod: 0, connectTimeout: 1000 });
      await probe.endAsync();
      break;
    } catch (error) {
      if (tries > 50) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  return {
    url,
    pid: child.pid as number,
    async stop() {
      child.kill("SIGTERM");
      await new Promise((resolve) => child.once("exit", resolve));
    },
  };
}

/** The dashboard's event stream (/api/v1/events), calling `onDevice` with the id of every device event. */
async function openEventStream(base: string) {
  const controller = new AbortController();
  const response = await fetch(`${base}/api/v1/events`, { signal: controller.signal });
  if (!response.ok || !response.body) throw new Error(`event stream: HTTP ${response.status}`);
  const stream: { onDevice: (id: string) => void; close: () => void } = {
    onDevice: () => undefined,
    close: () => controller.abort(),
  };
  const decoder = new TextDecoder();
  let buffer = "";
  let event = "";
  (async () => {
    for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
      buffer += decoder.decode(chunk, { stream: true });
      let newline = buffer.indexOf("\n");
      while (newline >= 0) {
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + 1);
        if (line.startsWith("event: ")) event = line.slice(7);
        else if (line.startsWith("data: ") && event === "device") {
          stream.onDevice((JSON.parse(line.slice(6)) as { id: string }).id);
        } else if (line === "") event = "";
        newline = buffer.indexOf("\n");
      }
    }
  })().catch(() => undefined);
  return stream;
}

const quantile = (sorted: number[], q: number) =>
  sorted.length === 0 ? 0 : (sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number);
const mb = (bytes: number) => Math.round(bytes / 1024 / 1024);

async function stats(deployment: Deployment) {
  const each = await Promise.all(deployment.servers.map((s) => s.stats()));
  return {
    cpuSeconds: each.reduce((sum, e) => sum + e.cpuSeconds, 0),
    rssBytes: Math.max(...each.map((e) => e.rssBytes)),
    maxRssBytes: Math.max(...each.map((e) => e.maxRssBytes)),
    maxRssEachBytes: each.map((e) => e.maxRssBytes),
  };
}

/**
 * Gives each device a credential (as `mpota devices add` does), 50 requests
 * at a time; returns each device's secret.
 */
async function provision(bridge: BridgeClient, ids: string[]): Promise<Map<string, string>> {
  const secrets = new Map<string, string>();
  for (let i = 0; i < ids.length; i += 50) {
    await Promise.all(
      ids.slice(i, i + 50).map(async (id) => {
        secrets.set(id, (await bridge.request("devices/add", { id })).secret);
      }),
    );
  }
  return secrets;
}

/** Waits until `count` devices report `fw` (2 minutes at most: a device that never checks in stops the row). */
async function checkedIn(bridge: BridgeClient, fw: string, count: number, what: string): Promise<void> {
  const since = Date.now();
  for (;;) {
    const list = await bridge.request("devices", {});
    if (list.filter((d) => d.fw === fw).length === count) return;
    if (Date.now() - since > 120_000)
      throw new Error(
        `only ${list.length} of ${count} ${what} checked in within 2 minutes: see the server's log above`,
      );
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

/**
 * Follows a rollout of devices that fetch their release (the ESP32 and app
 * rows) each second until it stops running, printing its progress every 10
 * s and sampling the server's RSS; `check` runs first each second (a row
 * stops there when a board refused what it was sent).
 */
async function watchPulls(
  bridge: BridgeClient,
  deployment: Deployment,
  id: string,
  started: number,
  check: () => void = () => undefined,
): Promise<{ end: RolloutDetail; peakRss: number; rssDuring: number[] }> {
  let peakRss = 0;
  const rssDuring: number[] = [];
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, 1000));
    check();
    const r = await bridge.request("rollout/show", { id, events: 0 });
    const now = (await stats(deployment)).rssBytes;
    peakRss = Math.max(peakRss, now);
    rssDuring.push(now);
    if (rssDuring.length % 10 === 1)
      console.log(
        `  ${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s  scheduled ${r.counts.scheduled}  fetching ${r.counts.pushing}  verifying ${r.counts.verifying}  done ${r.counts.done}  failed ${r.counts.failed}  server RSS ${mb(now)} MB`,
      );
    if (r.state !== "running") return { end: r, peakRss, rssDuring };
  }
}

async function rolloutRow(deployment: Deployment, key: ReturnType<typeof generateKeyPair>["key"]) {
  console.log(`\n== ${deployment.label}`);
  const bridge = await BridgeClient.connect({ connection: { url: deployment.adminUrl }, timeoutMs: 60_000 });
  const v1 = buildSyntheticFirmware({ size: IMAGE_BYTES, seed: 1 });
  const v2 = buildSyntheticFirmware({ size: IMAGE_BYTES, seed: 2 });
  const fw1 = firmwareIdentity(v1) as string;
  const fw2 = firmwareIdentity(v2) as string;
  await bridge.request("firmware/add", {
    image: Buffer.from(v1).toString("base64"),
    name: "sensor",
    version: "1.0",
  });
  await bridge.request("firmware/add", {
    image: Buffer.from(v2).toString("base64"),
    name: "sensor",
    version: "2.0",
  });

  const network = new NodeUdpNetwork();
  const addresses = loopbackAddresses(DEVICES, "127.0.100.1");
  const sleepy = SLEEP_S > 0 ? sleepyIndexes(DEVICES, SLEEPY_SHARE) : new Set<number>();
  // Firmware changes to the new image per device (a sleepy device boots it again at every wake: not a change).
  const updates = new Map<string, number>();
  const running = new Map<string, string | undefined>();
  const provisionStarted = Date.now();
  const secrets = await provision(
    bridge,
    addresses.map((_, i) => `fleet-${i + 1}`),
  );
  console.log(`Provisioned ${DEVICES} devices in ${((Date.now() - provisionStarted) / 1000).toFixed(1)} s`);
  const devices = addresses.map(
    (address, i) =>
      new BenchDevice({
        id: `fleet-${i + 1}`,
        address,
        url: deployment.url,
        ...(deployment.deviceLogin ? { password: secrets.get(`fleet-${i + 1}`) as string } : {}),
        key,
        image: v1,
        network,
        random: seededRandom(1009 + i),
        sleepSeconds: sleepy.has(i) ? SLEEP_S : 0,
        onBoot: (fw) => {
          const id = `fleet-${i + 1}`;
          if (fw === fw2 && running.get(id) !== fw2) updates.set(id, (updates.get(id) ?? 0) + 1);
          if (fw !== undefined) running.set(id, fw);
        },
      }),
  );
  console.log(`Starting ${DEVICES} devices (${sleepy.size} sleepy, ${SLEEP_S} s) ...`);
  for (let i = 0; i < devices.length; i += 50)
    await Promise.all(devices.slice(i, i + 50).map((d) => d.start()));
  await checkedIn(bridge, fw1, DEVICES, "devices");
  const before = await stats(deployment);
  const sharedBefore = deployment.sharedCpuSeconds?.() ?? 0;
  const started = Date.now();
  const created = await bridge.request("rollout/create", {
    firmware: "sensor@2.0",
    line: "sensor",
    groups: "1,10%,rest",
    successThreshold: 95,
    errorThreshold: 10,
    concurrency: CONCURRENCY,
  });
  console.log(
    `Rollout ${created.id}: ${DEVICES} devices, groups ${created.groups.map((g) => g.size).join(" + ")}, concurrency ${CONCURRENCY}`,
  );
  const curve: Array<{ s: number; done: number }> = [];
  let end: RolloutDetail;
  let peakRss = 0;
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, 2000));
    const r = await bridge.request("rollout/show", { id: created.id, events: 0 });
    peakRss = Math.max(peakRss, (await stats(deployment)).rssBytes);
    curve.push({ s: (Date.now() - started) / 1000, done: r.counts.done });
    const line = `${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s  group ${r.currentGroup + 1}/${r.groups.length}  done ${r.counts.done}  pushing ${r.counts.pushing}  verifying ${r.counts.verifying}  failed ${r.counts.failed}`;
    if (process.stdout.isTTY) process.stdout.write(`\r  ${line}   `);
    else if (curve.length % 5 === 1) console.log(`  ${line}`);
    if (r.state !== "running") {
      end = r;
      break;
    }
  }
  if (process.stdout.isTTY) process.stdout.write("\n");
  const after = await stats(deployment);
  const sharedCpuSeconds = deployment.sharedCpuSeconds ? deployment.sharedCpuSeconds() - sharedBefore : null;
  const jobs = await bridge.request("jobs", { limit: DEVICES * 2 });
  const turnToVerified = end.devices
    .filter((d) => d.status === "done" && d.turnAt !== null && d.finishedAt !== null)
    .map((d) => ((d.finishedAt as number) - (d.turnAt as number)) / 1000)
    .sort((a, b) => a - b);
  const lastDone = Math.max(...end.devices.map((d) => d.finishedAt ?? 0));
  const minutes = (lastDone - (end.startedAt ?? started)) / 60_000;
  const floorMs =
    DEFAULT_JOB_TIMINGS.bootDelayMs +
    deviceFloorMs(IMAGE_BYTES, BLOCK) +
    DEFAULT_SETTINGS.gpioWaitMs +
    DEFAULT_TIMING.appBootMs;
  const row = {
    deployment: deployment.label,
    instances: deployment.servers.length,
    devices: DEVICES,
    sleepy: sleepy.size,
    sleepSeconds: SLEEP_S,
    concurrency: CONCURRENCY,
    imageBytes: IMAGE_BYTES,
    state: end.state,
    reason: end.reason,
    verified: end.counts.done,
    failed: end.counts.failed + end.counts.overdue,
    devicesPerMinute: end.counts.done / minutes,
    turnToVerifiedSeconds: {
      p50: quantile(turnToVerified, 0.5),
      p95: quantile(turnToVerified, 0.95),
      max: turnToVerified.at(-1) ?? 0,
    },
    pushesRetried: jobs.reduce((sum, j) => sum + Math.max(0, j.attempt - 1), 0),
    retransmits: jobs.reduce((sum, j) => sum + j.retransmits, 0),
    devicesUpdatedTwice: [...updates.values()].filter((n) => n > 1).length,
    /** All instances together. */
    serverCpuSeconds: after.cpuSeconds - before.cpuSeconds,
    /** PostgreSQL and Mosquitto (null: the embedded broker and SQLite run inside the server). */
    sharedCpuSeconds,
    /** The largest instance. */
    serverPeakRssMB: mb(Math.max(peakRss, after.maxRssBytes)),
    /** Each instance's peak. */
    serverPeakRssMBEach: after.maxRssEachBytes.map(mb),
    perDeviceFloorSeconds: floorMs / 1000,
    deviceModelBoundPerMinute: (CONCURRENCY * 60_000) / floorMs,
    curve,
  };
  await bridge.close();
  for (let i = 0; i < devices.length; i += 100)
    await Promise.all(devices.slice(i, i + 100).map((d) => d.close()));
  await deployment.stop();
  return row;
}

/**
 * ESP32s pull their release over HTTP from the server (contract v3): one
 * rollout of a 1.5 MiB image to ESP32_DEVICES scripted boards, CONCURRENCY at
 * a time, against one server on SQLite. What it shows is the server's side
 * of a pull fleet: its memory while it streams many images at once, its CPU
 * per device, and how fast devices that read at loopback speed get through.
 */
async function esp32Row(keyFile: string) {
  console.log(`\n== ESP32 pulls: ${ESP32_DEVICES} devices, SQLite, embedded broker, 1 instance`);
  const deployment = await sqliteDeployment(keyFile);
  const server = deployment.servers[0] as ServerProcess;
  const bridge = await BridgeClient.connect({ connection: { url: deployment.adminUrl }, timeoutMs: 60_000 });
  const banner = "v1.27.0 on 2025-12-09";
  const v1 = buildEsp32AppImage({ size: ESP32_IMAGE_BYTES, seed: 91, banner });
  const v2 = buildEsp32AppImage({ size: ESP32_IMAGE_BYTES, seed: 92, banner });
  const fw1 = esp32Identity({ seed: 91 }).slice(0, 32);
  const fw2 = esp32Identity({ seed: 92 }).slice(0, 32);
  for (const [image, version] of [
    [v1, "1.0"],
    [v2, "2.0"],
  ] as const) {
    const r = await fetch(
      `${server.http}/api/v1/firmware?name=board&version=${version}&filename=micropython.bin`,
      {
        method: "POST",
        body: image,
        headers: { "content-type": "application/octet-stream" },
      },
    );
    if (r.status !== 201)
      throw new Error(`adding the ESP32 release ${version}: HTTP ${r.status} ${await r.text()}`);
  }
  const ids = Array.from({ length: ESP32_DEVICES }, (_, i) => `esp-${i + 1}`);
  const secrets = await provision(bridge, ids);
  const commandKey = createPublicKey(readFileSync(join(server.dataDir, COMMAND_KEY_FILE)));
  const updates = new Map<string, number>();
  const devices = ids.map(
    (id) =>
      new BenchEsp32Device({
        id,
        url: deployment.url,
        password: secrets.get(id) as string,
        commandKey,
        fw: fw1,
        bootMs: ESP32_BOOT_MS,
        onBoot: (fw) => {
          if (fw === fw2) updates.set(id, (updates.get(id) ?? 0) + 1);
        },
      }),
  );
  for (let i = 0; i < devices.length; i += 50)
    await Promise.all(devices.slice(i, i + 50).map((d) => d.start()));
  await checkedIn(bridge, fw1, ESP32_DEVICES, "ESP32s");
  const diag = process.env.MPOTA_BENCH_DIAG;
  if (diag) await heapSnapshot(server, diag, "before");
  const before = await stats(deployment);
  const started = Date.now();
  const created = await bridge.request("rollout/create", {
    firmware: "board@2.0",
    line: "board",
    groups: "1,10%,rest",
    successThreshold: 95,
    errorThreshold: 10,
    concurrency: CONCURRENCY,
  });
  console.log(
    `Rollout ${created.id}: ${ESP32_DEVICES} ESP32s, groups ${created.groups.map((g) => g.size).join(" + ")}, concurrency ${CONCURRENCY}`,
  );
  const { end, peakRss, rssDuring } = await watchPulls(bridge, deployment, created.id, started);
  const after = await stats(deployment);
  const jobs = await bridge.request("jobs", { limit: ESP32_DEVICES * 2 });
  if (diag) await heapSnapshot(server, diag, "after");
  const lastDone = Math.max(...end.devices.map((d) => d.finishedAt ?? 0));
  const minutes = (lastDone - (end.startedAt ?? started)) / 60_000;
  const bytes = devices.reduce((sum, d) => sum + d.bytesFetched, 0);
  const sortedRss = [...rssDuring].sort((a, b) => a - b);
  const row = {
    devices: ESP32_DEVICES,
    concurrency: CONCURRENCY,
    imageBytes: ESP32_IMAGE_BYTES,
    bootMs: ESP32_BOOT_MS,
    state: end.state,
    reason: end.reason,
    verified: end.counts.done,
    failed: end.counts.failed + end.counts.overdue,
    devicesPerMinute: end.counts.done / minutes,
    bytesServed: bytes,
    servedMBPerSecond: bytes / 1024 / 1024 / (minutes * 60),
    devicesUpdatedTwice: [...updates.values()].filter((n) => n > 1).length,
    serverCpuSeconds: after.cpuSeconds - before.cpuSeconds,
    serverCpuMsPerDevice: ((after.cpuSeconds - before.cpuSeconds) * 1000) / Math.max(1, end.counts.done),
    serverRssBeforeMB: mb(before.rssBytes),
    serverRssDuringMB: { p50: mb(quantile(sortedRss, 0.5)), max: mb(peakRss) },
    serverPeakRssMB: mb(Math.max(peakRss, after.maxRssBytes)),
    turn: turnShares(end, jobs),
  };
  await bridge.close();
  await Promise.all(devices.map((d) => d.close()));
  await deployment.stop();
  return row;
}

/** The app's files: main.py and m01..m19.py of APP_FILE_BYTES each; `version` changes the modules of APP_CHANGED. */
function appFiles(version: string): Map<string, Buffer> {
  const files = new Map<string, Buffer>();
  const body = (head: string) =>
    Buffer.from(`${head}DATA = "${"x".repeat(APP_FILE_BYTES - head.length - 10)}"\n`);
  files.set("main.py", body("import m01, m03, m11\nprint('thermostat', m03.V, m11.V)\n"));
  for (let i = 1; i < APP_FILES; i++) {
    const v = APP_CHANGED.includes(i) ? version : "1.0.0";
    files.set(`m${String(i).padStart(2, "0")}.py`, body(`V = "${v}"\nI = ${i}\n`));
  }
  return files;
}

/** Signs a release of `files` with the owner's app key and adds it, files and all, through the bridge's app/add. */
async function addApp(
  bridge: BridgeClient,
  appKey: KeyObject,
  version: string,
  files: ReadonlyMap<string, Buffer>,
): Promise<SignedAppManifest> {
  const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");
  const manifest = signAppManifest(
    {
      name: "thermostat",
      version,
      boards: ["esp32", "esp8266", "rp2"],
      mpy: undefined,
      files: [...files].map(([path, bytes]) => ({ path, size: bytes.length, sha256: sha(bytes) })),
    },
    appKey,
  );
  await bridge.request("app/add", {
    manifest: manifest.bytes.toString("base64"),
    files: Object.fromEntries([...files.values()].map((b) => [sha(b), b.toString("base64")])),
  });
  return manifest;
}

/**
 * App updates (contract v3, op app): one rollout of a signed 20-file app
 * release to APP_DEVICES scripted Pico W boards, CONCURRENCY at a time,
 * against one server on SQLite. Each board runs the release before, so it
 * fetches the manifest and the 2 files that changed. What it shows is the
 * server's side of an app fleet: CPU and memory per device, and the HTTP
 * requests it answers (each with a device login and a job lookup).
 */
async function appRow(keyFile: string) {
  console.log(`\n== App updates: ${APP_DEVICES} Pico W boards, SQLite, embedded broker, 1 instance`);
  const deployment = await sqliteDeployment(keyFile);
  try {
    return await appRollout(deployment);
  } finally {
    await deployment.stop();
  }
}

async function appRollout(deployment: Deployment) {
  const server = deployment.servers[0] as ServerProcess;
  const bridge = await BridgeClient.connect({ connection: { url: deployment.adminUrl }, timeoutMs: 60_000 });
  // The owner's app key, kept off the server (`mpota app add --key`): the boards trust its modulus.
  const appKey = generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey;
  const v1 = appFiles("1.0.0");
  const v2 = appFiles("1.1.0");
  const m1 = await addApp(bridge, appKey, "1.0.0", v1);
  const m2 = await addApp(bridge, appKey, "1.1.0", v2);
  const changed = m2.files.filter((f) => !m1.files.some((g) => g.sha256 === f.sha256 && g.path === f.path));
  const ids = Array.from({ length: APP_DEVICES }, (_, i) => `pico-${i + 1}`);
  const secrets = await provision(bridge, ids);
  const commandKey = createPublicKey(readFileSync(join(server.dataDir, COMMAND_KEY_FILE)));
  const publicAppKey = createPublicKey(appKey);
  // The MicroPython build a Pico W reports as its fw (mpota_rp2.ident).
  const fw = createHash("sha256")
    .update("v1.27.0 on 2025-12-09; Raspberry Pi Pico W with RP2040")
    .digest("hex");
  const updates = new Map<string, number>();
  const devices = ids.map(
    (id) =>
      new BenchAppDevice({
        id,
        url: deployment.url,
        password: secrets.get(id) as string,
        commandKey,
        appKey: publicAppKey,
        app: { name: m1.name, version: m1.version, id: m1.id, files: m1.files },
        free: 600 * 1024,
        fw: fw.slice(0, 32),
        bootMs: APP_BOOT_MS,
        onBoot: (app) => {
          if (app === m2.id) updates.set(id, (updates.get(id) ?? 0) + 1);
        },
      }),
  );
  const broken = () => devices.find((d) => d.failure !== undefined)?.failure;
  try {
    for (let i = 0; i < devices.length; i += 50)
      await Promise.all(devices.slice(i, i + 50).map((d) => d.start()));
    for (const since = Date.now(); ; ) {
      const list = await bridge.request("devices", {});
      if (list.filter((d) => d.app?.id === m1.id).length === APP_DEVICES) break;
      if (Date.now() - since > 120_000)
        throw new Error(
          `only ${list.length} of ${APP_DEVICES} boards checked in within 2 minutes: see the server's log above`,
        );
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
    const diag = process.env.MPOTA_BENCH_DIAG;
    if (diag) await heapSnapshot(server, diag, "apps-before");
    const before = await stats(deployment);
    const started = Date.now();
    const created = await bridge.request("rollout/create", {
      firmware: `${m2.name}@${m2.version}`,
      line: m2.name,
      groups: "1,10%,rest",
      successThreshold: 95,
      errorThreshold: 10,
      concurrency: CONCURRENCY,
    });
    console.log(
      `Rollout ${created.id}: app ${m2.name} ${m2.version} (${m2.files.length} files, ${m2.total} bytes; ${changed.length} changed) to ${APP_DEVICES} boards, groups ${created.groups.map((g) => g.size).join(" + ")}, concurrency ${CONCURRENCY}`,
    );
    const { end, peakRss, rssDuring } = await watchPulls(bridge, deployment, created.id, started, () => {
      const failure = broken();
      if (failure)
        throw new Error(`a board refused what the server sent, so this run measures nothing: ${failure}`);
    });
    const after = await stats(deployment);
    const failure = broken();
    if (failure)
      throw new Error(`a board refused what the server sent, so this run measures nothing: ${failure}`);
    const jobs = await bridge.request("jobs", { limit: APP_DEVICES * 2 });
    if (diag) await heapSnapshot(server, diag, "apps-after");
    const lastDone = Math.max(...end.devices.map((d) => d.finishedAt ?? 0));
    const minutes = (lastDone - (end.startedAt ?? started)) / 60_000;
    const sum = (f: (d: BenchAppDevice) => number) => devices.reduce((total, d) => total + f(d), 0);
    const requests = sum((d) => d.httpRequests);
    const sortedRss = [...rssDuring].sort((a, b) => a - b);
    const cpu = after.cpuSeconds - before.cpuSeconds;
    return {
      devices: APP_DEVICES,
      concurrency: CONCURRENCY,
      appFiles: m2.files.length,
      appBytes: m2.total,
      changedFiles: changed.length,
      manifestBytes: m2.bytes.length,
      bootMs: APP_BOOT_MS,
      state: end.state,
      reason: end.reason,
      verified: end.counts.done,
      failed: end.counts.failed + end.counts.overdue,
      devicesPerMinute: end.counts.done / minutes,
      filesServed: sum((d) => d.filesFetched),
      bytesServed: sum((d) => d.bytesFetched),
      httpRequests: requests,
      httpRequestsPerDevice: requests / Math.max(1, end.counts.done),
      devicesUpdatedTwice: [...updates.values()].filter((n) => n > 1).length,
      serverCpuSeconds: cpu,
      serverCpuMsPerDevice: (cpu * 1000) / Math.max(1, end.counts.done),
      serverRssBeforeMB: mb(before.rssBytes),
      serverRssDuringMB: { p50: mb(quantile(sortedRss, 0.5)), max: mb(peakRss) },
      serverPeakRssMB: mb(Math.max(peakRss, after.maxRssBytes)),
      turn: turnShares(end, jobs),
    };
  } finally {
    await bridge.close();
    await Promise.all(devices.map((d) => d.close()));
  }
}

/**
 * Where a slot's time goes (seconds, mean and p90): a device's job from its
 * creation to its end (command, ack, fetch, boot, state), and the wait of a
 * freed slot until the next device's job exists (the engine's next look,
 * then the jobs it creates one after another). Taken in the largest group,
 * whose k-th job after the first CONCURRENCY takes the slot of its k-th job
 * to end.
 */
function turnShares(
  end: RolloutDetail,
  jobs: Array<{ id: string; createdAt: number; finishedAt: number | null }>,
) {
  const byId = new Map(jobs.map((j) => [j.id, j]));
  const sizes = new Map<number, number>();
  for (const d of end.devices) sizes.set(d.group, (sizes.get(d.group) ?? 0) + 1);
  const largest = [...sizes].sort((a, b) => b[1] - a[1])[0]?.[0];
  const group = end.devices
    .filter((d) => d.group === largest)
    .map((d) => byId.get(d.job ?? ""))
    .filter((j) => j?.finishedAt != null) as Array<{ createdAt: number; finishedAt: number }>;
  const created = group.map((j) => j.createdAt).sort((a, b) => a - b);
  const ended = group.map((j) => j.finishedAt).sort((a, b) => a - b);
  const waits = created.slice(CONCURRENCY).map((at, k) => (at - (ended[k] as number)) / 1000);
  const lives = group.map((j) => (j.finishedAt - j.createdAt) / 1000);
  const summary = (xs: number[]) => {
    const sorted = [...xs].sort((a, b) => a - b);
    const mean = xs.reduce((sum, x) => sum + x, 0) / Math.max(1, xs.length);
    return { mean: Math.round(mean * 100) / 100, p90: quantile(sorted, 0.9) };
  };
  return { jobSeconds: summary(lives), freedSlotWaitSeconds: summary(waits) };
}

/** Has the server write a heap snapshot (after a full GC) into `dir`, renamed `<label>.heapsnapshot`. */
async function heapSnapshot(server: ServerProcess, dir: string, label: string): Promise<void> {
  const known = new Set(readdirSync(dir));
  const rss = processStats(server.pid).rssBytes;
  process.kill(server.pid, "SIGUSR2");
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, 500));
    const made = readdirSync(dir).find((f) => f.endsWith(".heapsnapshot") && !known.has(f));
    if (made === undefined) continue;
    const size = () => readFileSync(join(dir, made)).length;
    let last = -1;
    while (size() !== last) {
      last = size();
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
    renameSync(join(dir, made), join(dir, `${label}.heapsnapshot`));
    console.log(`  heap snapshot ${label}: RSS ${mb(rss)} MB before it`);
    return;
  }
}

async function registryRow(keyFile: string) {
  const dir = mkdtempSync(join(tmpdir(), "mpota-fleet-registry-"));
  const server = await startServer({ dataDir: dir, keyFile });
  const bridge = await BridgeClient.connect({ connection: { url: server.adminUrl }, timeoutMs: 60_000 });
  const idle = await server.stats();
  const clients: MqttClient[] = [];
  const state = (i: number, n: number) =>
    JSON.stringify({ v: 2, fw: "ab".repeat(16), ip: `10.1.${i >> 8}.${i & 255}`, sleep: 300, mem: n });
  const provisionStarted = Date.now();
  const secrets = await provision(
    bridge,
    Array.from({ length: REGISTRY }, (_, i) => `reg-${i}`),
  );
  const provisionSeconds = (Date.now() - provisionStarted) / 1000;
  console.log(`Provisioned ${REGISTRY} devices in ${provisionSeconds.toFixed(1)} s`);
  const started = Date.now();
  console.log(`Connecting ${REGISTRY} devices that report their state ...`);
  for (let i = 0; i < REGISTRY; i += 250) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(250, REGISTRY - i) }, async (_, k) => {
        const id = `reg-${i + k}`;
        // Each logs in as itself: its id as user name and client id, its own secret.
        const client = await connectAsync(server.url, {
          clientId: id,
          username: id,
          password: secrets.get(id) as string,
          reconnectPeriod: 0,
          connectTimeout: 60_000,
          will: { topic: `mpota/${id}/status`, payload: Buffer.from("offline"), retain: true, qos: 1 },
        });
        await client.publishAsync(`mpota/${id}/state`, state(i + k, 0), { qos: 1, retain: true });
        return client;
      }),
    );
    clients.push(...batch);
  }
  for (;;) {
    const n = (await bridge.request("devices", {})).length;
    if (n >= REGISTRY) break;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  const registered = (Date.now() - started) / 1000;
  // Every device reports again, spread over 10 s, in REPORT_ROUNDS rounds.
  // Message latency: from a device's publish to the dashboard's event stream
  // carrying its device (the server stored it and told the page); the bridge
  // round trip is measured at the same time. The server's RSS after each
  // round shows whether anything grows with the messages.
  const events = await openEventStream(server.http);
  const publishedAt = new Map<string, number>();
  const messageLatencies: number[] = [];
  events.onDevice = (id) => {
    const at = publishedAt.get(id);
    if (at === undefined) return;
    publishedAt.delete(id);
    messageLatencies.push(performance.now() - at);
  };
  const latencies: number[] = [];
  const rssAfterRoundMB: number[] = [];
  for (let round = 1; round <= REPORT_ROUNDS; round++) {
    const reports = clients.map(
      (client, i) =>
        new Promise<void>((resolve) =>
          setTimeout(
            () => {
              publishedAt.set(`reg-${i}`, performance.now());
              client.publishAsync(`mpota/reg-${i}/state`, state(i, round), { qos: 1, retain: true }).then(
                () => resolve(),
                () => resolve(),
              );
            },
            (i * 10_000) / clients.length,
          ),
        ),
    );
    const probeUntil = Date.now() + 10_000;
    while (Date.now() < probeUntil) {
      const t0 = performance.now();
      await bridge.request("info", {});
      latencies.push(performance.now() - t0);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await Promise.all(reports);
    const drainUntil = Date.now() + 10_000;
    while (publishedAt.size > 0 && Date.now() < drainUntil) await new Promise((r) => setTimeout(r, 100));
    publishedAt.clear();
    rssAfterRoundMB.push(mb((await server.stats()).rssBytes));
    console.log(`  round ${round} of ${REPORT_ROUNDS}: server RSS ${rssAfterRoundMB.at(-1)} MB`);
  }
  events.close();
  const loaded = await server.stats();
  latencies.sort((a, b) => a - b);
  messageLatencies.sort((a, b) => a - b);
  const row = {
    devices: REGISTRY,
    secondsToProvision: provisionSeconds,
    secondsToRegister: registered,
    serverRssMB: mb(loaded.rssBytes),
    serverPeakRssMB: mb(loaded.maxRssBytes),
    serverIdleRssMB: mb(idle.rssBytes),
    reportRounds: REPORT_ROUNDS,
    rssAfterRoundMB,
    serverCpuSeconds: loaded.cpuSeconds - idle.cpuSeconds,
    messageLatencyMs: {
      seen: messageLatencies.length,
      p50: quantile(messageLatencies, 0.5),
      p95: quantile(messageLatencies, 0.95),
      max: messageLatencies.at(-1) ?? 0,
    },
    requestLatencyMs: {
      p50: quantile(latencies, 0.5),
      p95: quantile(latencies, 0.95),
      max: latencies.at(-1) ?? 0,
    },
  };
  await bridge.close();
  for (let i = 0; i < clients.length; i += 500) {
    await Promise.all(clients.slice(i, i + 500).map((c) => c.endAsync().catch(() => undefined)));
  }
  await server.stop();
  rmSync(dir, { recursive: true, force: true });
  return row;
}

function chart(row: Awaited<ReturnType<typeof rolloutRow>>): string {
  const w = 640;
  const h = 320;
  const pad = 48;
  const maxS = Math.max(1, ...row.curve.map((p) => p.s));
  const x = (s: number) => pad + ((w - 2 * pad) * s) / maxS;
  const y = (n: number) => h - pad - ((h - 2 * pad) * n) / Math.max(1, row.devices);
  const path = row.curve
    .map((p, i) => `${i === 0 ? "M" : "L"}${x(p.s).toFixed(1)},${y(p.done).toFixed(1)}`)
    .join(" ");
  const boundEnd = Math.min(maxS, (row.devices / row.deviceModelBoundPerMinute) * 60);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" font-family="sans-serif" font-size="12">
<rect width="${w}" height="${h}" fill="white"/>
<text x="${pad}" y="20">Rollout of ${Math.round(row.imageBytes / 1024)} KiB to ${row.devices} simulated devices (${row.sleepy} sleepy), concurrency ${row.concurrency}</text>
<line x1="${pad}" y1="${h - pad}" x2="${w - pad}" y2="${h - pad}" stroke="black"/>
<line x1="${pad}" y1="${pad}" x2="${pad}" y2="${h - pad}" stroke="black"/>
<text x="${w / 2}" y="${h - 12}" text-anchor="middle">seconds since the rollout started (${maxS.toFixed(0)} s)</text>
<text x="12" y="${h / 2}" transform="rotate(-90 12 ${h / 2})" text-anchor="middle">devices verified (of ${row.devices})</text>
<path d="M${x(0)},${y(0)} L${x(boundEnd).toFixed(1)},${y((boundEnd / 60) * row.deviceModelBoundPerMinute).toFixed(1)}" stroke="#999" stroke-dasharray="4 4" fill="none"/>
<text x="${x(boundEnd) - 4}" y="${y((boundEnd / 60) * row.deviceModelBoundPerMinute) - 6}" text-anchor="end" fill="#666">device-model bound ${row.deviceModelBoundPerMinute.toFixed(0)}/min</text>
<path d="${path}" stroke="#1565c0" stroke-width="2" fill="none"/>
<text x="${w - pad}" y="${pad}" text-anchor="end" fill="#1565c0">${row.devicesPerMinute.toFixed(0)} devices/min, p95 turn→verified ${row.turnToVerifiedSeconds.p95.toFixed(0)} s</text>
</svg>
`;
}

const keyDir = mkdtempSync(join(tmpdir(), "mpota-fleet-key-"));
const keyFile = join(keyDir, "priv.key");
const pair = generateKeyPair(2048);
writeFileSync(keyFile, pair.privatePem, { mode: 0o600 });
try {
  const rows = [];
  for (const setup of DEVICES > 0 ? SETUPS : []) {
    const deployment =
      setup === "sqlite"
        ? await sqliteDeployment(keyFile)
        : await postgresDeployment(keyFile, Number(setup.slice(2)));
    const rollout = await rolloutRow(deployment, pair.key);
    rows.push(rollout);
    console.log(
      `Rollout (${rollout.deployment}): ${rollout.state}, ${rollout.verified} verified, ${rollout.failed} failed; ${rollout.devicesPerMinute.toFixed(1)} devices/min ` +
        `(device-model bound ${rollout.deviceModelBoundPerMinute.toFixed(0)}/min = ${CONCURRENCY} x 60 / ${rollout.perDeviceFloorSeconds.toFixed(1)} s; ` +
        `${((rollout.devicesPerMinute / rollout.deviceModelBoundPerMinute) * 100).toFixed(0)} % of it)\n` +
        `  turn to verified: p50 ${rollout.turnToVerifiedSeconds.p50.toFixed(1)} s, p95 ${rollout.turnToVerifiedSeconds.p95.toFixed(1)} s, max ${rollout.turnToVerifiedSeconds.max.toFixed(1)} s\n` +
        `  pushes retried ${rollout.pushesRetried}, retransmits ${rollout.retransmits}, devices updated twice ${rollout.devicesUpdatedTwice}\n` +
        `  servers: ${rollout.serverCpuSeconds.toFixed(1)} CPU s during the rollout (all instances${rollout.sharedCpuSeconds === null ? "" : `; PostgreSQL and Mosquitto ${rollout.sharedCpuSeconds.toFixed(1)} more`}), peak RSS ${rollout.serverPeakRssMBEach.join(" / ")} MB (per instance)`,
    );
  }
  const rollout = rows[0] ?? null;
  const esp32 = ESP32_DEVICES > 0 ? await esp32Row(keyFile) : null;
  if (esp32) {
    console.log(
      `ESP32 pulls: ${esp32.state}, ${esp32.verified} verified, ${esp32.failed} failed, ${esp32.devicesUpdatedTwice} updated twice; ${esp32.devicesPerMinute.toFixed(1)} devices/min, ` +
        `${(esp32.bytesServed / 1024 / 1024).toFixed(0)} MiB served at ${esp32.servedMBPerSecond.toFixed(1)} MiB/s\n` +
        `  server: ${esp32.serverCpuSeconds.toFixed(1)} CPU s (${esp32.serverCpuMsPerDevice.toFixed(0)} ms a device), RSS ${esp32.serverRssBeforeMB} MB before, ${esp32.serverRssDuringMB.p50} MB median and ${esp32.serverRssDuringMB.max} MB at most during the rollout (peak ${esp32.serverPeakRssMB} MB)`,
    );
  }
  const apps = APP_DEVICES > 0 ? await appRow(keyFile) : null;
  if (apps) {
    console.log(
      `App updates: ${apps.state}, ${apps.verified} verified, ${apps.failed} failed, ${apps.devicesUpdatedTwice} updated twice; ${apps.devicesPerMinute.toFixed(1)} devices/min; ` +
        `${apps.filesServed} files and ${(apps.bytesServed / 1024).toFixed(0)} KiB served (manifests included) in ${apps.httpRequests} HTTP requests, ${apps.httpRequestsPerDevice.toFixed(1)} a device\n` +
        `  server: ${apps.serverCpuSeconds.toFixed(1)} CPU s (${apps.serverCpuMsPerDevice.toFixed(0)} ms a device), RSS ${apps.serverRssBeforeMB} MB before, ${apps.serverRssDuringMB.p50} MB median and ${apps.serverRssDuringMB.max} MB at most during the rollout (peak ${apps.serverPeakRssMB} MB)`,
    );
  }
  const registry = REGISTRY > 0 ? await registryRow(keyFile) : null;
  if (registry) {
    const m = registry.messageLatencyMs;
    console.log(
      `Registry: ${registry.devices} devices provisioned in ${registry.secondsToProvision.toFixed(1)} s, registered in ${registry.secondsToRegister.toFixed(1)} s; server RSS ${registry.serverRssMB} MB (peak ${registry.serverPeakRssMB} MB; after each round ${registry.rssAfterRoundMB.join(", ")} MB)\n` +
        `  while they all report again over 10 s (${registry.reportRounds} rounds): state message to dashboard event p50 ${m.p50.toFixed(0)} ms, p95 ${m.p95.toFixed(0)} ms, max ${m.max.toFixed(0)} ms (${m.seen} of ${registry.devices * registry.reportRounds} seen); ` +
        `bridge request p50 ${registry.requestLatencyMs.p50.toFixed(1)} ms, p95 ${registry.requestLatencyMs.p95.toFixed(1)} ms`,
    );
  }
  // A diagnostic run's figures are not comparable (profiles, heap snapshots): they go beside them.
  const out = process.env.MPOTA_BENCH_DIAG || new URL("./results/", import.meta.url).pathname;
  mkdirSync(out, { recursive: true });
  const name = rollout
    ? `fleet-${DEVICES}`
    : esp32
      ? `esp32-fleet-${ESP32_DEVICES}`
      : apps
        ? `app-fleet-${APP_DEVICES}`
        : `registry-${REGISTRY}`;
  // A run of some rows (--setups, --esp32 0, --apps 0, --registry 0) replaces those and keeps the rest,
  // each with the date it was measured.
  const file = join(out, `${name}.json`);
  const before = readResults(file);
  const date = new Date().toISOString();
  const rollouts = mergeRows(
    { date: before.date, rows: before.rollouts },
    rows,
    (r: { deployment: string; instances: number }) => `${r.deployment}/${r.instances}`,
    date,
  );
  writeFileSync(
    file,
    `${JSON.stringify(
      {
        date,
        node: process.version,
        cpus: (await import("node:os")).cpus().length,
        rollouts,
        esp32: esp32 ? { date, ...esp32 } : (before.esp32 ?? null),
        apps: apps ? { date, ...apps } : (before.apps ?? null),
        registry: registry ? { date, ...registry } : (before.registry ?? null),
      },
      null,
      2,
    )}\n`,
  );
  if (rollout) writeFileSync(join(out, `${name}.svg`), chart(rollout));
  console.log(`Figures: bench/results/${name}.json${rollout ? `, bench/results/${name}.svg` : ""}`);
} finally {
  rmSync(keyDir, { recursive: true, force: true });
  cluster?.stop();
}
process.exit(0);
