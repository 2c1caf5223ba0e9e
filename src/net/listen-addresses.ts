import type { AddressInfo } from "node:net";
import { isIP } from "node:net";
import { networkInterfaces } from "node:os";

export type Interfaces = ReturnType<typeof networkInterfaces>;

/** Where a listener really listens, and the hosts clients can use to reach it. */
export interface ListenView {
  /** "0.0.0.0 port 1883: every IPv4 address of this machine", "127.0.0.1 port 8080: this machine only". */
  where: string;
  /** Hosts clients can connect to: the network's addresses first, loopback last. */
  hosts: string[];
  /** Only this machine can connect. */
  loopbackOnly: boolean;
}

function isLinkLocal6(address: string): boolean {
  return /^fe[89ab]/i.test(address);
}

/**
 * What a socket bound to `address` accepts. A wildcard bind (0.0.0.0, ::) is
 * every interface address of the machine (:: takes IPv4 too, as Node binds
 * it dual-stack); link-local IPv6 addresses are left out, since a URL would
 * need their interface name.
 */
export function listenView(address: AddressInfo, interfaces: Interfaces = networkInterfaces()): ListenView {
  const bound = address.address;
  const where = `${bound} port ${address.port}`;
  if (bound !== "0.0.0.0" && bound !== "::") {
    const loopbackOnly = isLoopbackHost(bound);
    return {
      where: loopbackOnly ? `${where}: this machine only` : where,
      hosts: [bound],
      loopbackOnly,
    };
  }
  const outside: string[] = [];
  const inside: string[] = [];
  for (const list of Object.values(interfaces)) {
    for (const entry of list ?? []) {
      if (bound === "0.0.0.0" && entry.family !== "IPv4") continue;
      if (entry.family === "IPv6" && isLinkLocal6(entry.address)) continue;
      const to = entry.internal ? inside : outside;
      if (!to.includes(entry.address)) to.push(entry.address);
    }
  }
  return {
    where: `${where}: every ${bound === "0.0.0.0" ? "IPv4 " : ""}address of this machine`,
    hosts: [...outside, ...inside],
    loopbackOnly: outside.length === 0,
  };
}

/** scheme://host:port/path for each host (IPv6 in brackets). */
export function listenUrls(scheme: string, hosts: readonly string[], port: number, path = ""): string[] {
  return hosts.map((host) => `${scheme}://${host.includes(":") ? `[${host}]` : host}:${port}${path}`);
}

/** True for 127.0.0.0/8, ::1 and localhost: the only binds where --no-auth is allowed. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "");
  if (h === "localhost") return true;
  if (isIP(h) === 4) return h.startsWith("127.");
  if (isIP(h) === 6) return h === "::1" || h === "0:0:0:0:0:0:0:1";
  return false;
}
