// Issue 16's abuse of `mpota serve`, at its full size, with the server's
// memory (RSS) before and after: figures for docs/limits.md, not a test.
// node --import tsx bench/abuse-rss.ts [PATH_TO_bin/mpota.js]   (npm run build first)
//   1. embedded broker: 6 retained messages of 100 MB on junk/<n> as mpota-admin;
//   2. an open external broker: states from 50,000 new ids on mpota/fake-<n>/state.
// The server runs as `node bin/mpota.js serve` in a process of its own.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import Database from "better-sqlite3";
import { connectAsync, type MqttClient } from "mqtt";
import { pino } from "pino";
import { EmbeddedBroker } from "../src/server/mqtt/embedded-broker.ts";

const bin = resolve(process.argv[2] ?? "bin/mpota.js");
const MB = 1024 * 1024;

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  const { port } = server.address() as { port: number };
  await new Promise((done) => server.close(done));
  return port;
}

function rssMb(child: ChildProcess): number {
  const status = readFileSync(`/proc/${child.pid}/status`, "utf8");
  return Math.round(Number(/VmRSS:\s+(\d+)/.exec(status)?.[1]) / 1024);
}

/** Starts `mpota serve`; resolves once its first JSON log line says it runs, with its log lines so far and to come. */
async function serve(dataDir: string, args: string[]): Promise<{ child: ChildProcess; lines: string[] }> {
  const child = spawn(
    process.execPath,
    [
      "--max-semi-space-size=2",
      "--heap-growing-percent=100",
      bin,
      "serve",
      "--data",
      dataDir,
      "--no-http",
      ...args,
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  const lines: string[] = [];
  let rest = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    const text = rest + chunk.toString();
    const parts = text.split("\n");
    rest = parts.pop() ?? "";
    lines.push(...parts);
  });
  const deadline = Date.now() + 20_000;
  while (!lines.some((l) => l.includes("mpota server running"))) {
    if (Date.now() > deadline || child.exitCode !== null)
      throw new Error(`serve did not start:\n${lines.join("\n")}`);
    await new Promise((done) => setTimeout(done, 100));
  }
  return { child, lines };
}

async function settle(child: ChildProcess): Promise<number> {
  // RSS after the collector has had a chance to return what it can.
  await new Promise((done) => setTimeout(done, 3000));
  return rssMb(child);
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((done) => child.once("exit", done));
  child.kill("SIGTERM");
  await exited;
}

async function bigRetained(): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), "mpota-abuse-"));
  const port = await freePort();
  const { child, lines } = await serve(dataDir, ["--mqtt-host", "127.0.0.1", "--mqtt-port", String(port)]);
  try {
    const token = readFileSync(join(dataDir, "admin-token"), "utf8").trim();
    const url = `mqtt://127.0.0.1:${port}`;
    const before = await settle(child);
    let peak = before;
    const outcomes: string[] = [];
    for (let n = 0; n < 6; n++) {
      const client: MqttClient = await connectAsync(url, {
        username: "mpota-admin",
        password: token,
        reconnectPeriod: 0,
      });
      client.on("error", () => undefined);
      const gone = new Promise<string>((done) => client.once("close", () => done("connection closed")));
      const sent = client
        .publishAsync(`junk/${n}`, Buffer.alloc(100 * MB, n), { qos: 1, retain: true })
        .then(() => "accepted");
      outcomes.push(await Promise.race([gone, sent]));
      peak = Math.max(peak, rssMb(child));
      client.end(true);
    }
    const after = await settle(child);
    const refusals = lines.filter((l) => l.includes("MQTT packet over the limit")).length;
    console.log(
      JSON.stringify({
        scenario: "6 retained messages of 100 MB on junk/* (embedded broker, mpota-admin)",
        rssMbBefore: before,
        rssMbPeak: peak,
        rssMbAfter: after,
        outcomes,
        refusalLogLines: refusals,
      }),
    );
  } finally {
    await stop(child);
    rmSync(dataDir, { recursive: true, force: true });
  }
}

async function newIds(count: number): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), "mpota-abuse-"));
  const open = await EmbeddedBroker.start({ host: "127.0.0.1", port: 0, logger: pino({ level: "silent" }) });
  const { child, lines } = await serve(dataDir, ["--mqtt", open.localUrl, "--log-level", "warn"]);
  try {
    const before = await settle(child);
    const client = await connectAsync(open.localUrl, { reconnectPeriod: 0 });
    const state = JSON.stringify({ v: 2, fw: "cd".repeat(16), ip: "10.0.0.9" });
    for (let n = 0; n < count; n++) {
      client.publish(`mpota/fake-${n}/state`, state, { qos: 0 });
      if (n % 1000 === 999) await client.publishAsync("mpota/pace/none", "", { qos: 1 });
    }
    // An invalid state last: the server logs it once it has read every state before it.
    await client.publishAsync("mpota/fake-last/state", "{}", { qos: 1 });
    await client.endAsync();
    const deadline = Date.now() + 120_000;
    while (!lines.some((l) => l.includes("mpota/fake-last/state")) && Date.now() < deadline)
      await new Promise((done) => setTimeout(done, 200));
    const after = await settle(child);
    const refused = lines.filter((l) => l.includes("new device refused")).map((l) => JSON.parse(l) as object);
    const db = statSync(join(dataDir, "mpota.db")).size + statSync(join(dataDir, "mpota.db-wal")).size;
    await stop(child);
    const database = new Database(join(dataDir, "mpota.db"), { readonly: true });
    const registered = (database.prepare("SELECT count(*) AS n FROM devices").get() as { n: number }).n;
    database.close();
    console.log(
      JSON.stringify({
        scenario: `states from ${count} new ids on mpota/fake-N/state (open external broker)`,
        rssMbBefore: before,
        rssMbAfter: after,
        databaseMb: Math.round((db / MB) * 10) / 10,
        registered,
        refusalLogLines: refused.length,
        refusals: refused,
      }),
    );
  } finally {
    await stop(child);
    await open.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

await bigRetained();
await newIds(50_000);
