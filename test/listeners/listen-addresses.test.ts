import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type Interfaces, listenUrls, listenView } from "../../src/net/listen-addresses.ts";

const entry = (address: string, family: "IPv4" | "IPv6", internal = false) => ({
  address,
  family,
  internal,
  netmask: family === "IPv4" ? "255.255.255.0" : "ffff:ffff:ffff:ffff::",
  mac: "00:00:00:00:00:00",
  cidr: null,
  ...(family === "IPv6" ? { scopeid: 0 } : {}),
});

/** A Raspberry Pi on WiFi with a docker bridge: loopback first, as os.networkInterfaces() lists it. */
const pi = {
  lo: [entry("127.0.0.1", "IPv4", true), entry("::1", "IPv6", true)],
  wlan0: [entry("192.168.1.20", "IPv4"), entry("fd00::20", "IPv6"), entry("fe80::1", "IPv6")],
  docker0: [entry("172.17.0.1", "IPv4")],
} as Interfaces;

describe("where a listener really listens", () => {
  const cases: Array<[string, string, ReturnType<typeof listenView>]> = [
    [
      "0.0.0.0: every IPv4 address, the network's first",
      "0.0.0.0",
      {
        where: "0.0.0.0 port 1883: every IPv4 address of this machine",
        hosts: ["192.168.1.20", "172.17.0.1", "127.0.0.1"],
        loopbackOnly: false,
      },
    ],
    [
      ":: every address, IPv6 too, but no link-local one",
      "::",
      {
        where: ":: port 1883: every address of this machine",
        hosts: ["192.168.1.20", "fd00::20", "172.17.0.1", "127.0.0.1", "::1"],
        loopbackOnly: false,
      },
    ],
    [
      "127.0.0.1: this machine only",
      "127.0.0.1",
      { where: "127.0.0.1 port 1883: this machine only", hosts: ["127.0.0.1"], loopbackOnly: true },
    ],
    [
      "::1: this machine only",
      "::1",
      { where: "::1 port 1883: this machine only", hosts: ["::1"], loopbackOnly: true },
    ],
    [
      "one LAN address: that one",
      "192.168.1.20",
      { where: "192.168.1.20 port 1883", hosts: ["192.168.1.20"], loopbackOnly: false },
    ],
  ];
  for (const [name, address, expected] of cases) {
    it(name, () => {
      const family = address.includes(":") ? "IPv6" : "IPv4";
      assert.deepEqual(listenView({ address, family, port: 1883 }, pi), expected);
    });
  }

  it("a wildcard on a machine without a network is loopback only", () => {
    const view = listenView({ address: "0.0.0.0", family: "IPv4", port: 8080 }, { lo: pi.lo } as Interfaces);
    assert.deepEqual(view.hosts, ["127.0.0.1"]);
    assert.equal(view.loopbackOnly, true);
  });

  it("URLs put IPv6 addresses in brackets", () => {
    assert.deepEqual(listenUrls("http", ["192.168.1.20", "fd00::20"], 8080, "/"), [
      "http://192.168.1.20:8080/",
      "http://[fd00::20]:8080/",
    ]);
    assert.deepEqual(listenUrls("mqtts", ["127.0.0.1"], 8883), ["mqtts://127.0.0.1:8883"]);
  });
});
