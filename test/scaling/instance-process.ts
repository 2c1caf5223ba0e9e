// One server instance of a multi-instance test, in a process of its own so a
// test can SIGKILL it: node --import tsx instance-process.ts CONFIG_JSON
// Prints "ready" when serving; SIGTERM stops it cleanly.
import { pino } from "pino";
import type { MqttConnection } from "../../src/server/mqtt/mqtt-connect.ts";
import { MpotaServer } from "../../src/server/server.ts";
import { FAST_TIMINGS, testCommandKey, testKey } from "../server/support/test-server.ts";

const config = JSON.parse(process.argv[2] as string) as {
  id: string;
  dataDir: string;
  db: string;
  connection: MqttConnection;
  firmwareDir?: string;
  timings?: object;
  maxPushes?: number;
  /** Serve the dashboard and API on a free loopback port, without a token. */
  http?: boolean;
};
try {
  const server = await MpotaServer.start({
    dataDir: config.dataDir,
    db: config.db,
    broker: { kind: "external", connection: config.connection },
    sharedGroup: "mpota",
    instanceId: config.id,
    heartbeatMs: 500,
    key: testKey,
    // One command key for every instance, as servers sharing a database must have (and no second of CPU to make one).
    commandKey: testCommandKey,
    logger: pino({ level: process.env.MPOTA_TEST_INSTANCE_LOG ?? "warn" }, process.stderr),
    timings: { ...FAST_TIMINGS, ...config.timings },
    ...(config.maxPushes !== undefined ? { maxConcurrentPushes: config.maxPushes } : {}),
    ...(config.firmwareDir !== undefined ? { firmwareDir: config.firmwareDir } : {}),
    ...(config.http ? { http: { host: "127.0.0.1", port: 0, noAuth: true } } : {}),
  });
  process.stdout.write(`ready ${server.http?.url ?? ""}\n`);
  process.on("SIGTERM", () => {
    server.stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  });
} catch (error) {
  process.stderr.write(`${(error as Error).message}\n`);
  process.exit((error as { exitCode?: number }).exitCode ?? 1);
}
