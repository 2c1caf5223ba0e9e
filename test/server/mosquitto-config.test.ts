import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { UsageError } from "../../src/errors.ts";
import { hashSecret } from "../../src/server/mqtt/credentials.ts";
import {
  BrokerConfigError,
  confLines,
  type MosquittoConfigInput,
  mosquittoConfig,
} from "../../src/server/mqtt/mosquitto-config.ts";

const hash = (fill: number) =>
  `$7$1000$${Buffer.alloc(12, fill).toString("base64")}$${Buffer.alloc(64, fill).toString("base64")}`;

const input = (changes: Partial<MosquittoConfigInput> = {}): MosquittoConfigInput => ({
  base: "home/mpota",
  haPrefix: "homeassistant",
  server: { username: "mpota-server", hash: hash(1) },
  admin: { username: "mpota-admin", hash: hash(2) },
  devices: [
    { id: "sim-2", hash: hash(4) },
    { id: "sim-1", hash: hash(3) },
  ],
  paths: {
    devicePasswords: "/etc/m/dev.passwd",
    serverPasswords: "/etc/m/server.passwd",
    acl: "/etc/m/mpota.acl",
  },
  listeners: { device: { port: 1883 }, server: { port: 1884, host: "127.0.0.1" } },
  ...changes,
});

describe("mosquittoConfig", () => {
  const files = mosquittoConfig(input());

  it("writes one password line per device, sorted, and the server and admin in their own file", () => {
    assert.equal(
      files.devicePasswords,
      [
        "# Written by `mpota broker-config mosquitto`: the devices (2), for the devices' listener.",
        "# mpota replaces this file on every run: do not edit it.",
        `sim-1:${hash(3)}`,
        `sim-2:${hash(4)}`,
        "",
      ].join("\n"),
    );
    assert.equal(
      files.serverPasswords,
      [
        "# Written by `mpota broker-config mosquitto`: the server and the tools, for their listener.",
        "# mpota replaces this file on every run: do not edit it.",
        `mpota-server:${hash(1)}`,
        `mpota-admin:${hash(2)}`,
        "",
      ].join("\n"),
    );
  });

  it("writes the design's ACL in Mosquitto's user/topic/pattern lines, for a base of two levels", () => {
    assert.deepEqual(
      files.acl.split("\n").filter((l) => l !== "" && !l.startsWith("#")),
      [
        "user mpota-server",
        "topic readwrite #",
        "user mpota-admin",
        "topic deny home/mpota/mpota-admin/#",
        "topic read #",
        "topic write home/mpota/bridge/request/#",
        "topic write home/mpota/bridge/homeassistant/+/install",
        "topic write home/mpota/bridge/homeassistant/+/app/install",
        "topic write homeassistant/status",
        "user sim-1",
        "topic read home/mpota/sim-1/cmd",
        "user sim-2",
        "topic read home/mpota/sim-2/cmd",
        "pattern deny home/mpota/%u/cmd/#",
        "pattern write home/mpota/%u/+/#",
      ],
    );
    assert.ok(files.acl.startsWith("# Written by `mpota broker-config mosquitto`"));
  });

  it("configures two listeners with their own password files", () => {
    assert.deepEqual(confLines(files.conf), [
      "per_listener_settings true",
      "check_retain_source true",
      "listener 1883",
      "allow_anonymous false",
      "use_username_as_clientid true",
      "password_file /etc/m/dev.passwd",
      "acl_file /etc/m/mpota.acl",
      "listener 1884 127.0.0.1",
      "allow_anonymous false",
      "password_file /etc/m/server.passwd",
      "acl_file /etc/m/mpota.acl",
    ]);
  });

  it("takes the hashes credentials.ts makes, and no devices at all", () => {
    const real = mosquittoConfig(input({ devices: [{ id: "d", hash: hashSecret("s") }] }));
    assert.match(real.devicePasswords, /^d:\$7\$1000\$/m);
    const none = mosquittoConfig(input({ devices: [] }));
    assert.match(none.devicePasswords, /the devices \(0\)/);
    assert.doesNotMatch(none.acl, /^user sim/m);
  });

  it("refuses ids Mosquitto must not get, with what to do", () => {
    for (const [id, why] of [
      ["bridge", /"bridge" is reserved/],
      ["mpota-admin", /starts with mpota-, which is reserved/],
      ["mpota-x", /starts with mpota-/],
      ["a b", /is not a device id/],
      ["a+", /is not a device id/],
      ["%u", /is not a device id/],
    ] as const) {
      assert.throws(
        () => mosquittoConfig(input({ devices: [{ id, hash: hash(3) }] })),
        (error: unknown) =>
          error instanceof BrokerConfigError &&
          error.exitCode === 48 &&
          why.test(error.message) &&
          /Remove that device's credential, then run this command again\./.test(error.message),
      );
    }
    assert.throws(
      () =>
        mosquittoConfig(
          input({
            devices: [
              { id: "x", hash: hash(3) },
              { id: "x", hash: hash(4) },
            ],
          }),
        ),
      /The device x appears twice/,
    );
  });

  it("refuses a hash Mosquitto would drop (it wants a 12-byte salt and a 64-byte hash)", () => {
    const shortSalt = `$7$1000$${Buffer.alloc(16).toString("base64")}$${Buffer.alloc(64).toString("base64")}`;
    for (const bad of [shortSalt, "$6$abc$def", "plain", `${hash(3)}:x`]) {
      assert.throws(
        () => mosquittoConfig(input({ devices: [{ id: "sim-1", hash: bad }] })),
        (error: unknown) =>
          error instanceof BrokerConfigError &&
          /The stored credential of the device sim-1 is not a hash Mosquitto 2 can check/.test(error.message),
      );
    }
    assert.throws(
      () => mosquittoConfig(input({ admin: { username: "mpota-admin", hash: "x" } })),
      /The stored credential of mpota-admin/,
    );
  });

  it("refuses a bad base topic, a Home Assistant prefix inside it, one port for both, a path with spaces", () => {
    const usage = (changes: Partial<MosquittoConfigInput>, message: RegExp) =>
      assert.throws(
        () => mosquittoConfig(input(changes)),
        (error: unknown) => error instanceof UsageError && message.test(error.message),
      );
    usage({ base: "mpota/#" }, /cannot be the base topic/);
    usage({ base: "mpota/%u" }, /cannot be the base topic/);
    usage({ haPrefix: "ha/+" }, /cannot be the Home Assistant prefix/);
    usage({ haPrefix: "home/mpota" }, /lies inside the base topic home\/mpota/);
    usage({ haPrefix: "home/mpota/ha" }, /lies inside the base topic/);
    usage(
      { listeners: { device: { port: 1883 }, server: { port: 1883 } } },
      /need two different ports \(both are 1883\)/,
    );
    usage({ listeners: { device: { port: 0 }, server: { port: 1884 } } }, /port must be between 1 and 65535/);
    usage(
      { paths: { devicePasswords: "/my files/d", serverPasswords: "/a", acl: "/b" } },
      /file name with spaces/,
    );
    // A prefix that merely starts like the base is outside it.
    assert.match(
      mosquittoConfig(input({ haPrefix: "home/mpota2" })).acl,
      /^topic write home\/mpota2\/status$/m,
    );
  });
});
