import type { Clock, Timer } from "../../net/clock.ts";
import type { PullReport } from "../../protocol/mqtt-contract.ts";
import type { CheckedArtifact } from "../releases/release-kind.ts";
import type { Delivery, DeliveryOutcome, DeliveryProgress, DeliveryRequest } from "./delivery.ts";
import { esp32PullWords } from "./esp32-pull-words.ts";

export const ESP32_PULL = "esp32-pull";
/** A pull with no report for this long has broken off (the agent reports about every 64 KiB). */
export const DEFAULT_PULL_STALL_MS = 60_000;
/** The device route's path for an image, below the device URL. */
export const DEVICE_FIRMWARE_PATH = "/device/firmware/";

/** Why a server without an HTTP listener cannot let an ESP32 pull its image. */
export const NO_DEVICE_ROUTE = {
  request:
    "This server has no HTTP listener, so an ESP32 cannot fetch its image from it. Start it with the HTTP API on an address the devices reach (`mpota serve --http-host 0.0.0.0`, or --device-url URL when they reach it through a proxy).",
  job: "This server has no HTTP listener for devices to fetch the image from. Restart it with the HTTP API (`mpota serve --http-host 0.0.0.0`).",
};

/** Device errors a new try of the same image cannot fix (the image itself is refused on the device). */
const FINAL_ERROR = /set_boot|VALIDATE|no OTA partition|does not fit|too (big|large)|refused/i;

export interface Esp32PullOptions {
  /** Whether the server has an HTTP listener (the device route) at all. */
  available: boolean;
  /** The base URL devices fetch from (`--device-url`), or undefined while it is not known yet (port 0 before listening). */
  deviceUrl: () => string | undefined;
  /** The server's clock (virtual in tests). */
  clock: Clock;
  /** No report for this long after the first one: the fetch broke off (default 60 s). */
  stallMs?: number;
}

interface Follower {
  job: string;
  onReport: (report: PullReport) => void;
}

/**
 * The ESP32 delivery: the device fetches the image itself (from the device
 * route, http/device-firmware-route.ts) into its other app slot, named by
 * the signed `pull` command, and reports on its `ack` topic how far it got.
 * This delivery follows those reports (the composition root passes every
 * one it sees to {@link report}: every instance subscribes, so the one
 * holding the job hears them) and says how it went: `done` is delivered;
 * an `error` report failed (final when the device refused the image); no
 * report at all within the answer window is silent; reports that stop for
 * `stallMs` stopped (the device resumes with a Range request on the next try).
 */
export class Esp32PullDelivery implements Delivery {
  readonly name = ESP32_PULL;
  readonly words = esp32PullWords;
  private readonly following = new Map<string, Follower>();
  private readonly stallMs: number;

  constructor(private readonly o: Esp32PullOptions) {
    this.stallMs = o.stallMs ?? DEFAULT_PULL_STALL_MS;
  }

  get unavailable(): Delivery["unavailable"] {
    return this.o.available ? undefined : NO_DEVICE_ROUTE;
  }

  /** The signed command's `sha` and `url` for this artifact. */
  commandFields(artifact: CheckedArtifact): { sha: string; url: string } | undefined {
    const base = this.o.deviceUrl();
    if (base === undefined) return undefined;
    return {
      sha: artifact.sha256,
      url: `${base.replace(/\/+$/, "")}${DEVICE_FIRMWARE_PATH}${artifact.identity}`,
    };
  }

  /** A report a device published on its `ack` topic (reports of jobs this instance does not deliver are dropped). */
  report(deviceId: string, report: PullReport): void {
    const follower = this.following.get(deviceId);
    if (follower?.job === report.job) follower.onReport(report);
  }

  deliver(request: DeliveryRequest): Promise<DeliveryOutcome> {
    const { job, artifact, signal } = request;
    const { clock } = this.o;
    const url = this.commandFields(artifact)?.url;
    if (url === undefined)
      return Promise.resolve({ kind: "failed", reason: NO_DEVICE_ROUTE.job, final: true });
    if (signal.aborted) return Promise.resolve({ kind: "aborted" });
    const started = clock.now();
    const total = artifact.bytes.length;
    let progress: DeliveryProgress = { bytes: 0, total, rate: 0, retransmits: 0 };
    let heard = false;
    return new Promise<DeliveryOutcome>((resolve) => {
      let timer: Timer;
      const end = (outcome: DeliveryOutcome) => {
        timer.cancel();
        signal.removeEventListener("abort", abort);
        if (this.following.get(job.deviceId)?.job === job.id) this.following.delete(job.deviceId);
        resolve(outcome);
      };
      const abort = () => end({ kind: "aborted" });
      const silent = () =>
        end({
          kind: "silent",
          neverAnswered: `Device ${job.deviceId} took the pull command but reported no progress fetching ${url} within ${seconds(request.waitMs)}. Check that the device reaches that address (the server's --device-url; a firewall on the HTTP port) and that its agent is v3 (device/mpota_pull.py).`,
        });
      const stalled = () =>
        end({
          kind: "stopped",
          reason: `The pull of ${url} broke off at ${progress.bytes} of ${total} bytes: no report from device ${job.deviceId} for ${seconds(this.stallMs)}. The device keeps what it wrote and resumes from there (HTTP Range) on the next try.`,
        });
      timer = clock.setTimer(request.waitMs, silent);
      signal.addEventListener("abort", abort, { once: true });
      this.following.set(job.deviceId, {
        job: job.id,
        onReport: (report) => {
          const elapsedMs = clock.now() - started;
          if ("error" in report) {
            end({
              kind: "failed",
              reason: `Device ${job.deviceId} reports: ${report.error}`,
              final: FINAL_ERROR.test(report.error),
            });
            return;
          }
          heard = true;
          progress = {
            bytes: report.got,
            total: report.total,
            rate: elapsedMs > 0 ? Math.round((report.got * 1000) / elapsedMs) : 0,
            retransmits: 0,
          };
          request.onProgress(progress);
          timer.cancel();
          if (report.done) {
            end({
              kind: "delivered",
              progress,
              elapsedMs,
              summary: `Device ${job.deviceId} fetched ${report.total} bytes into its other slot in ${(elapsedMs / 1000).toFixed(1)} s, checked their SHA-256 and switched to it.`,
            });
            return;
          }
          timer = clock.setTimer(this.stallMs, heard ? stalled : silent);
        },
      });
    });
  }
}

/** "0.4 s", "60 s". */
function seconds(ms: number): string {
  return ms < 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms / 1000)} s`;
}
