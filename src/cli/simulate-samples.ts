// `mpota simulate --write-firmware/--write-esp32-firmware/--write-bootloader`: sample files instead of a fleet.
import { buildSyntheticBootloader } from "../simulator/synthetic-bootloader.ts";
import {
  buildEsp32AppImage,
  DEFAULT_ESP32_APP_SIZE,
  esp32Identity,
} from "../simulator/synthetic-esp32-app.ts";
import { buildSyntheticFirmware, firmwareIdentity } from "../simulator/synthetic-firmware.ts";
import type { CliIo } from "./io.ts";
import { DEFAULT_KEY_FILE } from "./key-options.ts";
import { keyAndSettings, type SimulateCommandOptions } from "./simulate-options.ts";
import { writeFileAtomic } from "./write-file.ts";

/** --write-firmware, --write-esp32-firmware and --write-bootloader: sample files to try the other commands with, instead of a fleet. */
export async function writeSamples(options: SimulateCommandOptions, io: CliIo): Promise<void> {
  if (options.writeFirmware !== undefined) {
    const image = buildSyntheticFirmware({ size: options.firmwareSize, seed: options.seed });
    await writeFileAtomic(options.writeFirmware, image, {
      force: options.force === true,
      what: "Firmware file",
      alternative: "choose another name",
    });
    io.out(
      `Wrote ${options.writeFirmware}: synthetic MicroPython OTA image, ${image.length} bytes, seed ${options.seed}, identity ${firmwareIdentity(image)}\n`,
    );
  }
  if (options.writeEsp32Firmware !== undefined) {
    const image = buildEsp32AppImage({ seed: options.seed, size: DEFAULT_ESP32_APP_SIZE });
    await writeFileAtomic(options.writeEsp32Firmware, image, {
      force: options.force === true,
      what: "Firmware file",
      alternative: "choose another name",
    });
    io.out(
      `Wrote ${options.writeEsp32Firmware}: synthetic ESP32 app image (as micropython.bin), ${image.length} bytes, seed ${options.seed}, identity ${esp32Identity({ seed: options.seed }).slice(0, 32)}\n`,
    );
  }
  if (options.writeBootloader !== undefined) {
    const { key, settings } = keyAndSettings(options);
    const image = buildSyntheticBootloader({ modulus: key.modulus, settings, seed: options.seed });
    await writeFileAtomic(options.writeBootloader, image, {
      force: options.force === true,
      what: "Bootloader file",
      alternative: "choose another name",
    });
    const keyName =
      options.key ?? options.configH ?? (options.modulus !== undefined ? "--modulus" : DEFAULT_KEY_FILE);
    io.out(
      `Wrote ${options.writeBootloader}: a SYNTHETIC yaota8266 bootloader, ${image.length} bytes, laid out as upstream's build with the ${key.bits}-bit modulus of ${keyName}, GPIO mask 0x${settings.gpioMask.toString(16)}, MAIN_APP_OFFSET 0x${settings.mainAppOffset.toString(16)}.\n` +
        `It runs nothing: it is for trying \`mpota inspect ${options.writeBootloader} --key priv.key\` and \`mpota flash-plan --bootloader ${options.writeBootloader} ...\`. Do not flash it; build yaota8266 for a device.\n`,
    );
  }
}
