import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parsePrivateKeyPem, type SigningKey } from "../../../src/protocol/rsa-key.ts";
import type { JobTimings } from "../../../src/server/jobs/job-timings.ts";
import { hashSecret, newSecret } from "../../../src/server/mqtt/credentials.ts";
import { ADMIN_USERNAME } from "../../../src/server/mqtt/principals.ts";
import { MpotaServer } from "../../../src/server/server.ts";
import type { ServerOptions } from "../../../src/server/server-options.ts";
import { type CommandKey, readCommandKey } from "../../../src/server/trust/command-key.ts";
import type { DeviceAccess } from "../../../src/simulator/fleet.ts";
import { fixturePath, readFixtureText } from "../../support/fixtures.ts";
import { databaseForDataDir, postgresTestBackend } from "../../support/postgres.ts";
import { registerProvisioner } from "./device-logins.ts";
import { LogCapture } from "./log-capture.ts";

/** The reference 512-bit key (exponent 3) of test/fixtures/reference. */
export const testKey: SigningKey = parsePrivateKeyPem(
  readFixtureText("reference/priv-pkcs1.key"),
  "priv-pkcs1.key",
);

/**
 * One command key for every test server (making one costs about a second of
 * CPU). The fixture is public test material whose file mode is whatever the
 * checkout gave it, so the warning about a key others can read (tested in
 * command-key.test.ts) is left out: the servers' logs stay free of it.
 */
export const testCommandKey: CommandKey = withoutWarning(readCommandKey(fixturePath("command-key.pem")));

function withoutWarning(key: CommandKey): CommandKey {
  const { warning: _checkoutMode, ...rest } = key;
  return rest;
}

/** Job timings that run a whole job life cycle in seconds. */
export const FAST_TIMINGS: JobTimings = {
  bootDelayMs: 50,
  firstAnswerMs: 1500,
  repushAnswerMs: 1500,
  verifyTimeoutMs: 1500,
  receiverResetMs: 300,
  retryBaseMs: 100,
  retryMaxMs: 400,
  ackTimeoutMs: 0,
  // A push stops when its lease was not renewed for two thirds of it. At 1 s a stall of half a
  // second on a loaded machine interrupted pushes (an `interrupted` step in tests that compare
  // steps); a test about a lease running out sets its own.
  leaseMs: 3000,
  pollMs: 50,
  progressIntervalMs: 50,
  progressKeptMs: 24 * 3600_000,
};

export function tempDir(prefix = "mpota-server-"): { dir: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface TestServer {
  server: MpotaServer;
  /**
   * mqtt://mpota-admin:<token>@127.0.0.1:<port> of the embedded broker: a
   * client connecting with it is an admin (CLI, scripts); devices use
   * {@link TestServer.provision}. For an external broker: its URL as given.
   */
  url: string;
  /** The broker's URL without credentials. */
  brokerUrl: string;
  /** The admin token (the HTTP API's token and mpota-admin's MQTT password). */
  adminToken: string;
  /** Provisions device `id` (once per data directory) and returns its login and agent settings. */
  provision(id: string): Promise<DeviceAccess>;
  logs: LogCapture;
  dataDir: string;
  stop(): Promise<void>;
}

/**
 * The database URL a server on `dataDir` uses in this test run: undefined
 * (SQLite in dataDir) normally; with MPOTA_TEST_BACKEND=postgres a PostgreSQL
 * database of its own, the same one each time for the same directory.
 */
export async function testDatabase(dataDir: string): Promise<string | undefined> {
  return postgresTestBackend() ? databaseForDataDir(dataDir) : undefined;
}

/**
 * A server with its embedded broker on a free loopback port, fast timings and
 * the test key; its state in SQLite in `dataDir`, or (MPOTA_TEST_BACKEND=postgres)
 * in the PostgreSQL database that stands for `dataDir`.
 */
export async function startTestServer(
  dataDir: string,
  options: Partial<ServerOptions> & { logs?: LogCapture } = {},
): Promise<TestServer> {
  const logs = options.logs ?? new LogCapture();
  const db = options.storage === undefined ? await testDatabase(dataDir) : undefined;
  const server = await MpotaServer.start({
    dataDir,
    ...(db !== undefined ? { db } : {}),
    broker: { kind: "embedded", host: "127.0.0.1", port: 0 },
    key: testKey,
    commandKey: testCommandKey,
    logger: logs.logger,
    ...options,
    timings: { ...FAST_TIMINGS, ...options.timings },
  });
  const adminToken = readFileSync(server.adminTokenPath, "utf8").trim();
  const brokerUrl = server.brokerUrl;
  const embedded = (options.broker ?? { kind: "embedded" }).kind === "embedded";
  const url = embedded ? withCredentials(brokerUrl, ADMIN_USERNAME, adminToken) : brokerUrl;
  const provision = (id: string) => provisionTestDevice(server, dataDir, id);
  const unregister = registerProvisioner(brokerUrl, provision, embedded);
  return {
    server,
    url,
    brokerUrl,
    adminToken,
    provision,
    logs,
    dataDir,
    stop: async () => {
      unregister();
      await server.stop();
    },
  };
}

export function withCredentials(url: string, username: string, password: string): string {
  const u = new URL(url);
  u.username = encodeURIComponent(username);
  u.password = encodeURIComponent(password);
  return u.toString().replace(/\/$/, "");
}

/** Secrets of the devices the tests provisioned, by data directory and id (the store keeps only hashes). */
const secrets = new Map<string, string>();
/** Provisionings under way, by data directory and id (two devices of one id connecting at once make one). */
const pending = new Map<string, Promise<DeviceAccess>>();

/** Provisions `id` on `server` as `mpota devices add` does (reusing the secret across restarts on one data directory). */
export function provisionTestDevice(server: MpotaServer, dataDir: string, id: string): Promise<DeviceAccess> {
  const key = `${dataDir}\u0000${id}`;
  const running = pending.get(key);
  if (running) return running;
  const done = provisionOnce(server, key, id).finally(() => pending.delete(key));
  pending.set(key, done);
  return done;
}

async function provisionOnce(server: MpotaServer, key: string, id: string): Promise<DeviceAccess> {
  let secret = secrets.get(key);
  const stored = await server.storage.credentials.get(id);
  if (secret === undefined || stored === undefined) {
    secret = newSecret();
    if (stored)
      await server.storage.credentials.replace({ deviceId: id, hash: hashSecret(secret), at: Date.now() });
    else await server.storage.credentials.add({ deviceId: id, hash: hashSecret(secret), at: Date.now() });
    secrets.set(key, secret);
  }
  return { username: id, password: secret, config: server.agentSettings() };
}
