// Prints an OTA session's progress and outcome from the emulated device's events.
import type { EmulatedDevice } from "../emulator/device.ts";
import type { AppIdentity } from "../emulator/device-events.ts";
import type { EmulateCommandOptions } from "./emulate-options.ts";
import type { EmulatorLog } from "./emulator-log.ts";

export function watchProgress(
  device: EmulatedDevice,
  log: EmulatorLog,
  options: EmulateCommandOptions,
  cleanups: Array<() => void>,
) {
  let sectors = 0;
  let bytes = 0;
  let startedAt = 0;
  cleanups.push(
    device.events.on("state", (e) => {
      if (e.state === "ota") {
        log.takeUnexpected();
        sectors = 0;
        bytes = 0;
        startedAt = 0;
      }
    }),
    device.events.on("accepted", (e) => {
      if (startedAt === 0) startedAt = e.atMs;
      bytes = Math.max(bytes, e.offset + e.length);
    }),
    device.events.on("sectorWritten", (e) => {
      sectors++;
      if (sectors % options.progressEvery !== 0) return;
      const seconds = Math.max(0.001, (e.atMs - startedAt) / 1000);
      if (options.json) {
        log.emit({ type: "progress", sectors, bytes, address: e.address, seconds });
      } else {
        log.line(
          `received ${(bytes / 1024).toFixed(0)} KiB (${sectors} sectors, last at 0x${e.address.toString(16)}), ${(bytes / 1024 / seconds).toFixed(1)} KiB/s`,
        );
      }
    }),
    device.events.on("otaFinished", (e) => {
      const seconds = Math.max(0.001, (e.atMs - startedAt) / 1000);
      if (options.json) log.emit({ type: "finished", sectors, bytes, seconds, rexmits: e.rexmits });
      else {
        const unexpected = log.takeUnexpected();
        const ahead =
          unexpected > 0
            ? `, ${unexpected} datagrams ahead of the expected offset dropped ("Unexpected offset", normal for a pipelined sender)`
            : "";
        log.line(
          `update received: ${bytes} bytes, ${sectors} sectors written in ${seconds.toFixed(1)} s (${(bytes / 1024 / seconds).toFixed(1)} KiB/s), ${e.rexmits} duplicates${ahead}; rebooting`,
        );
      }
    }),
    device.events.on("appBoot", (app: AppIdentity) => {
      if (options.json) log.emit({ type: "app", md5: app.md5 ?? null, size: app.size, checked: app.checked });
    }),
  );
}
