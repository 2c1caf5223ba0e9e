import { BlockList, isIP } from "node:net";
import { UsageError } from "../../errors.ts";
import { type Interfaces, nonUnicastReason } from "../../net/unicast.ts";

/** The private IPv4 ranges (RFC 1918) and loopback: where home devices live. */
export const DEFAULT_ALLOWED_NETWORKS: readonly string[] = [
  "10.0.0.0/8",
  "172.16.0.0/12",
  "192.168.0.0/16",
  "127.0.0.0/8",
];

/** `--allow-net private` stands for the default list. */
export const PRIVATE_KEYWORD = "private";

/**
 * Where the server may send UDP datagrams: only into networks the user
 * allowed (by default private ranges and loopback), never elsewhere, so a
 * device (or anyone who can publish on its topics) cannot turn the server
 * into a packet cannon against a public address.
 */
export class NetworkPolicy {
  readonly networks: readonly string[];
  private readonly list = new BlockList();

  /** `interfaces`: this machine's interfaces, for their networks' broadcast addresses (read at each check by default, as they change). */
  constructor(
    cidrs: readonly string[] = DEFAULT_ALLOWED_NETWORKS,
    private readonly interfaces?: () => Interfaces,
  ) {
    const expanded = cidrs.flatMap((c) =>
      c.trim().toLowerCase() === PRIVATE_KEYWORD ? DEFAULT_ALLOWED_NETWORKS : [c],
    );
    if (expanded.length === 0)
      throw new UsageError("--allow-net needs at least one network (CIDR), or `private`.");
    const networks: string[] = [];
    for (const cidr of expanded) {
      const { address, prefix, family } = parseCidr(cidr);
      this.list.addSubnet(address, prefix, family);
      networks.push(`${address}/${prefix}`);
    }
    this.networks = [...new Set(networks)];
  }

  /** True for a unicast address inside the allowed networks; never broadcast, multicast or unspecified, whatever --allow-net says. */
  allows(address: string): boolean {
    const family = isIP(address);
    if (family === 0) return false;
    if (nonUnicastReason(address, this.interfaces?.()) !== undefined) return false;
    return this.list.check(address, family === 4 ? "ipv4" : "ipv6");
  }

  /** Why the server will not push to `address`, or undefined when it may. */
  refusal(address: string): string | undefined {
    if (isIP(address) === 0) return `"${address}" is not an IP address`;
    const notOne = nonUnicastReason(address, this.interfaces?.());
    if (notOne !== undefined)
      return `${notOne}. An update goes to one device, so the server never pushes there.`;
    if (this.allows(address)) return undefined;
    return `${address} is outside the networks this server pushes to (${this.networks.join(", ")}). If the device really is there, start the server with --allow-net for that network.`;
  }
}

/** Parses `a.b.c.d/n` or `v6addr/n` (a bare address means a single host). */
export function parseCidr(cidr: string): { address: string; prefix: number; family: "ipv4" | "ipv6" } {
  const text = cidr.trim();
  const slash = text.indexOf("/");
  const address = slash < 0 ? text : text.slice(0, slash);
  const family = isIP(address);
  const bits = family === 4 ? 32 : 128;
  const prefix =
    slash < 0 ? bits : /^\d{1,3}$/.test(text.slice(slash + 1)) ? Number(text.slice(slash + 1)) : Number.NaN;
  if (family === 0 || !(prefix >= 0 && prefix <= bits)) {
    throw new UsageError(
      `"${cidr}" is not a network: give an address with a prefix length, such as 192.168.1.0/24 or fd00::/8, or \`private\` for the private ranges and loopback.`,
    );
  }
  return { address, prefix, family: family === 4 ? "ipv4" : "ipv6" };
}
