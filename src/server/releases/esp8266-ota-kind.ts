import { checkFlashSize, DEFAULT_FLASH_SIZE } from "../../firmware/flash-layout.ts";
import { checkMd5Trailer } from "../../firmware/micropython-image.ts";
import type { DeviceState } from "../../protocol/mqtt-contract.ts";
import type { FirmwareRecord } from "../storage/storage.ts";
import { firmwareChecks } from "./firmware-checks.ts";
import { FirmwareIntegrityError } from "./firmware-files.ts";
import type { CheckedRelease, ReleaseKind, UploadOptions } from "./release-kind.ts";

export const ESP8266_OTA = "esp8266-ota";

/** The `build` values preflight gives an ESP8266 image (src/firmware/build-kind.ts). */
const ESP8266_BUILDS = new Set<string | null>(["ota", "normal", "unknown", null]);

/**
 * An ESP8266 MicroPython OTA image for the yaota8266 bootloader: checked by
 * src/firmware's preflight (file kind, size word and MD5 trailer, OTA build,
 * flash layout), named by its MD5 trailer, pushed over UDP.
 */
export const esp8266OtaKind: ReleaseKind = {
  name: ESP8266_OTA,
  // deliveries/udp-push.ts (named, not imported: deliveries depend on releases, not the reverse).
  delivery: "udp-push",
  deviceModel: "ESP8266 with yaota8266",

  // As the default kind, uploads no other kind recognises are checked as ESP8266 images.
  recognises: () => true,
  owns: (release: FirmwareRecord) => ESP8266_BUILDS.has(release.build),
  target: () => "esp8266",
  chips: new Set(["esp8266"]),

  check(bytes: Uint8Array, options: UploadOptions): CheckedRelease {
    const checked = firmwareChecks(bytes, {
      flashSize: options.flashSize ?? DEFAULT_FLASH_SIZE,
      force: options.force === true,
      source: options.source,
    });
    return { ...checked, artifact: checked.image };
  },

  verify(identity: string, bytes: Uint8Array, what: string): void {
    const trailer = checkMd5Trailer(bytes);
    if (trailer.status !== "ok" || trailer.stored !== identity.toLowerCase()) {
      throw new FirmwareIntegrityError(
        `${what} does not match firmware identity ${identity}: ${trailer.status === "ok" ? `its MD5 trailer is ${trailer.stored}` : trailer.message} It was changed or damaged after it was added and will not be pushed. Remove it (\`mpota firmware remove ${identity}\`) and add the image again.`,
      );
    }
  },

  /**
   * The layout checks again, against the flash size the device reports
   * (when it is one an ESP8266 has). A device of another chip was refused
   * before (`chips`, jobs/job-request.ts).
   */
  checkDevice(artifact: Uint8Array, state: DeviceState, source: string): void {
    if (state.flash === undefined || !isFlashSize(state.flash)) return;
    firmwareChecks(artifact, { flashSize: state.flash, source });
  },
};

function isFlashSize(bytes: number): boolean {
  try {
    checkFlashSize(bytes);
    return true;
  } catch {
    return false;
  }
}
