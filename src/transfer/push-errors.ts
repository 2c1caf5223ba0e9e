import { MpotaError } from "../errors.ts";
import { EXIT_CODES } from "../exit-codes.ts";
import type { UdpEndpoint } from "../net/udp-channel.ts";

/** A push could not be completed. Subclasses say why and what to do. */
export class PushError extends MpotaError {
  override readonly exitCode: number = EXIT_CODES.push.code;
}

/** Nothing ever answered the first datagram. */
export class DeviceSilentError extends PushError {
  override readonly exitCode: number = EXIT_CODES.deviceSilent.code;
}

/** The device answered, then stopped answering before the image was complete. */
export class DeviceStoppedError extends PushError {
  override readonly exitCode: number = EXIT_CODES.deviceStopped.code;
}

/** The usual reasons a device never answers, as the error lists them. */
export const SILENT_CAUSES = (device: UdpEndpoint) =>
  [
    "  - the device is not running: powered off, or an emulator that stopped or was stopped (started with `&` in a shell, `jobs` shows whether it is Running or Stopped);",
    `  - the device is not in OTA mode (trigger it: ota.start() on the device, \`mpota update\` over MQTT, or the button within the GPIO window after reset);`,
    `  - ${device.address} is not the device's address, or port ${device.port} is not its OTA port;`,
    "  - the image is signed with a key whose modulus the bootloader was not built with: the receiver drops such packets without a reply (check with `mpota inspect yaota8266.bin --key priv.key`).",
  ].join("\n");
