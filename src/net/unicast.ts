import { isIP } from "node:net";
import { networkInterfaces } from "node:os";

export type Interfaces = ReturnType<typeof networkInterfaces>;

/** An IPv4 address as an unsigned 32-bit number, or undefined when `text` is not one. */
function ipv4Number(text: string): number | undefined {
  if (isIP(text) !== 4) return undefined;
  return text.split(".").reduce((n, part) => n * 256 + Number(part), 0);
}

/** The IPv4 address inside an IPv4-mapped IPv6 address (::ffff:a.b.c.d), which a socket sends to as IPv4. */
function mappedIpv4(text: string): string | undefined {
  const m = /^(?:0{0,4}:){0,5}:?ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(text);
  return m && isIP(m[1] as string) === 4 ? m[1] : undefined;
}

function inNetwork(address: number, network: number, prefix: number): boolean {
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  return (address & mask) >>> 0 === (network & mask) >>> 0;
}

function prefixLength(netmask: number): number {
  let bits = 0;
  for (let m = netmask; m & 0x80000000; m = (m << 1) >>> 0) bits++;
  return bits;
}

function dotted(n: number): string {
  return [24, 16, 8, 0].map((s) => (n >>> s) & 0xff).join(".");
}

/**
 * Why `address` cannot be one device, or undefined when it is a unicast
 * address. The update protocol talks to exactly one receiver: a datagram to
 * a broadcast or multicast address reaches every device that listens there
 * (each would start taking the image), and the unspecified address is
 * nobody. Directed broadcasts are known only for networks the machine is on
 * (its interfaces' address and netmask) and for loopback's 127.0.0.0/8.
 * Names are not resolved here: pass an IP address.
 */
export function nonUnicastReason(
  address: string,
  interfaces: Interfaces = networkInterfaces(),
): string | undefined {
  const family = isIP(address);
  if (family === 0) return `"${address}" is not an IP address`;
  if (family === 6) {
    const inner = mappedIpv4(address);
    if (inner !== undefined) return nonUnicastReason(inner, interfaces);
    if (/^[0:]+$/.test(address)) return `${address} is the unspecified address: it names no device`;
    if (/^ff/i.test(address))
      return `${address} is a multicast address: every device in its group would receive the update`;
    return undefined;
  }
  const n = ipv4Number(address) as number;
  if (n === 0xffffffff)
    return `${address} is the broadcast address: every device on the local network would receive the update`;
  if (inNetwork(n, 0, 8))
    return `${address} is the unspecified address ("this network", 0.0.0.0/8): it names no device`;
  if (inNetwork(n, 0xe0000000, 4))
    return `${address} is a multicast address (224.0.0.0/4): every device in its group would receive the update`;
  if (inNetwork(n, 0xf0000000, 4))
    return `${address} is in the reserved range 240.0.0.0/4: it names no device`;
  if (n === 0x7fffffff) return `${address} is the broadcast address of the loopback network 127.0.0.0/8`;
  for (const [name, list] of Object.entries(interfaces)) {
    for (const entry of list ?? []) {
      if (entry.family !== "IPv4") continue;
      const own = ipv4Number(entry.address);
      const mask = ipv4Number(entry.netmask);
      if (own === undefined || mask === undefined) continue;
      const prefix = prefixLength(mask);
      // /31 and /32 networks have no broadcast address (RFC 3021).
      if (prefix > 30) continue;
      const network = (own & mask) >>> 0;
      const broadcast = (network | ~mask) >>> 0;
      const cidr = `${dotted(network)}/${prefix}`;
      if (n === broadcast)
        return `${address} is the broadcast address of this machine's network ${cidr} (interface ${name}): every device on it would receive the update`;
      if (n === network)
        return `${address} is the network address of this machine's network ${cidr} (interface ${name}), not a device`;
    }
  }
  return undefined;
}
