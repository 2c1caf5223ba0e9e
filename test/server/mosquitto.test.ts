import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { BridgeClient } from "../../src/server/bridge/bridge-client.ts";
import { BrokerConnectError } from "../../src/server/mqtt/mqtt-connect.ts";
import { MOSQUITTO_SKIP, startMosquitto } from "./support/brokers.ts";
import { defineJobSuite } from "./support/job-suite.ts";
import { MqttDevice } from "./support/mqtt-device.ts";
import { startTestServer, tempDir } from "./support/test-server.ts";
import { eventually } from "./support/wait.ts";

if (MOSQUITTO_SKIP) process.stderr.write(`# ${MOSQUITTO_SKIP}\n`);

// The same end-to-end flows as over the embedded broker, with Mosquitto as the external broker
// (user name and password required), and over TLS.
defineJobSuite("Mosquitto", { embedded: false, external: () => startMosquitto() }, MOSQUITTO_SKIP);

describe("Mosquitto as the external broker", { skip: MOSQUITTO_SKIP }, () => {
  it("runs the server and its clients over TLS with the broker's CA", async () => {
    const broker = await startMosquitto({ tls: true });
    const t = tempDir();
    try {
      const s = await startTestServer(t.dir, { broker: { kind: "external", connection: broker.connection } });
      const bridge = await BridgeClient.connect({ connection: broker.connection });
      const dev = await MqttDevice.connect(broker.connection.url, "tls-dev", "mpota", broker.clientOptions);
      await dev.state({ fw: "a".repeat(32), ip: "192.168.3.3" });
      await eventually(
        async () => (await bridge.request("devices", {})).some((d) => d.id === "tls-dev"),
        "tls-dev known",
      );
      assert.equal(s.server.brokerUrl, broker.connection.url);
      await dev.close();
      await bridge.close();
      await s.stop();
    } finally {
      await broker.stop();
      t.remove();
    }
  });

  it("says what is wrong when TLS cannot be verified or the password is wrong", async () => {
    const broker = await startMosquitto({ tls: true });
    const t = tempDir();
    try {
      const { caFile: _ca, ...withoutCa } = broker.connection;
      await assert.rejects(
        startTestServer(t.dir, { broker: { kind: "external", connection: withoutCa } }),
        (error: unknown) => {
          assert.ok(error instanceof BrokerConnectError);
          assert.match(
            error.message,
            /^The TLS connection to mqtts:\/\/127\.0\.0\.1:\d+ failed: .*Give the CA that signed the broker's certificate with --mqtt-ca/,
          );
          return true;
        },
      );
      await assert.rejects(
        startTestServer(t.dir, {
          broker: { kind: "external", connection: { ...broker.connection, password: "wrong" } },
        }),
        (error: unknown) => {
          assert.ok(error instanceof BrokerConnectError);
          assert.match(
            error.message,
            /^The broker at mqtts:\/\/127\.0\.0\.1:\d+ (refused the user name or password|did not authorize this client)/,
          );
          return true;
        },
      );
      const { password: _p, username: _u, ...anonymous } = broker.connection;
      await assert.rejects(
        BridgeClient.connect({ connection: anonymous, timeoutMs: 3000 }),
        (error: unknown) => {
          assert.ok(error instanceof BrokerConnectError);
          assert.match(error.message, /did not authorize this client|refused the user name or password/);
          // The broker answered: no "start the server" advice, which would mislead.
          assert.doesNotMatch(error.message, /No mpota server can be reached/);
          return true;
        },
      );
    } finally {
      await broker.stop();
      t.remove();
    }
  });
});
