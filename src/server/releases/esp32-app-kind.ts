import { isEsp32AppImage, parseEsp32AppImage } from "../../firmware/esp32-app-image.ts";
import { ESP32_CHIPS } from "../../firmware/esp32-chips.ts";
import { findMergedFirmware } from "../../firmware/esp32-merged-firmware.ts";
import { preflightEsp32 } from "../../firmware/esp32-preflight.ts";
import { refusalMessage } from "../../firmware/preflight.ts";
import type { DeviceState } from "../../protocol/mqtt-contract.ts";
import { RequestError } from "../base/request-error.ts";
import type { FirmwareRecord } from "../storage/storage.ts";
import { FirmwareIntegrityError } from "./firmware-files.ts";
import type { CheckedRelease, ReleaseKind, UploadOptions } from "./release-kind.ts";

export const ESP32_APP = "esp32-app";

/**
 * The chip of each artifact a device's job was checked against. Parsing
 * walks and hashes the whole image (milliseconds for 1.5 MiB), and every
 * job of a rollout checks the same bytes (the release cache keeps them);
 * bytes read again (a changed file) are parsed again.
 */
type Chip = ReturnType<typeof parseEsp32AppImage>["chip"];
const chips = new WeakMap<Uint8Array, Chip>();

function chipOf(artifact: Uint8Array, source: string): Chip {
  const known = chips.get(artifact);
  if (known !== undefined) return known;
  const chip = parseEsp32AppImage(artifact, source).chip;
  chips.set(artifact, chip);
  return chip;
}

/** An ESP32 release stores its chip ("esp32", "esp32s3") as its `build`: that is how its rows are known. */
const ESP32_BUILDS = new Set<string | null>(ESP32_CHIPS.map((c) => c.name));

/**
 * The identity of an ESP32 app: the first 128 bits of the app description's
 * ELF SHA-256, as 32 hex digits, because the MQTT contract's `fw` is 32 hex
 * digits (docs/architecture.md). The agent reads the same bytes from its
 * running slot (image offset 0xb0).
 */
export function esp32Identity(elfSha256: string): string {
  return elfSha256.slice(0, 32).toLowerCase();
}

/**
 * An ESP-IDF app image for the other OTA slot of an ESP32 (MicroPython's
 * `micropython.bin`, the `.app-bin`): checked by src/firmware's ESP32
 * preflight (not a merged firmware.bin, chip known, segments, checksum,
 * appended SHA-256, app description, the OTA variant's 1.5 MiB slot), named
 * by its ELF SHA-256, delivered by a pull into the other slot.
 */
export const esp32AppKind: ReleaseKind = {
  name: ESP32_APP,
  // The device fetches the image into its other slot (deliveries: named, not imported).
  delivery: "esp32-pull",
  deviceModel: "ESP32 with MicroPython's OTA partition layout",

  // A merged firmware.bin is this kind's too, so it is refused with the ESP32's words, not as an ESP8266 image.
  recognises: (bytes: Uint8Array) => isEsp32AppImage(bytes) || findMergedFirmware(bytes) !== null,
  owns: (release: FirmwareRecord) => ESP32_BUILDS.has(release.build),
  target: (release: FirmwareRecord) => release.build ?? ESP32_APP,
  chips: new Set(ESP32_CHIPS.map((c) => c.name)),

  check(bytes: Uint8Array, options: UploadOptions): CheckedRelease {
    const result = preflightEsp32(bytes, { source: options.source });
    if (!result.ok) throw new RequestError(refusalMessage(result, options.source));
    const image = parseEsp32AppImage(bytes, options.source);
    const elf = image.appDescription?.elfSha256 as string;
    return {
      artifact: bytes,
      identity: esp32Identity(elf),
      micropython: result.micropython,
      build: image.chip.name,
      verdicts: result.verdicts.map((v) => ({
        check: v.check,
        level: v.level,
        forced: false,
        message: v.fix && v.level !== "ok" ? `${v.message} ${v.fix}` : v.message,
      })),
    };
  },

  verify(identity: string, bytes: Uint8Array, what: string): void {
    let problem: string;
    try {
      const image = parseEsp32AppImage(bytes, what);
      const elf = image.appDescription?.elfSha256;
      if (!image.checksum.ok || image.hash.ok === false) problem = "its checksum or SHA-256 does not match";
      else if (elf === undefined) problem = "it has no app description";
      else if (esp32Identity(elf) !== identity.toLowerCase())
        problem = `its ELF SHA-256 begins ${esp32Identity(elf)}`;
      else return;
    } catch (error) {
      problem = (error as Error).message;
    }
    throw new FirmwareIntegrityError(
      `${what} does not match firmware identity ${identity}: ${problem}. It was changed or damaged after it was added and will not be sent. Remove it (\`mpota firmware remove ${identity}\`) and add the image again.`,
    );
  },

  /**
   * Contract v3's state says what the device is: its chip, and how large
   * the app slot an update is written to (0: the board has one app slot, a
   * firmware flashed without the OTA partition table). A v1/v2 agent
   * cannot pull at all: it would ignore the command. A device of a chip
   * that is no ESP32 was refused before (`chips`, jobs/job-request.ts).
   */
  checkDevice(artifact: Uint8Array, state: DeviceState, source: string): void {
    const chip = chipOf(artifact, source);
    if (state.v < 3 || state.chip === undefined) {
      throw new RequestError(
        `${source}: the device reports contract v${state.v}${state.chip ? "" : " without its chip"}, so it cannot fetch an ${chip.label} image into its other slot. Install the current agent (device/ of mpota, contract v3) on it first; an ESP8266 cannot run an ${chip.label} image at all.`,
      );
    }
    if (state.chip !== chip.name) {
      const theirs = ESP32_CHIPS.find((c) => c.name === state.chip)?.label ?? state.chip;
      throw new RequestError(
        `${source}: the image is built for ${chip.label}, the device reports ${state.chip}. Pick a release built for ${theirs}.`,
      );
    }
    if (state.slot === 0) {
      throw new RequestError(
        `${source}: the device has no second app slot: reflash it with the OTA variant (ESP32_GENERIC-OTA's firmware.bin by serial, \`mpota flash-plan\`) to update it over the air.`,
      );
    }
    if (state.slot !== undefined && artifact.length > state.slot) {
      throw new RequestError(
        `${source}: the image of ${artifact.length} bytes does not fit the device's app slot of ${state.slot} bytes. Build a smaller image, or give the device a partition table with larger app slots.`,
      );
    }
  },
};
