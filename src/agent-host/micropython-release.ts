/** Which MicroPython a simulated device runs: the wasm build of each release the project tests on. */
import { AgentHostError } from "./agent-host-error.ts";

/**
 * 1.27: the last release with the ESP8266's yaota8266 OTA variant, and the
 * default. 1.29: the current release, for the ESP32 and the Pico W paths.
 */
export type MicroPythonRelease = "1.27" | "1.29";

export const DEFAULT_MICROPYTHON: MicroPythonRelease = "1.27";

interface ReleaseBuild {
  /** The npm name the wasm build is installed under (1.29 is an alias, beside 1.27). */
  npm: string;
  /** `os.uname().version` a board of this release reports: the wasm build's own banner (its sys.version). */
  banner: string;
}

export const MICROPYTHON_BUILDS: Readonly<Record<MicroPythonRelease, ReleaseBuild>> = {
  "1.27": { npm: "@micropython/micropython-webassembly-pyscript", banner: "v1.27.0 on 2025-12-10" },
  "1.29": { npm: "micropython-1.29", banner: "v1.29.0-6.gc763859f35 on 2026-08-25" },
};

/**
 * The file URL of a release's wasm build, resolved from this package (a
 * bundled worker runs from an eval'd module, where bare specifiers would
 * resolve from the cwd).
 */
export function micropythonUrl(release: MicroPythonRelease): string {
  if (!Object.hasOwn(MICROPYTHON_BUILDS, release)) {
    throw new AgentHostError(
      `A simulated device runs MicroPython ${Object.keys(MICROPYTHON_BUILDS).join(" or ")}, not ${JSON.stringify(release)}: choose one of those.`,
    );
  }
  const { npm } = MICROPYTHON_BUILDS[release];
  try {
    return import.meta.resolve(npm);
  } catch {
    // 1.29 is a development dependency: an installed mpota has only 1.27.
    throw new AgentHostError(
      `MicroPython ${release} (the npm package ${npm}) is not installed beside mpota: install mpota's development dependencies (npm install in its folder), or run the device on ${DEFAULT_MICROPYTHON}.`,
    );
  }
}
