import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { userInfo } from "node:os";
import { join } from "node:path";
import type { IClientOptions } from "mqtt";
import { EmbeddedBroker } from "../../../src/server/embedded-broker.ts";
import type { MqttConnection } from "../../../src/server/mqtt-link.ts";
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
  execFileSync("mosquitto_passwd", ["-b", "-c", join(t.dir, "passwords"), username, password], {
    stdio: "pipe",
  });
  const tls = options.tls ? makeCertificates(t.dir) : undefined;
  const caFile = tls?.ca;
  // A free port can be taken by another test between the probe and mosquitto's bind: try again then.
  for (let tries = 1; ; tries++) {
    const port = await freePort();
    const lines = [
      `listener ${port} 127.0.0.1`,
      "allow_anonymous false",
      `password_file ${join(t.dir, "passwords")}`,
      "persistence false",
      `user ${userInfo().username}`,
      "log_dest stderr",
      "log_type error",
      "log_type warning",
      "log_type notice",
      "log_type information",
      ...(tls ? [`cafile ${tls.ca}`, `certfile ${tls.cert}`, `keyfile ${tls.key}`] : []),
    ];
    const config = join(t.dir, "mosquitto.conf");
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
      if (tries < 5 && /in use/i.test(log)) continue;
      t.remove();
      throw new Error(`mosquitto did not start on port ${port}: ${log}`);
    }
    return mosquittoBroker(child, port, username, password, caFile, () => log, t.remove);
  }
}

function mosquittoBroker(
  child: ChildProcess,
  port: number,
  username: string,
  password: string,
  caFile: string | undefined,
  log: () => string,
  removeDir: () => void,
): TestBroker & { caFile?: string; log: () => string } {
  const url = `${caFile ? "mqtts" : "mqtt"}://127.0.0.1:${port}`;
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
    log,
    stop: async () => {
      if (child.exitCode === null) {
        child.kill("SIGTERM");
        await new Promise((resolve) => child.once("exit", resolve));
      }
      removeDir();
    },
  };
}
