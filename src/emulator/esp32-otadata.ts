/**
 * otadata as ESP-IDF keeps it: two esp_ota_select_entry_t (32 bytes each),
 * the first at the start of the otadata partition and the second one 4 KiB
 * sector later, so rewriting one never touches the other.
 */

/** esp_ota_img_states_t */
export const OtaState = {
  NEW: 0x0,
  PENDING_VERIFY: 0x1,
  VALID: 0x2,
  INVALID: 0x3,
  ABORTED: 0x4,
  UNDEFINED: 0xffffffff,
} as const;

export type OtaStateName = keyof typeof OtaState;

export const OTADATA_ENTRY_LENGTH = 32;
export const OTADATA_SECTOR = 0x1000;

/** One esp_ota_select_entry_t: ota_seq, seq_label[20], ota_state, crc. */
export interface OtadataEntry {
  seq: number;
  /** The 20 label bytes, kept as they are (ESP-IDF never writes them). */
  label: Uint8Array;
  state: number;
  crc: number;
}

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/**
 * bootloader_common_ota_select_crc: esp_rom_crc32_le(UINT32_MAX, &ota_seq, 4).
 * The ROM's crc32_le inverts its start value on the way in and out, so this is
 * zlib's CRC-32 continued from 0xFFFFFFFF (what otatool.py computes).
 */
export function otadataCrc(seq: number): number {
  let c = ~0xffffffff >>> 0;
  const bytes = [seq & 0xff, (seq >>> 8) & 0xff, (seq >>> 16) & 0xff, (seq >>> 24) & 0xff];
  for (const b of bytes) c = (CRC_TABLE[(c ^ b) & 0xff] as number) ^ (c >>> 8);
  return ~c >>> 0;
}

export function decodeOtadataEntry(bytes: Uint8Array): OtadataEntry {
  const view = new DataView(bytes.buffer, bytes.byteOffset, OTADATA_ENTRY_LENGTH);
  return {
    seq: view.getUint32(0, true),
    label: bytes.slice(4, 24),
    state: view.getUint32(24, true),
    crc: view.getUint32(28, true),
  };
}

export function encodeOtadataEntry(entry: OtadataEntry): Uint8Array {
  const out = new Uint8Array(OTADATA_ENTRY_LENGTH);
  const view = new DataView(out.buffer);
  view.setUint32(0, entry.seq >>> 0, true);
  out.set(entry.label.subarray(0, 20), 4);
  view.setUint32(24, entry.state >>> 0, true);
  view.setUint32(28, entry.crc >>> 0, true);
  return out;
}

/** An entry as esp_rewrite_ota_data leaves it: `seq` with its CRC, the label bytes kept. */
export function withSeq(entry: OtadataEntry, seq: number, state: number): OtadataEntry {
  return { seq, label: entry.label, state, crc: otadataCrc(seq) };
}

/** bootloader_common_ota_select_invalid: erased, INVALID or ABORTED. */
export function isInvalidEntry(e: OtadataEntry): boolean {
  return e.seq === 0xffffffff || e.state === OtaState.INVALID || e.state === OtaState.ABORTED;
}

/** bootloader_common_ota_select_valid: not invalid, and the CRC of the seq matches. */
export function isValidEntry(e: OtadataEntry): boolean {
  return !isInvalidEntry(e) && e.crc === otadataCrc(e.seq);
}

/**
 * bootloader_common_get_active_otadata: of the valid entries, the one with
 * the highest seq (entry 0 on a tie); -1 when neither is valid.
 */
export function activeEntry(entries: readonly [OtadataEntry, OtadataEntry]): -1 | 0 | 1 {
  const [a, b] = entries;
  const va = isValidEntry(a);
  const vb = isValidEntry(b);
  if (va && vb) return a.seq >= b.seq ? 0 : 1;
  if (va) return 0;
  if (vb) return 1;
  return -1;
}

/** The state's name ("PENDING_VERIFY"), or the number for a value ESP-IDF does not define. */
export function otaStateName(state: number): OtaStateName | `0x${string}` {
  const name = (Object.keys(OtaState) as OtaStateName[]).find((k) => OtaState[k] === state);
  return name ?? `0x${state.toString(16)}`;
}
