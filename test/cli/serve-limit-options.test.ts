import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { ServeOptions } from "../../src/cli/serve-options.ts";
import { serverSettings } from "../../src/cli/serve-settings.ts";
import { UsageError } from "../../src/errors.ts";

const options = (extra: Partial<ServeOptions>): ServeOptions => ({
  data: "x",
  base: "mpota",
  block: 256,
  maxAttempts: 5,
  maxPushes: 8,
  logLevel: "warn",
  ...extra,
});

describe("mpota serve: broker and registry limits", () => {
  test("the options become the named limits", () => {
    const settings = serverSettings(
      options({
        mqttMaxPacket: 4096,
        mqttMaxRetained: 1024 * 1024,
        mqttMaxConnections: 500,
        maxDevices: 50,
        newDevicesPerMinute: 5,
      }),
    );
    assert.equal(settings.broker.kind, "embedded");
    assert.deepEqual(settings.broker.kind === "embedded" && settings.broker.limits, {
      devicePacketBytes: 4096,
      retainedTotalBytes: 1024 * 1024,
      connections: 500,
    });
    assert.deepEqual(settings.deviceLimits, { maxDevices: 50, newPerMinute: 5 });
    const plain = serverSettings(options({}));
    assert.equal(plain.broker.kind === "embedded" && plain.broker.limits, undefined);
    assert.deepEqual(plain.deviceLimits, {});
    assert.equal(plain.pushTuning, undefined);
    // --push-window: the server's UDP pushes keep at most that many datagrams in flight.
    const small = serverSettings(options({ pushWindow: 3 }));
    assert.deepEqual([small.pushTuning?.maxWindow, small.pushTuning?.initialWindow], [3, 2]);
  });

  test("out of range, or the embedded broker's limits with another broker, is a usage error that says why", () => {
    for (const [extra, text] of [
      [{ mqttMaxPacket: 100 }, /--mqtt-max-packet must be between 1024 and 1048576/],
      [{ mqttMaxRetained: 10 }, /--mqtt-max-retained must be between 65536/],
      [{ mqttMaxConnections: 3 }, /--mqtt-max-connections must be between 16 and 1000000/],
      [{ maxDevices: 0 }, /--max-devices must be between 1 and 1000000/],
      [{ newDevicesPerMinute: 0 }, /--new-devices-per-minute must be between 1/],
      [{ pushWindow: 16 }, /^--push-window must be a whole number from 1 to 15: the datagrams in flight/],
      [
        { mqtt: "mqtt://broker:1883", mqttMaxPacket: 4096 },
        /bound the embedded broker; with --mqtt URL .*\(Mosquitto: message_size_limit/,
      ],
    ] as const) {
      assert.throws(
        () => serverSettings(options(extra)),
        (e: unknown) => e instanceof UsageError && text.test(e.message),
        JSON.stringify(extra),
      );
    }
  });
});
