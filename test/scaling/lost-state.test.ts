import assert from "node:assert/strict";
import { createSocket, type Socket } from "node:dgram";
import { after, before, describe, it } from "node:test";
import { BridgeClient } from "../../src/server/bridge/bridge-client.ts";
import type { ServerOptions } from "../../src/server/server-options.ts";
import { MOSQUITTO_SKIP, startMosquitto, type TestBroker } from "../server/support/brokers.ts";
import { ID1, ID2, jobEnd, kinds, V2 } from "../server/support/job-suite.ts";
import { LogCapture } from "../server/support/log-capture.ts";
import { MqttDevice } from "../server/support/mqtt-device.ts";
import { startTestServer, tempDir } from "../server/support/test-server.ts";
import { eventually } from "../server/support/wait.ts";
import {
  freshDatabase,
  type PostgresCluster,
  skipWithoutPostgres,
  startPostgresCluster,
} from "../support/postgres.ts";

const skip = skipWithoutPostgres().skip ?? MOSQUITTO_SKIP;

/**
 * A device that answers a push with its new state while PostgreSQL is down:
 * an instance in a shared group is the only one that gets the message, so
 * it must not lose it. Each test takes the database away while the job is
 * pushing (to a device address that never answers), the device reports the
 * new firmware, and the database comes back.
 */
describe("a device's state that arrives while the database is down", { skip, timeout: 90_000 }, () => {
  const t = tempDir("mpota-lost-state-");
  let cluster: PostgresCluster;
  let broker: TestBroker;
  let silent: Socket;
  let received = 0;

  before(async () => {
    cluster = await startPostgresCluster();
    broker = await startMosquitto();
    silent = createSocket("udp4");
    silent.on("message", () => received++);
    await new Promise<void>((resolve) => silent.bind(0, "127.0.0.1", resolve));
  });
  after(async () => {
    silent?.close();
    await broker?.stop();
    cluster?.stop();
    t.remove();
  });

  /** Runs the story with `options` for the server; returns the job's end and the server's logs. */
  async function story(device: string, options: Partial<ServerOptions>) {
    const logs = new LogCapture();
    const s = await startTestServer(`${t.dir}/${device}`, {
      db: await freshDatabase("lost_state", cluster.adminUrl),
      broker: { kind: "external", connection: broker.connection },
      sharedGroup: "mpota",
      timings: { firstAnswerMs: 60_000, leaseMs: 1500 },
      logs,
      ...options,
    });
    const bridge = await BridgeClient.connect({ connection: broker.connection });
    const dev = await MqttDevice.connect(broker.connection.url, device, "mpota", broker.clientOptions);
    try {
      await bridge.request("firmware/add", {
        image: Buffer.from(V2).toString("base64"),
        name: "sensor",
        version: "2.0",
      });
      await dev.state({ fw: ID1, ip: "127.0.0.1" });
      await eventually(
        async () => (await bridge.request("devices", {})).some((d) => d.id === device),
        `${device} known`,
      );
      const job = await bridge.request("update", { device, firmware: "sensor" });
      await dev.command();
      const first = received;
      await dev.ack({ job: job.id, ready: true, ip: "127.0.0.1", port: silent.address().port });
      await eventually(() => received > first || undefined, "the push under way");

      cluster.pause();
      await dev.state({ fw: ID2, ip: "127.0.0.1" });
      await eventually(
        () => logs.find("database unreachable; keeping the message and trying again").length > 0 || undefined,
        "the state received during the outage",
      );
      await new Promise((resolve) => setTimeout(resolve, 1500));
      cluster.resume();
      const end = await jobEnd(bridge, job.id, 30_000);
      const known = (await bridge.request("devices", {})).find((d) => d.id === device);
      return { end, fw: known?.fw, logs };
    } finally {
      await dev.close();
      await bridge.close();
      await s.stop();
    }
  }

  it("is kept and handled once the database is back (a short outage)", async () => {
    const { end, fw, logs } = await story("attic", {});
    const said = `${kinds(end).join(", ")}\n${logs.lines
      .filter((l) => l.msg !== "job scheduler failed")
      .map((l) => `${Number(l.time) % 100000} ${l.feature} ${l.msg} ${String(l.err ?? "").slice(0, 120)}`)
      .join("\n")}`;
    assert.equal(end.state, "succeeded", end.error ?? "");
    assert.equal(kinds(end).filter((k) => k === "push-started").length, 1, said);
    assert.ok(!kinds(end).includes("interrupted"), said);
    assert.equal(fw, ID2);
    assert.equal(logs.find("database still unreachable; message dropped").length, 0);
  });

  it("is read back from the broker before pushing again when the outage outlasted the retries", async () => {
    const { end, fw, logs } = await story("cellar", { unavailableRetryMs: 500 });
    assert.ok(logs.find("database still unreachable; message dropped").length > 0, "the message was dropped");
    assert.equal(end.state, "succeeded", end.error ?? "");
    // The takeover of the cut-off push found the new firmware in the retained state: no second push.
    const said = `${kinds(end).join(", ")}\n${logs.lines
      .filter((l) => l.msg !== "job scheduler failed")
      .map((l) => `${Number(l.time) % 100000} ${l.feature} ${l.msg} ${String(l.err ?? "").slice(0, 120)}`)
      .join("\n")}`;
    assert.equal(kinds(end).filter((k) => k === "push-started").length, 1, said);
    assert.ok(!kinds(end).includes("interrupted"), said);
    assert.equal(fw, ID2);
  });
});
