// A server of `npm run bench:fleet`, in a process of its own so that its CPU
// time and memory are measured apart from the simulated fleet.
// node --import tsx bench/fleet-server.ts CONFIG_JSON
//   {dataDir, keyFile, maxPushes, db?, mqtt?, id?}: without `mqtt` the server
//   runs its embedded broker; with `db` and `mqtt` it is one of several
//   instances (MQTT 5 shared subscriptions).
// Prints one JSON line when ready ({url, http, adminTokenPath}: an embedded
// broker lets clients in as mpota-admin with that token, devices once
// provisioned); answers "stats" on stdin with
// {cpuSeconds, rssBytes, maxRssBytes}; "stop" stops it.
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { pino } from "pino";
import { parsePrivateKeyPem } from "../src/protocol/rsa-key.ts";
import { MpotaServer } from "../src/server/server.ts";

const config = JSON.parse(process.argv[2] as string) as {
  dataDir: string;
  keyFile: string;
  maxPushes: number;
  db?: string;
  mqtt?: string;
  id?: string;
};
const server = await MpotaServer.start({
  dataDir: config.dataDir,
  ...(config.db ? { db: config.db } : {}),
  broker: config.mqtt
    ? { kind: "external", connection: { url: config.mqtt } }
    : { kind: "embedded", host: "127.0.0.1", port: 0 },
  ...(config.db && config.mqtt ? { sharedGroup: "mpota" } : {}),
  ...(config.id ? { instanceId: config.id } : {}),
  key: parsePrivateKeyPem(readFileSync(config.keyFile, "utf8"), config.keyFile),
  maxConcurrentPushes: config.maxPushes,
  logger: pino({ level: "warn" }, process.stderr),
  // The dashboard's API and event stream, for the registry row's message latency.
  http: { host: "127.0.0.1", port: 0, noAuth: true },
});
const say = (value: unknown) => process.stdout.write(`${JSON.stringify(value)}\n`);
say({ url: server.brokerUrl, http: server.http?.url, adminTokenPath: server.adminTokenPath });
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
