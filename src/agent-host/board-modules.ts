/**
 * What each port's interpreter starts with: the fake C modules written into
 * the wasm port's own filesystem, and the prelude that imports them (with
 * the build's os.uname()).
 */
import { ESP32_HOST_MODULES, esp32Uname } from "./python-esp32-fakes.ts";
import { HOST_MODULES, preludeSource } from "./python-fakes.ts";
import { RP2_HOST_MODULES, rp2Uname } from "./python-rp2-fakes.ts";
import type { BootRequest } from "./worker-protocol.ts";

export interface BoardModules {
  files: Record<string, string>;
  prelude: string;
}

export function boardModules(boot: BootRequest): BoardModules {
  switch (boot.chip ?? "esp8266") {
    case "esp32":
      return {
        files: ESP32_HOST_MODULES,
        prelude: preludeSource(
          boot.version,
          esp32Uname(boot.boardName ?? "Generic ESP32 module"),
          "_mpota_sys, machine, esp, esp32, network, socket",
        ),
      };
    case "rp2":
      return {
        files: RP2_HOST_MODULES,
        prelude: preludeSource(
          boot.version,
          rp2Uname(boot.boardName),
          "_mpota_sys, machine, network, socket",
        ),
      };
    default:
      return { files: HOST_MODULES, prelude: preludeSource(boot.version) };
  }
}
