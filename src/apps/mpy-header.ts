import { AppReleaseError } from "./app-errors.ts";

/**
 * `.mpy` headers (MicroPython's py/persistentcode.h): 4 bytes, 'M', the
 * format version, a feature byte, the small-int bits. Version 6 (v1.19 and
 * later): the feature byte holds the sub-version in bits 0-1 and the native
 * architecture in bits 2-5 (0: bytecode only); bit 6 says architecture
 * flags follow (native code only). A board loads a file whose version equals
 * its own; native code also needs its sub-version and an architecture the
 * board runs. `sys.implementation._mpy` on the board is
 * `version | feature byte << 8`.
 */

/** The only `.mpy` format version releases take (MicroPython v1.19 and later). */
export const MPY_VERSION = 6;

/** MicroPython's MP_NATIVE_ARCH_* numbers. */
export const MPY_ARCH_NAMES: readonly string[] = [
  "bytecode",
  "x86",
  "x64",
  "armv6",
  "armv6m",
  "armv7m",
  "armv7em",
  "armv7emsp",
  "armv7emdp",
  "xtensa",
  "xtensawin",
  "rv32imc",
  "rv64imc",
];

/**
 * The native architectures each board kind (its `sys.platform`) has chips
 * for: the ESP8266 is xtensa; ESP32s are xtensawin (ESP32, -S2, -S3) or
 * rv32imc (-C3, -C6); the RP2040 runs armv6m and the RP2350 up to armv7emsp
 * (Thumb code of a lower level runs on a higher one). The board itself
 * decides exactly from its `_mpy`.
 */
export const BOARD_ARCHS: Readonly<Record<string, readonly number[]>> = {
  esp8266: [9],
  esp32: [10, 11],
  rp2: [4, 5, 6, 7],
};

export interface MpyHeader {
  version: number;
  /** 0..3; matters for native code only. */
  subVersion: number;
  /** MP_NATIVE_ARCH_*; 0 is bytecode only. */
  arch: number;
}

/** What the `.mpy` files of a release need of a board; `undefined` when the release holds none. */
export interface MpyNeed {
  version: number;
  /** 0 when every file is bytecode; else the one native architecture. */
  arch: number;
  /** The native files' sub-version (0 when arch is 0). */
  subVersion: number;
}

const VERSION_ERAS: Readonly<Record<number, string>> = {
  2: "MicroPython 1.9.3 and 1.9.4",
  3: "MicroPython 1.10 and 1.11",
  4: "MicroPython 1.12 to 1.15",
  5: "MicroPython 1.16 to 1.18",
};

export function archName(arch: number): string {
  return MPY_ARCH_NAMES[arch] ?? `architecture ${arch}`;
}

/** Reads the header of the `.mpy` file `path` (for messages) from its first bytes. */
export function readMpyHeader(path: string, bytes: Uint8Array): MpyHeader {
  if (bytes.length < 4 || bytes[0] !== 0x4d) {
    throw new AppReleaseError(
      `${path} is not a compiled MicroPython file: a .mpy starts with the letter M and three header bytes. Compile it with mpy-cross, or give it another extension if it is data.`,
    );
  }
  const version = bytes[1] as number;
  const feature = bytes[2] as number;
  const arch = (feature >> 2) & 0x0f;
  if (version === MPY_VERSION && ((feature & 0x80) !== 0 || arch >= MPY_ARCH_NAMES.length)) {
    throw new AppReleaseError(
      `${path} has .mpy feature byte 0x${feature.toString(16).padStart(2, "0")}, which names no architecture MicroPython knows: the file is damaged or from a newer mpy-cross.`,
    );
  }
  return { version, subVersion: feature & 0x03, arch };
}

function unsupported(path: string, version: number): AppReleaseError {
  const era = VERSION_ERAS[version];
  return new AppReleaseError(
    `${path} is .mpy version ${version}${era ? ` (${era})` : ""}; releases take .mpy version ${MPY_VERSION} only (MicroPython 1.19 and later). Compile it again with the mpy-cross of the MicroPython your boards run, or ship the .py.`,
  );
}

/**
 * What a set of `.mpy` headers needs of a board. Refuses files of different
 * versions (no board loads both), native code for two architectures, and
 * native code of two sub-versions.
 */
export function mpyNeed(headers: ReadonlyArray<{ path: string; header: MpyHeader }>): MpyNeed | undefined {
  const first = headers[0];
  if (first === undefined) return undefined;
  const other = headers.find((h) => h.header.version !== first.header.version);
  if (other !== undefined) {
    throw new AppReleaseError(
      `The app mixes .mpy versions: ${first.path} is version ${first.header.version}, ${other.path} is version ${other.header.version}. A board loads only its own version; compile every .mpy with the same mpy-cross.`,
    );
  }
  if (first.header.version !== MPY_VERSION) throw unsupported(first.path, first.header.version);
  const native = headers.filter((h) => h.header.arch !== 0);
  const n0 = native[0];
  if (n0 === undefined) return { version: MPY_VERSION, arch: 0, subVersion: 0 };
  for (const n of native) {
    if (n.header.arch !== n0.header.arch) {
      throw new AppReleaseError(
        `The app holds native code for two architectures: ${n0.path} is ${archName(n0.header.arch)}, ${n.path} is ${archName(n.header.arch)}. One board runs one; make a release per board kind.`,
      );
    }
    if (n.header.subVersion !== n0.header.subVersion) {
      throw new AppReleaseError(
        `The app's native .mpy files are of two sub-versions (${n0.path}: 6.${n0.header.subVersion}, ${n.path}: 6.${n.header.subVersion}); a board loads native code of its own sub-version only. Build them with one mpy-cross.`,
      );
    }
  }
  return { version: MPY_VERSION, arch: n0.header.arch, subVersion: n0.header.subVersion };
}

/** Refuses board kinds whose chips cannot run the release's native code. */
export function checkBoardsRunArch(boards: readonly string[], need: MpyNeed | undefined): void {
  if (need === undefined || need.arch === 0) return;
  const cannot = boards.filter((b) => !(BOARD_ARCHS[b] ?? []).includes(need.arch));
  if (cannot.length === 0) return;
  const suits = Object.keys(BOARD_ARCHS).filter((b) => BOARD_ARCHS[b]?.includes(need.arch));
  throw new AppReleaseError(
    `The app holds native code for ${archName(need.arch)}, which no ${cannot.join(" or ")} board runs. ${
      suits.length > 0
        ? `Name the boards it suits with --board (${suits.join(", ")}), or build the native code for each kind.`
        : "No board kind mpota updates runs it: build the native code for the boards' architecture."
    }`,
  );
}
