import type { Clock, Timer } from "../../net/clock.ts";
import type { FetchCommand } from "../../protocol/command-signature.ts";
import type { PullReport } from "../../protocol/mqtt-contract.ts";
import type { CheckedArtifact } from "../releases/release-kind.ts";
import type { JobRecord } from "../storage/storage.ts";
import type { Delivery, DeliveryOutcome, DeliveryProgress, DeliveryRequest } from "./delivery.ts";
import type { DeliveryWords } from "./delivery-words.ts";

/** A fetch with no report for this long has broken off (agents report about every 64 KiB, or every file). */
export const DEFAULT_PULL_STALL_MS = 60_000;

/** Why a server without an HTTP listener cannot let a device fetch a release from it. */
export const NO_DEVICE_ROUTE = {
  request:
    "This server has no HTTP listener, so a device cannot fetch its release from it. Start it with the HTTP API on an address the devices reach (`mpota serve --http-host 0.0.0.0`, or --device-url URL when they reach it through a proxy).",
  job: "This server has no HTTP listener for devices to fetch the release from. Restart it with the HTTP API (`mpota serve --http-host 0.0.0.0`).",
};

/** What one kind of fetch says and decides; the rest is the same for every device that fetches. */
export interface FetchFollowing {
  /** Where the device fetches from, for messages. */
  url: string;
  /** The command's op, for messages ("pull", "app"). */
  op: string;
  /** What the device's fetch is called ("pull", "fetch"). */
  noun: string;
  /** Bytes of the whole release (progress before the first report). */
  total: number;
  /** Whether an error report ends the job at once (the release itself is refused). */
  isFinal(report: Extract<PullReport, { error: string }>): boolean;
  /** The job log's line for a fetch that ended with `done`. */
  summary(report: Extract<PullReport, { done: boolean }>, elapsedMs: number): string;
  /** What the device keeps of a fetch that broke off, and how it goes on. */
  resumes: string;
  /** What to check when the device never reported. */
  silentHint: string;
  /** What the delivered outcome adds to the job's step (files of an app). */
  details?(report: Extract<PullReport, { done: boolean }>): Record<string, number>;
}

/** Devices whose report before their delivery followed is kept (one report each). */
const MAX_EARLY_REPORTS = 4096;

/**
 * How much earlier than the try's command a kept report may have been
 * received and still count for the try. The command's time is stamped by
 * the instance that sent it and the report's by the one that received it,
 * so this covers a difference between their clocks (NTP keeps it to
 * milliseconds). A battery read this close before the command is hardly
 * out of date.
 */
export const COMMAND_CLOCK_SLACK_MS = 1_000;

interface Follower {
  job: string;
  onReport: (report: PullReport) => void;
}

/**
 * Follows fetches that devices make themselves (contract v3: an ESP32's
 * image, an app's files). Every instance passes each report it sees on the
 * devices' `ack` topics to {@link report}; the one delivering the job
 * hears it. `done` is delivered; an `error` failed (final when the device
 * refused the release itself); no report within the answer window is a
 * silent device; reports that stop for `stallMs` a fetch that broke off
 * (the device resumes on the next try).
 */
export class DeviceFetches {
  private readonly following = new Map<string, Follower>();
  /**
   * The last report of each device that came while no delivery here followed
   * it: a device starts fetching as soon as it has acked, and its first
   * reports (all of them, for a small app) can come before the job's
   * delivery starts following. Bounded, oldest dropped first. `receivedAt`
   * tells a report of this try from one of before its command.
   */
  private readonly early = new Map<string, { report: PullReport; receivedAt: number }>();

  constructor(
    private readonly clock: Clock,
    private readonly stallMs: number = DEFAULT_PULL_STALL_MS,
  ) {}

  /** A report a device published on its `ack` topic (reports of jobs not followed here are dropped). */
  report(deviceId: string, report: PullReport): void {
    const follower = this.following.get(deviceId);
    if (follower?.job === report.job) {
      follower.onReport(report);
      return;
    }
    this.early.delete(deviceId);
    this.early.set(deviceId, { report, receivedAt: this.clock.now() });
    if (this.early.size > MAX_EARLY_REPORTS) this.early.delete(this.early.keys().next().value as string);
  }

  async follow(request: DeliveryRequest, f: FetchFollowing): Promise<DeliveryOutcome> {
    const { job, signal } = request;
    const { clock } = this;
    if (signal.aborted) return { kind: "aborted" };
    // Read before following: a report that comes meanwhile is kept, and taken up below.
    const commandAt = await request.commandAt?.();
    if (signal.aborted) return { kind: "aborted" };
    const started = clock.now();
    let progress: DeliveryProgress = { bytes: 0, total: f.total, rate: 0, retransmits: 0 };
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
          neverAnswered: `Device ${job.deviceId} took the ${f.op} command but reported no progress fetching ${f.url} within ${seconds(request.waitMs)}. ${f.silentHint}`,
        });
      const stalled = () =>
        end({
          kind: "stopped",
          reason: `The ${f.noun} of ${f.url} broke off at ${progress.bytes} of ${progress.total} bytes${progress.files !== undefined ? ` (${progress.files} of ${progress.of} files)` : ""}: no report from device ${job.deviceId} for ${seconds(this.stallMs)}. ${f.resumes}`,
        });
      timer = clock.setTimer(request.waitMs, silent);
      signal.addEventListener("abort", abort, { once: true });
      const follower: Follower = {
        job: job.id,
        onReport: (report) => {
          const elapsedMs = clock.now() - started;
          if ("error" in report) {
            const final = f.isFinal(report);
            end({
              kind: "failed",
              reason:
                !final && LOW_BATTERY.test(report.error)
                  ? lowBatteryText(job.deviceId, f, progress)
                  : `Device ${job.deviceId} reports: ${report.error}`,
              final,
            });
            return;
          }
          heard = true;
          progress = {
            bytes: report.got,
            total: report.total,
            rate: elapsedMs > 0 ? Math.round((report.got * 1000) / elapsedMs) : 0,
            retransmits: 0,
            ...(report.files !== undefined && report.of !== undefined
              ? { files: report.files, of: report.of }
              : {}),
          };
          request.onProgress(progress);
          timer.cancel();
          if (report.done) {
            const details = f.details?.(report);
            end({
              kind: "delivered",
              progress,
              elapsedMs,
              summary: f.summary(report, elapsedMs),
              ...(details ? { details } : {}),
            });
            return;
          }
          timer = clock.setTimer(this.stallMs, heard ? stalled : silent);
        },
      };
      this.following.set(job.deviceId, follower);
      const early = this.early.get(job.deviceId);
      this.early.delete(job.deviceId);
      if (early?.report.job !== job.id) return;
      // A device that fetches goes on by itself between the server's tries (at a boot, a wake, a
      // back-off) and reports so, under the same job. A report received before this try's command
      // is from then: its "battery low" would fail this try at once, though the device that took
      // the command may have been charged since (the command's ack checks the battery again). Reports
      // do not pass the device's queue behind its ack (they come on a subscription of their own), so
      // the ack's time cannot tell them apart. A try that follows again without a new command (a
      // fetch that broke off) takes what the device reported since that command: it is the fetch
      // this try follows, and the device's latest word on it.
      const before = commandAt === undefined ? 0 : commandAt - early.receivedAt;
      if (before > COMMAND_CLOCK_SLACK_MS) {
        request.note?.("stale-report", staleReportText(job.deviceId, early.report, before), {
          report: early.report,
          beforeCommandMs: before,
        });
        return;
      }
      follower.onReport(early.report);
    });
  }
}

/** The job log's line for a kept report that came before the try's command. */
function staleReportText(deviceId: string, report: PullReport, beforeMs: number): string {
  const what =
    "error" in report
      ? `"${report.error}"`
      : `(${report.got} of ${report.total} bytes${report.done ? ", done" : ""})`;
  return `Device ${deviceId}'s report ${what} came ${seconds(beforeMs)} before this try's command: it is from an earlier try, or from the device going on by itself between tries, and does not count for this one.`;
}

/** The agents' words for a fetch they stop below MIN_VBAT (device/mpota_pull.py, mpota_appjob.py). */
const LOW_BATTERY = /^battery low$/i;

/**
 * A fetch the device stopped for its battery: what to do about it, and what
 * happens next. The device keeps what it wrote; the failed try's retry step
 * says when the server asks again (a sleeper takes that command at its next
 * wake), and each such stop uses one of the job's tries.
 */
function lowBatteryText(deviceId: string, f: FetchFollowing, progress: DeliveryProgress): string {
  const files = progress.files !== undefined ? ` (${progress.files} of ${progress.of} files)` : "";
  const where = progress.bytes > 0 ? ` at ${progress.bytes} of ${progress.total} bytes${files}` : "";
  return `Device ${deviceId} stopped the ${f.noun}${where}: battery low (below the MIN_VBAT in its config). Charge it or put it on power. ${f.resumes} Each stop for the battery uses one of the job's tries.`;
}

/** "0.4 s", "60 s". */
export function seconds(ms: number): string {
  return ms < 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms / 1000)} s`;
}

export interface DeviceFetchOptions {
  /** Whether the server has an HTTP listener (the device routes) at all. */
  available: boolean;
  /** The base URL devices fetch from (`--device-url`), or undefined while it is not known yet (port 0 before listening). */
  deviceUrl: () => string | undefined;
  /** Follows the devices' reports (shared by every delivery whose device fetches). */
  fetches: DeviceFetches;
}

/**
 * A delivery whose device fetches the release itself from a device route:
 * unavailable without an HTTP listener, its command names a URL below the
 * device URL, and delivering is following the device's reports. A kind of
 * fetch says only its command and what its reports mean.
 */
export abstract class FetchingDelivery implements Delivery {
  abstract readonly name: string;
  abstract readonly words: DeliveryWords;
  readonly fetchedByDevice = true;

  constructor(protected readonly o: DeviceFetchOptions) {}

  get unavailable(): Delivery["unavailable"] {
    return this.o.available ? undefined : NO_DEVICE_ROUTE;
  }

  /** The signed command's fields, or undefined while the device URL is not known. */
  abstract command(job: JobRecord, artifact: CheckedArtifact): FetchCommand | undefined;

  /** What the reports of this kind of fetch mean, for the job's log. */
  protected abstract following(request: DeliveryRequest, url: string): FetchFollowing;

  /** `path` below the device URL, or undefined while that is not known. */
  protected deviceUrl(path: string): string | undefined {
    const base = this.o.deviceUrl();
    return base === undefined ? undefined : `${base.replace(/\/+$/, "")}${path}`;
  }

  deliver(request: DeliveryRequest): Promise<DeliveryOutcome> {
    const url = this.command(request.job, request.artifact)?.url;
    if (url === undefined)
      return Promise.resolve({ kind: "failed", reason: NO_DEVICE_ROUTE.job, final: true });
    return this.o.fetches.follow(request, this.following(request, url));
  }
}
