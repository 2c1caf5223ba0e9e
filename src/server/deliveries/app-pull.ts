import type { CheckedArtifact } from "../releases/release-kind.ts";
import type { JobRecord } from "../storage/storage.ts";
import { appPullWords } from "./app-pull-words.ts";
import type { DeliveryRequest, FetchCommand } from "./delivery.ts";
import { type FetchFollowing, FetchingDelivery } from "./device-fetch.ts";

export const APP_PULL = "app-pull";
/** The device route's path for an app release, below the device URL (http/device-app-route.ts). */
export const DEVICE_APP_PATH = "/device/app/";

/**
 * An app release's delivery: the board fetches the signed manifest and then
 * only the files whose digest it does not hold (from the device route,
 * http/device-app-route.ts), stages them beside the running app, switches
 * with one write and restarts (docs/app-updates.md). It reports on its
 * `ack` topic the bytes and files staged, followed by device-fetch.ts. A
 * fetch that broke off resumes on the next try, keeping the files already
 * checked. An error the board marks `final` (a bad signature, a file whose
 * digest differs, a release for another board, no room) fails the job: the
 * release itself is wrong and a new try would end the same way.
 */
export class AppPullDelivery extends FetchingDelivery {
  readonly name = APP_PULL;
  readonly words = appPullWords;

  /** The signed `app` command's fields: the manifest's SHA-256 and size, and where the board fetches. */
  command(job: JobRecord, artifact: CheckedArtifact): FetchCommand | undefined {
    const url = this.deviceUrl(`${DEVICE_APP_PATH}${artifact.sha256}`);
    if (url === undefined) return undefined;
    const { firmwareName: name, firmwareVersion: ver } = job;
    return { op: "app", name, ver, sha: artifact.sha256, size: artifact.bytes.length, url };
  }

  protected following(request: DeliveryRequest, url: string): FetchFollowing {
    const { job } = request;
    return {
      url,
      noun: "fetch",
      op: "app",
      total: 0,
      isFinal: (report) => report.final === true,
      summary: (report, elapsedMs) =>
        `Board ${job.deviceId} staged ${job.firmwareName} ${job.firmwareVersion}${report.of !== undefined ? ` (${report.of} files, ${report.total} bytes)` : ""} in ${(elapsedMs / 1000).toFixed(1)} s, each file checked by its SHA-256, and switched to it.`,
      details: (report) => ({
        bytes: report.total,
        ...(report.of !== undefined ? { files: report.of } : {}),
      }),
      resumes: "The board keeps the files it staged and checked, and fetches the rest on the next try.",
      silentHint:
        "Check that the board reaches that address (the server's --device-url; a firewall on the HTTP port), that its agent is v3 with the app modules (device/mpota_app.py, mpota_stage.py) and that its main.py runs mpota_loader.",
    };
  }
}
