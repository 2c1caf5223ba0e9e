// A server in a child process, for tests that kill it:
// node --import tsx server-process.ts DATA_DIR CONNECTION_JSON TIMINGS_JSON [SHARED_GROUP]
import { MpotaServer } from "../../../src/server/server.ts";
import { LogCapture } from "./log-capture.ts";
import { FAST_TIMINGS, testCommandKey, testDatabase, testKey } from "./test-server.ts";

const [dataDir, connection, timings, sharedGroup] = process.argv.slice(2) as [
  string,
  string,
  string,
  string | undefined,
];
// MPOTA_TEST_BACKEND=postgres: the same database a test server on dataDir uses.
const db = await testDatabase(dataDir);
await MpotaServer.start({
  dataDir,
  ...(db !== undefined ? { db } : {}),
  broker: { kind: "external", connection: JSON.parse(connection) },
  key: testKey,
  commandKey: testCommandKey,
  logger: new LogCapture("silent").logger,
  timings: { ...FAST_TIMINGS, ...(JSON.parse(timings) as object) },
  ...(sharedGroup ? { sharedGroup } : {}),
});
process.stdout.write("ready\n");
