import type { CheckedArtifact } from "../releases/release-kind.ts";
import type { JobRecord } from "../storage/storage.ts";
import type { DeliveryRequest, FetchCommand } from "./delivery.ts";
import { type FetchFollowing, FetchingDelivery } from "./device-fetch.ts";
import { esp32PullWords } from "./esp32-pull-words.ts";

export const ESP32_PULL = "esp32-pull";
/** The device route's path for an image, below the device URL. */
export const DEVICE_FIRMWARE_PATH = "/device/firmware/";

/** Device errors a new try of the same image cannot fix (the image itself is refused on the device). */
const FINAL_ERROR = /set_boot|VALIDATE|no OTA partition|does not fit|too (big|large)|refused/i;

/**
 * The ESP32 delivery: the device fetches the image itself (from the device
 * route, http/device-firmware-route.ts) into its other app slot, named by
 * the signed `pull` command, and reports on its `ack` topic how far it got
 * (followed by device-fetch.ts). A fetch that broke off resumes with an
 * HTTP Range request on the next try.
 */
export class Esp32PullDelivery extends FetchingDelivery {
  readonly name = ESP32_PULL;
  readonly words = esp32PullWords;

  /** The signed command's `sha` and `url` for this artifact. */
  command(_job: JobRecord, artifact: CheckedArtifact): FetchCommand | undefined {
    const url = this.deviceUrl(`${DEVICE_FIRMWARE_PATH}${artifact.identity}`);
    return url === undefined ? undefined : { op: "pull", sha: artifact.sha256, url };
  }

  protected following(request: DeliveryRequest, url: string): FetchFollowing {
    const { job } = request;
    return {
      url,
      noun: "pull",
      op: "pull",
      total: request.artifact.bytes.length,
      isFinal: (report) => FINAL_ERROR.test(report.error),
      summary: (report, elapsedMs) =>
        `Device ${job.deviceId} fetched ${report.total} bytes into its other slot in ${(elapsedMs / 1000).toFixed(1)} s, checked their SHA-256 and switched to it.`,
      resumes: "The device keeps what it wrote and resumes from there (HTTP Range) on the next try.",
      silentHint:
        "Check that the device reaches that address (the server's --device-url; a firewall on the HTTP port) and that its agent is v3 (device/mpota_pull.py).",
    };
  }
}
