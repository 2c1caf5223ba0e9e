import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { mqttConnection } from "../../src/cli/mqtt-options.ts";
import { FileError, UsageError } from "../../src/errors.ts";
import { makeTempDir } from "../support/cli.ts";

describe("--mqtt-password-file", () => {
  const t = makeTempDir("mpota-password-file-");
  const url = "mqtt://broker:1884";

  it("reads the password from the file's first line", () => {
    const file = join(t.dir, "secret");
    writeFileSync(file, "s3cret pass\r\nsecond line\n");
    assert.deepEqual(
      mqttConnection({ base: "mpota", mqttUsername: "mpota-server", mqttPasswordFile: file }, url),
      {
        url,
        username: "mpota-server",
        password: "s3cret pass",
      },
    );
  });

  it("refuses a missing or empty file and a password given twice", () => {
    const empty = join(t.dir, "empty");
    writeFileSync(empty, "\nsecond\n");
    assert.throws(
      () => mqttConnection({ base: "mpota", mqttPasswordFile: join(t.dir, "nope") }, url),
      (e: unknown) =>
        e instanceof FileError && /--mqtt-password-file .*nope: the file does not exist\./.test(e.message),
    );
    assert.throws(
      () => mqttConnection({ base: "mpota", mqttPasswordFile: empty }, url),
      (e: unknown) =>
        e instanceof FileError && /the file's first line is empty; put the password there\./.test(e.message),
    );
    assert.throws(
      () => mqttConnection({ base: "mpota", mqttPassword: "x", mqttPasswordFile: empty }, url),
      (e: unknown) =>
        e instanceof UsageError &&
        e.message ===
          "Give the broker password once: --mqtt-password (or MPOTA_MQTT_PASSWORD) or --mqtt-password-file, not both.",
    );
    t.remove();
  });
});
