import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { describeConnectError } from "../../src/server/mqtt/mqtt-connect.ts";

describe("broker connection errors", () => {
  it("a broker without MQTT 5 says what to use instead", () => {
    for (const code of [1, 132]) {
      assert.match(
        describeConnectError(
          { code, message: "Connection refused: Unsupported protocol version" },
          "mqtt://u:p@b:1883",
        ),
        /^The broker at mqtt:\/\/b:1883 does not accept this MQTT version\. .*--no-shared-group\.$/,
      );
    }
  });
});
