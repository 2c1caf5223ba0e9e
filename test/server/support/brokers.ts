import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { userInfo } from "node:os";
import { join } from "node:path";
import type { IClientOptions } from "mqtt";
import { hashSecret, newSecret } from "../../../src/server/mqtt/credentials.ts";
import { EmbeddedBroker } from "../../../src/server/mqtt/embedded-broker.ts";
import { mosquittoConfig } from "../../../src/server/mqtt/mosquitto-config.ts";
import type { MqttConnection } from "../../../src/server/mqtt/mqtt-connect.ts";
import { ADMIN_USERNAME, SERVER_USERNAME } from "../../../src/server/mqtt/principals.ts";
import { LogCapture } from "./log-capture.ts";
import { tempDir } from "./test-server.ts";

/** A broker a test started; servers and devices connect to it as to any external broker. */
export interface TestBroker {
  /** For the server (--mqtt URL and friends) and the bridge client. */
  connection: MqttConnection;
  /** The same, for MQTT.js clients playing devices. */
  clientOptions: IClientOptions;
  stop(): Promise<void>;
}

/** A standalone Aedes broker on a free loopback port (outlives the servers that use it). */
export async function startAedesBroker(): Promise<TestBroker> {
  const broker = await EmbeddedBroker.start({
    host: "127.0.0.1",
    port: 0,
    logger: new LogCapture("silent").logger,
  });
  return { connection: { url: broker.url }, clientOptions: {}, stop: () => broker.close() };
}

export const MOSQUITTO = "/usr/sbin/mosquitto";
export const mosquittoAvailable = existsSync(MOSQUITTO);
export const MOSQUITTO_SKIP = mosquittoAvailable
  ? false
  : `Mosquitto is not installed (${MOSQUITTO} missing): the external-broker tests need it. Install it with \`apt-get install -y mosquitto\` (.ci/run does).`;

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (typeof address !== "object" || address === null) throw new Error("no port");
  return address.port;
}

async function freePorts(count: number): Promise<number[]> {
  const ports: number[] = [];
  while (ports.length < count) {
    const port = await freePort();
    if (!ports.includes(port)) ports.push(port);
  }
  return ports;
}

function makeCertificates(dir: string): { ca: string; cert: string; key: string } {
  const ca = join(dir, "ca.crt");
  const caKey = join(dir, "ca.key");
  const key = join(dir, "server.key");
  const csr = join(dir, "server.csr");
  const cert = join(dir, "server.crt");
  const ext = join(dir, "san.ext");
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  const run = (args: string[]) => execFileSync("openssl", args, { stdio: "pipe" });
  run(["req", "-x509", ...ec, "-keyout", caKey, "-out", ca, "-days", "2", "-subj", "/CN=mpota test CA"]);
  run(["req", ...ec, "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"]);
  writeFileSync(ext, "subjectAltName=IP:127.0.0.1\n");
  run([
    "x509",
    "-req",
    "-in",
    csr,
    "-CA",
    ca,
    "-CAkey",
    caKey,
    "-CAcreateserial",
    "-out",
    cert,
    "-days",
    "2",
    "-extfile",
    ext,
  ]);
  return { ca, cert, key };
}

/** A Mosquitto process a test started with a configuration of its own. */
export interface MosquittoProcess {
  /** The free loopback ports the configuration was given. */
  ports: number[];
  /** Everything Mosquitto logged so far. */
  log(): string;
  /** Sends SIGHUP (Mosquitto re-reads password and ACL files) and resolves once it says it reloads. */
  reload(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Runs Mosquitto with `configFor(ports)` (listeners, security) after the
 * settings every test wants (no persistence, log to stderr, run as this
 * user), on `ports` free loopback ports (a port taken by another test
 * between the probe and the bind is replaced by another), or on the ports
 * given (a restart on the same ports).
 */
export async function runMosquitto(
  dir: string,
  ports: number | number[],
  configFor: (ports: number[]) => string[] | Promise<string[]>,
): Promise<MosquittoProcess> {
  for (let tries = 1; ; tries++) {
    const given = Array.isArray(ports) ? [...ports] : await freePorts(ports);
    const lines = [
      "persistence false",
      `user ${userInfo().username}`,
      "log_dest stderr",
      "log_type error",
      "log_type warning",
      "log_type notice",
      "log_type information",
      ...(await configFor(given)),
    ];
    const config = join(dir, "mosquitto.conf");
    writeFileSync(config, `${lines.join("\n")}\n`);
    let log = "";
    const child: ChildProcess = spawn(MOSQUITTO, ["-c", config], { stdio: ["ignore", "ignore", "pipe"] });
    const started = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 5000);
      child.stderr?.on("data", (chunk: Buffer) => {
        log += chunk.toString();
        if (/mosquitto version \S+ running/.test(log)) {
          clearTimeout(timer);
          resolve(true);
        }
      });
      child.once("exit", () => {
        clearTimeout(timer);
        resolve(false);
      });
    });
    if (!started) {
      if (child.exitCode === null) child.kill("SIGKILL");
      if (tries < 5 && !Array.isArray(ports) && /in use/i.test(log)) continue;
      throw new Error(`mosquitto did not start on ports ${given.join(", ")}: ${log}`);
    }
    const reloads = () => log.split("Reloading config.").length - 1;
    return {
      ports: given,
      log: () => log,
      reload: async () => {
        const before = reloads();
        child.kill("SIGHUP");
        const deadline = Date.now() + 5000;
        while (reloads() === before) {
          if (Date.now() > deadline) throw new Error(`mosquitto did not reload: ${log}`);
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
      },
      stop: async () => {
        if (child.exitCode === null && child.signalCode === null) {
          const exited = new Promise((resolve) => child.once("exit", resolve));
          child.kill("SIGTERM");
          await exited;
        }
      },
    };
  }
}

/**
 * Mosquitto on a free loopback port with a config of its own: user name and
 * password required, and with `tls` a TLS listener whose certificate is
 * signed by a throwaway CA (its file in `caFile`).
 */
export async function startMosquitto(
  options: { tls?: boolean } = {},
): Promise<TestBroker & { caFile?: string; log: () => string }> {
  const t = tempDir("mpota-mosquitto-");
  const username = "mpota";
  const password = "s3cret-pass";
  try {
    execFileSync("mosquitto_passwd", ["-b", "-c", join(t.dir, "passwords"), username, password], {
      stdio: "pipe",
    });
    const tls = options.tls ? makeCertificates(t.dir) : undefined;
    const broker = await runMosquitto(t.dir, 1, ([port]) => [
      `listener ${port} 127.0.0.1`,
      "allow_anonymous false",
      `password_file ${join(t.dir, "passwords")}`,
      ...(tls ? [`cafile ${tls.ca}`, `certfile ${tls.cert}`, `keyfile ${tls.key}`] : []),
    ]);
    return mosquittoBroker(broker, username, password, tls?.ca, t.remove);
  } catch (error) {
    t.remove();
    throw error;
  }
}

function mosquittoBroker(
  broker: MosquittoProcess,
  username: string,
  password: string,
  caFile: string | undefined,
  removeDir: () => void,
): TestBroker & { caFile?: string; log: () => string } {
  const url = `${caFile ? "mqtts" : "mqtt"}://127.0.0.1:${broker.ports[0]}`;
  const connection: MqttConnection = { url, username, password, ...(caFile ? { caFile } : {}) };
  const clientOptions: IClientOptions = {
    username,
    password,
    ...(caFile ? { ca: readFileSync(caFile) } : {}),
  };
  return {
    connection,
    clientOptions,
    ...(caFile ? { caFile } : {}),
    log: broker.log,
    stop: async () => {
      await broker.stop();
      removeDir();
    },
  };
}

/** Mosquitto configured by `mpota broker-config mosquitto`'s files (mosquitto-config.ts). */
export interface MpotaMosquitto {
  /** mqtt://127.0.0.1:<port> of the devices' listener and of the server's and tools' listener. */
  deviceUrl: string;
  ports: [number, number];
  serverUrl: string;
  serverPassword: string;
  adminPassword: string;
  /** Writes the files again for these devices (then `reload()` makes Mosquitto read them). */
  rewrite(devices: ReadonlyArray<{ id: string; secret: string }>): void;
  reload(): Promise<void>;
  log(): string;
  stop(): Promise<void>;
}

/**
 * Mosquitto on two free loopback ports with the password, ACL and
 * configuration files mosquittoConfig() makes for `devices` (secrets hashed
 * here, as the registry stores them), a server secret and an admin token.
 */
export async function startMpotaMosquitto(options: {
  base: string;
  haPrefix: string;
  devices: ReadonlyArray<{ id: string; secret: string }>;
  /** Listen on these two ports (devices, tools) instead of free ones. */
  ports?: [number, number];
  /** More configuration lines (persistence...). */
  extra?: string[];
}): Promise<MpotaMosquitto> {
  const t = tempDir("mpota-mosquitto-acl-");
  const serverPassword = newSecret();
  const adminPassword = `mpota_${newSecret()}`;
  const server = { username: SERVER_USERNAME, hash: hashSecret(serverPassword) };
  const admin = { username: ADMIN_USERNAME, hash: hashSecret(adminPassword) };
  const paths = {
    devicePasswords: join(t.dir, "mpota-devices.passwd"),
    serverPasswords: join(t.dir, "mpota-server.passwd"),
    acl: join(t.dir, "mpota.acl"),
  };
  let ports: number[] = [];
  const write = (devices: ReadonlyArray<{ id: string; secret: string }>): string => {
    const files = mosquittoConfig({
      base: options.base,
      haPrefix: options.haPrefix,
      server,
      admin,
      devices: devices.map((d) => ({ id: d.id, hash: hashSecret(d.secret) })),
      paths,
      listeners: {
        device: { port: ports[0] as number, host: "127.0.0.1" },
        server: { port: ports[1] as number, host: "127.0.0.1" },
      },
    });
    writeFileSync(paths.devicePasswords, files.devicePasswords, { mode: 0o640 });
    writeFileSync(paths.serverPasswords, files.serverPasswords, { mode: 0o640 });
    writeFileSync(paths.acl, files.acl, { mode: 0o640 });
    return files.conf;
  };
  try {
    const broker = await runMosquitto(t.dir, options.ports ? [...options.ports] : 2, (given) => {
      ports = given;
      return [...write(options.devices).split("\n"), ...(options.extra ?? [])];
    });
    return {
      deviceUrl: `mqtt://127.0.0.1:${broker.ports[0]}`,
      ports: [broker.ports[0] as number, broker.ports[1] as number],
      serverUrl: `mqtt://127.0.0.1:${broker.ports[1]}`,
      serverPassword,
      adminPassword,
      rewrite: (devices) => {
        write(devices);
      },
      reload: broker.reload,
      log: broker.log,
      stop: async () => {
        await broker.stop();
        t.remove();
      },
    };
  } catch (error) {
    t.remove();
    throw error;
  }
}
