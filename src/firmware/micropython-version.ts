/** The MicroPython release an image was built from, as its banner string says. */
export interface MicroPythonVersion {
  /** The git tag or describe output, e.g. `v1.27.0` or `v1.22.0-123-gabcdef0-dirty`. */
  version: string;
  /** Build date, `YYYY-MM-DD`. */
  buildDate: string;
  /** The whole string found, e.g. `MicroPython v1.27.0 on 2025-12-10`. */
  banner: string;
  /** Board and MCU from the second half of the banner, e.g. `ESP module (1M) with ESP8266`, when found. */
  machine: string | null;
  /** File offset of the version string. */
  offset: number;
}

// MicroPython stores MICROPY_GIT_TAG " on " MICROPY_BUILD_DATE (the REPL banner and os.uname().version).
const VERSION = /(MicroPython )?(v\d+\.\d+(?:\.\d+)?(?:-[0-9A-Za-z.+_-]+)?) on (\d{4}-\d{2}-\d{2})/;
// MICROPY_HW_BOARD_NAME " with " MICROPY_HW_MCU_NAME, stored NUL-terminated after "; " or on its own.
const MACHINE = /(?:\0|; )([A-Za-z0-9 ()._/-]{1,60}) with (ESP8266|ESP8285)\0/;

/** Finds the version string in an image, or null when the image holds none. */
export function findMicroPythonVersion(image: Uint8Array): MicroPythonVersion | null {
  const text = Buffer.from(image.buffer, image.byteOffset, image.byteLength).toString("latin1");
  const m = VERSION.exec(text);
  if (!m) return null;
  const machine = MACHINE.exec(text);
  return {
    version: m[2] as string,
    buildDate: m[3] as string,
    banner: m[0],
    machine: machine ? `${machine[1]} with ${machine[2]}` : null,
    offset: m.index,
  };
}
