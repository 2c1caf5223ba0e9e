import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parsePrivateKeyPem, type SigningKey } from "../../../src/protocol/rsa-key.ts";
import type { JobTimings } from "../../../src/server/job-timings.ts";
import { MpotaServer, type ServerOptions } from "../../../src/server/server.ts";
import { readFixtureText } from "../../support/fixtures.ts";
import { databaseForDataDir, postgresTestBackend } from "../../support/postgres.ts";
import { LogCapture } from "./log-capture.ts";

/** The reference 512-bit key (exponent 3) of test/fixtures/reference. */
export const testKey: SigningKey = parsePrivateKeyPem(
  readFixtureText("reference/priv-pkcs1.key"),
  "priv-pkcs1.key",
);

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
  leaseMs: 1000,
  pollMs: 50,
  progressIntervalMs: 50,
};

export function tempDir(prefix = "mpota-server-"): { dir: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface TestServer {
  server: MpotaServer;
  /** mqtt://127.0.0.1:<port> of the embedded broker (or the external one). */
  url: string;
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
    logger: logs.logger,
    ...options,
    timings: { ...FAST_TIMINGS, ...options.timings },
  });
  const url = server.brokerUrl;
  return { server, url, logs, dataDir, stop: () => server.stop() };
}
