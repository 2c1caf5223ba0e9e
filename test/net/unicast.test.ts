import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { PushTargetError, resolvePushTarget } from "../../src/net/push-target.ts";
import { type Interfaces, nonUnicastReason } from "../../src/net/unicast.ts";
import { NetworkPolicy } from "../../src/server/devices/network-policy.ts";

const iface = (address: string, netmask: string) => ({
  address,
  netmask,
  family: "IPv4" as const,
  mac: "00:00:00:00:00:00",
  internal: false,
  cidr: null,
});
/** A machine on 192.168.1.0/24 and 10.20.0.0/16 (and a /31 link, which has no broadcast). */
const interfaces = {
  lo: [{ ...iface("127.0.0.1", "255.0.0.0"), internal: true }],
  wlan0: [iface("192.168.1.50", "255.255.255.0")],
  eth1: [iface("10.20.3.4", "255.255.0.0")],
  p2p: [iface("172.16.0.0", "255.255.255.254")],
} as unknown as Interfaces;

describe("unicast push targets (src/net/unicast.ts)", () => {
  for (const [address, reason] of [
    ["255.255.255.255", /is the broadcast address: every device on the local network/],
    ["127.255.255.255", /broadcast address of the loopback network 127\.0\.0\.0\/8/],
    ["192.168.1.255", /broadcast address of this machine's network 192\.168\.1\.0\/24 \(interface wlan0\)/],
    ["10.20.255.255", /broadcast address of this machine's network 10\.20\.0\.0\/16 \(interface eth1\)/],
    ["192.168.1.0", /network address of this machine's network 192\.168\.1\.0\/24/],
    ["224.0.0.1", /multicast address \(224\.0\.0\.0\/4\)/],
    ["239.255.255.250", /multicast address/],
    ["0.0.0.0", /unspecified address/],
    ["0.1.2.3", /unspecified address \("this network", 0\.0\.0\.0\/8\)/],
    ["240.0.0.1", /reserved range 240\.0\.0\.0\/4/],
    ["::", /unspecified address/],
    ["ff02::1", /multicast address/],
    ["::ffff:255.255.255.255", /is the broadcast address/],
  ] as const) {
    test(`${address} is refused: ${reason.source.slice(0, 40)}`, () => {
      assert.match(nonUnicastReason(address, interfaces) ?? "(accepted)", reason);
    });
  }

  for (const address of [
    "192.168.1.23",
    "10.20.0.255",
    "10.21.255.255",
    "172.16.0.1",
    "127.0.0.1",
    "8.8.8.8",
    "fd00::2",
  ]) {
    test(`${address} is one device`, () => assert.equal(nonUnicastReason(address, interfaces), undefined));
  }

  test("a name is resolved first; one that does not resolve, or resolves to a broadcast, is refused with exit 33", async () => {
    const failing = async () => {
      throw Object.assign(new Error("getaddrinfo ENOTFOUND nosuchhost.invalid"), { code: "ENOTFOUND" });
    };
    await assert.rejects(resolvePushTarget("nosuchhost.invalid", { lookup: failing, interfaces }), (e) => {
      assert.ok(e instanceof PushTargetError);
      assert.equal(e.exitCode, 33);
      assert.match(
        e.message,
        /Cannot push to nosuchhost\.invalid: the name does not resolve \(no such name\)/,
      );
      return true;
    });
    await assert.rejects(
      resolvePushTarget("bcast.lan", { lookup: async () => "192.168.1.255", interfaces }),
      /Cannot push to bcast\.lan: bcast\.lan resolves to 192\.168\.1\.255, which is the broadcast address of this machine's network/,
    );
    assert.equal(
      await resolvePushTarget("sonoff.lan", { lookup: async () => "192.168.1.77", interfaces }),
      "192.168.1.77",
    );
    assert.equal(await resolvePushTarget("[fd00::7]", { interfaces }), "fd00::7");
  });
});

describe("the server's network policy never pushes to broadcast or multicast, whatever --allow-net says", () => {
  const everything = new NetworkPolicy(["0.0.0.0/0", "::/0"], () => interfaces);
  for (const address of [
    "255.255.255.255",
    "127.255.255.255",
    "192.168.1.255",
    "224.0.0.251",
    "0.0.0.0",
    "ff02::1",
  ]) {
    test(`${address}: refused under --allow-net 0.0.0.0/0`, () => {
      assert.equal(everything.allows(address), false);
      assert.match(
        everything.refusal(address) ?? "",
        /An update goes to one device, so the server never pushes there\./,
      );
    });
  }
  test("a device's own address still passes", () => {
    assert.equal(everything.refusal("192.168.1.23"), undefined);
    assert.equal(
      new NetworkPolicy(undefined, () => interfaces).refusal("127.255.255.255")?.includes("loopback"),
      true,
    );
  });
});
