// A server in a child process, for tests that kill it:
// node --import tsx server-process.ts DATA_DIR CONNECTION_JSON TIMINGS_JSON
import { MpotaServer } from "../../../src/server/server.ts";
import { LogCapture } from "./log-capture.ts";
import { FAST_TIMINGS, testKey } from "./test-server.ts";

const [dataDir, connection, timings] = process.argv.slice(2) as [string, string, string];
await MpotaServer.start({
  dataDir,
  broker: { kind: "external", connection: JSON.parse(connection) },
  key: testKey,
  logger: new LogCapture("silent").logger,
  timings: { ...FAST_TIMINGS, ...(JSON.parse(timings) as object) },
});
process.stdout.write("ready\n");
