// The server of `npm run bench:fleet`, in a process of its own so that its
// CPU time and memory are measured apart from the simulated fleet.
// node --import tsx bench/fleet-server.ts DATA_DIR KEY_FILE MAX_PUSHES
// Prints one JSON line when ready ({url}); answers "stats" on stdin with
// {cpuSeconds, rssBytes, maxRssBytes}; "stop" stops it.
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { pino } from "pino";
import { parsePrivateKeyPem } from "../src/protocol/rsa-key.ts";
import { MpotaServer } from "../src/server/server.ts";

const [dataDir, keyFile, maxPushes] = process.argv.slice(2) as [string, string, string];
const server = await MpotaServer.start({
  dataDir,
  broker: { kind: "embedded", host: "127.0.0.1", port: 0 },
  key: parsePrivateKeyPem(readFileSync(keyFile, "utf8"), keyFile),
  maxConcurrentPushes: Number(maxPushes),
  logger: pino({ level: "warn" }, process.stderr),
});
const say = (value: unknown) => process.stdout.write(`${JSON.stringify(value)}\n`);
say({ url: server.brokerUrl });
for await (const line of createInterface({ input: process.stdin })) {
  if (line === "stats") {
    const cpu = process.cpuUsage();
    say({
      cpuSeconds: (cpu.user + cpu.system) / 1e6,
      rssBytes: process.memoryUsage().rss,
      maxRssBytes: process.resourceUsage().maxRSS * 1024,
    });
  } else if (line === "stop") {
    await server.stop();
    say({ stopped: true });
    process.exit(0);
  }
}
