import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { UsageError } from "../../src/errors.ts";
import { NetworkPolicy, parseCidr } from "../../src/server/devices/network-policy.ts";

describe("networks the server pushes to", () => {
  // No interfaces: 10.255.255.255 is a device unless this machine sits on 10.0.0.0/8 (test/net/unicast.test.ts covers that).
  const policy = new NetworkPolicy(undefined, () => ({}));

  for (const [address, allowed] of [
    ["10.0.0.1", true],
    ["10.255.255.255", true],
    ["172.16.0.1", true],
    ["172.31.255.254", true],
    ["172.32.0.1", false],
    ["172.15.255.255", false],
    ["192.168.1.23", true],
    ["192.169.0.1", false],
    ["127.0.0.1", true],
    ["127.0.3.7", true],
    ["8.8.8.8", false],
    ["1.1.1.1", false],
    ["100.64.0.1", false],
    ["::1", false],
    ["fd00::1", false],
    ["not-an-ip", false],
  ] as const) {
    it(`${address}: ${allowed ? "allowed" : "refused"} by default`, () =>
      assert.equal(policy.allows(address), allowed));
  }

  it("explains a refusal with the allowed networks and the option", () => {
    assert.equal(
      policy.refusal("8.8.8.8"),
      "8.8.8.8 is outside the networks this server pushes to (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 127.0.0.0/8). If the device really is there, start the server with --allow-net for that network.",
    );
    assert.equal(policy.refusal("192.168.1.2"), undefined);
  });

  it("takes the user's networks instead of the defaults", () => {
    const narrow = new NetworkPolicy(["192.168.7.0/24", "fd00::/8"]);
    assert.equal(narrow.allows("192.168.7.9"), true);
    assert.equal(narrow.allows("192.168.8.9"), false);
    assert.equal(narrow.allows("10.0.0.1"), false);
    assert.equal(narrow.allows("fd12::5"), true);
  });

  it("expands `private` to the defaults", () => {
    const p = new NetworkPolicy(["private", "100.64.0.0/10"]);
    assert.deepEqual(p.networks, [
      "10.0.0.0/8",
      "172.16.0.0/12",
      "192.168.0.0/16",
      "127.0.0.0/8",
      "100.64.0.0/10",
    ]);
    assert.equal(p.allows("100.100.1.1"), true);
  });

  it("reads a bare address as one host", () => {
    assert.deepEqual(parseCidr("192.168.1.5"), { address: "192.168.1.5", prefix: 32, family: "ipv4" });
    const p = new NetworkPolicy(["192.168.1.5"]);
    assert.equal(p.allows("192.168.1.5"), true);
    assert.equal(p.allows("192.168.1.6"), false);
  });

  for (const bad of ["192.168.1.0/33", "192.168.1/24", "10.0.0.0/x", "example.com/8", "", "fd00::/129"]) {
    it(`refuses ${JSON.stringify(bad)} with what to write instead`, () => {
      assert.throws(
        () => new NetworkPolicy([bad]),
        (error: unknown) => error instanceof UsageError && /such as 192\.168\.1\.0\/24/.test(error.message),
      );
    });
  }
});
