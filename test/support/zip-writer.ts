import { deflateRawSync } from "node:zlib";

/**
 * A zip writer for tests: ordinary zips of an app folder, and the crafted
 * ones attacks use (a name that climbs out, a size that lies, a local name
 * other than the central one, a symbolic link). Follows APPNOTE's layout:
 * local headers and data, the central directory, the end record.
 */
export interface ZipEntry {
  name: string;
  data?: Uint8Array;
  /** 0 stored, 8 deflated (default). */
  method?: number;
  /** The uncompressed size written in the headers (default: the real one). */
  declaredSize?: number;
  /** The name in the local header (default: `name`). */
  localName?: string;
  /** Unix mode in the external attributes (made by Unix); default 0o100644, or 0o040755 for a name ending in /. */
  mode?: number;
  flags?: number;
  /** The CRC-32 written in the headers (default: the data's). */
  crc?: number;
  /** Sizes in a ZIP64 extra field, with 0xffffffff in the central record's size fields. */
  zip64?: boolean;
  /** The packed bytes as they are (default: deflated or stored `data`). */
  packed?: Uint8Array;
}

const TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = (TABLE[(c ^ b) & 0xff] as number) ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

export function buildZip(entries: ZipEntry[], options: { count?: number; disk?: number } = {}): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const e of entries) {
    const data = Buffer.from(e.data ?? new Uint8Array(0));
    const method = e.method ?? (e.name.endsWith("/") ? 0 : 8);
    const packed = Buffer.from(e.packed ?? (method === 8 ? deflateRawSync(data) : data));
    const name = Buffer.from(e.name, "latin1");
    const localName = Buffer.from(e.localName ?? e.name, "latin1");
    const size = e.declaredSize ?? data.length;
    const crc = e.crc ?? crc32(data);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(e.flags ?? 0, 6);
    local.writeUInt16LE(method, 8);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(packed.length, 18);
    local.writeUInt32LE(size, 22);
    local.writeUInt16LE(localName.length, 26);
    locals.push(local, localName, packed);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE((3 << 8) | 20, 4);
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(e.flags ?? 0, 8);
    central.writeUInt16LE(method, 10);
    central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(e.zip64 ? 0xffffffff : packed.length, 20);
    central.writeUInt32LE(e.zip64 ? 0xffffffff : size, 24);
    central.writeUInt16LE(name.length, 28);
    // The ZIP64 extended information field: id 1, then the sizes the record left at 0xffffffff.
    const extra = Buffer.alloc(e.zip64 ? 20 : 0);
    if (e.zip64) {
      extra.writeUInt16LE(1, 0);
      extra.writeUInt16LE(16, 2);
      extra.writeBigUInt64LE(BigInt(size), 4);
      extra.writeBigUInt64LE(BigInt(packed.length), 12);
    }
    central.writeUInt16LE(extra.length, 30);
    const mode = e.mode ?? (e.name.endsWith("/") ? 0o040755 : 0o100644);
    central.writeUInt32LE(((mode << 16) | (e.name.endsWith("/") ? 0x10 : 0)) >>> 0, 38);
    central.writeUInt32LE(offset, 42);
    centrals.push(central, name, extra);
    offset += 30 + localName.length + packed.length;
  }
  const directory = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(options.disk ?? 0, 4);
  const count = options.count ?? entries.length;
  end.writeUInt16LE(count, 8);
  end.writeUInt16LE(count, 10);
  end.writeUInt32LE(directory.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, directory, end]);
}
