import { createHash } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { connectAsync, type MqttClient } from "mqtt";
import { type Clock, systemClock } from "../../../src/net/clock.ts";
import type { DeviceState } from "../../../src/protocol/mqtt-contract.ts";
import { RequestError } from "../../../src/server/base/request-error.ts";
import type {
  Delivery,
  DeliveryOutcome,
  DeliveryProgress,
  DeliveryRequest,
} from "../../../src/server/deliveries/delivery.ts";
import { plainWords } from "../../../src/server/deliveries/delivery-words.ts";
import { FirmwareIntegrityError } from "../../../src/server/releases/firmware-files.ts";
import type {
  CheckedRelease,
  ReleaseKind,
  UploadOptions,
} from "../../../src/server/releases/release-kind.ts";
import type { FirmwareRecord } from "../../../src/server/storage/storage.ts";

/**
 * Test doubles of a second kind of release and a second delivery, shaped
 * like the app-bundle and ESP32 paths to come: the device fetches the
 * release itself over HTTP when the server offers it, and reports its
 * progress on its own topic. They exist to show that another kind plugs
 * into the same job state machine, store and API through the two seams.
 */

export const BUNDLE_MAGIC = "MPBNDL1\n";

/** A bundle's identity: what a device running it reports as `fw` (32 hex digits, as the contract wants). */
export function bundleIdentity(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex").slice(0, 32);
}

export function makeBundle(files: Record<string, string>): Uint8Array {
  return Buffer.from(BUNDLE_MAGIC + JSON.stringify(files));
}

/** Devices say they take bundles by "bundles" in `ver`, and how much room they have in `flash`. */
export const bundleKind: ReleaseKind = {
  name: "test-bundle",
  delivery: "test-pull",
  deviceModel: "MicroPython board with app bundles",
  recognises: (bytes) =>
    Buffer.from(bytes.subarray(0, BUNDLE_MAGIC.length)).toString("latin1") === BUNDLE_MAGIC,
  owns: (release: FirmwareRecord) => release.build === "bundle",
  chips: "any",
  check(bytes: Uint8Array, options: UploadOptions): CheckedRelease {
    if (!bundleKind.recognises(bytes)) {
      throw new RequestError(
        `${options.source} is not an app bundle: it does not start with ${JSON.stringify(BUNDLE_MAGIC)}.`,
      );
    }
    return {
      artifact: bytes,
      identity: bundleIdentity(bytes),
      micropython: null,
      build: "bundle",
      verdicts: [
        { check: "bundle", level: "ok", forced: false, message: `An app bundle of ${bytes.length} bytes.` },
      ],
    };
  },
  verify(identity: string, bytes: Uint8Array, what: string): void {
    if (bundleIdentity(bytes) !== identity) {
      throw new FirmwareIntegrityError(`${what} does not match bundle identity ${identity}.`);
    }
  },
  checkDevice(artifact: Uint8Array, state: DeviceState, source: string): void {
    if (!state.ver?.includes("bundles")) {
      throw new RequestError(
        `${source}: the device does not take app bundles (its agent reports "${state.ver ?? ""}").`,
      );
    }
    if (state.flash !== undefined && artifact.length > state.flash) {
      throw new RequestError(
        `${source}: ${artifact.length} bytes do not fit the ${state.flash} bytes the device has.`,
      );
    }
  },
};

interface Offer {
  artifact: Uint8Array;
  onReport: (report: FetchReport) => void;
}

/** What a device publishes on `<base>/<id>/fetched` while it fetches. */
export interface FetchReport {
  job: string;
  bytes: number;
  total: number;
  done?: boolean;
  error?: string;
}

/**
 * The pull delivery: offers the artifact at `<url>/releases/<identity>` to
 * the device of the job (only while the delivery runs), and follows the
 * device's own reports until it says done, fails, or stays silent.
 */
export class PullDelivery implements Delivery {
  readonly name = "test-pull";
  readonly words = plainWords;
  private readonly offers = new Map<string, Offer>();
  private readonly http: Server;
  private client: MqttClient | undefined;
  url = "";
  /** Every delivery so far, with when it began and ended on the clock and how. */
  readonly log: Array<{ job: string; device: string; from: number; to?: number; outcome?: string }> = [];

  constructor(
    private readonly base = "mpota",
    /** The server's clock (virtual in tests that run in virtual time). */
    private readonly clock: Clock = systemClock,
  ) {
    this.http = createServer((request, response) => {
      const id = /^\/releases\/([0-9a-f]{32})$/.exec(request.url ?? "")?.[1];
      const offer = [...this.offers.values()].find((o) => bundleIdentity(o.artifact) === id);
      if (!offer) {
        response.writeHead(404).end();
        return;
      }
      response.writeHead(200, { "content-length": offer.artifact.length }).end(Buffer.from(offer.artifact));
    });
  }

  /** Serves HTTP on loopback and follows device reports on the broker (as the server's admin). */
  async attach(brokerUrl: string): Promise<void> {
    await new Promise<void>((resolve) => this.http.listen(0, "127.0.0.1", resolve));
    this.url = `http://127.0.0.1:${(this.http.address() as AddressInfo).port}`;
    this.client = await connectAsync(brokerUrl, { reconnectPeriod: 0 });
    this.client.on("message", (topic, payload) => {
      const device = topic.split("/")[1] as string;
      const report = JSON.parse(payload.toString()) as FetchReport;
      const offer = this.offers.get(device);
      if (offer) offer.onReport(report);
    });
    await this.client.subscribeAsync(`${this.base}/+/fetched`, { qos: 1 });
  }

  async close(): Promise<void> {
    await this.client?.endAsync();
    await new Promise((resolve) => this.http.close(resolve));
  }

  deliver(request: DeliveryRequest): Promise<DeliveryOutcome> {
    const { job, artifact, signal } = request;
    const started = this.clock.now();
    const entry: (typeof this.log)[number] = { job: job.id, device: job.deviceId, from: started };
    this.log.push(entry);
    return new Promise<DeliveryOutcome>((resolve) => {
      let heard = false;
      const end = (outcome: DeliveryOutcome) => {
        silence.cancel();
        entry.to = this.clock.now();
        entry.outcome = outcome.kind;
        signal.removeEventListener("abort", abort);
        this.offers.delete(job.deviceId);
        resolve(outcome);
      };
      // waitMs bounds the silence before an answer and between reports, as the real fetch
      // deliveries do, not the whole fetch: one that took longer on a loaded machine failed as silent.
      const silent = () =>
        end(
          heard
            ? { kind: "stopped", reason: `Device ${job.deviceId} stopped reporting its fetch.` }
            : { kind: "silent", neverAnswered: `Device ${job.deviceId} never fetched ${artifact.identity}.` },
        );
      let silence = this.clock.setTimer(request.waitMs, silent);
      const abort = () => end({ kind: "aborted" });
      signal.addEventListener("abort", abort, { once: true });
      this.offers.set(job.deviceId, {
        artifact: artifact.bytes,
        onReport: (report) => {
          if (report.job !== job.id) return;
          const elapsedMs = this.clock.now() - started;
          const progress: DeliveryProgress = {
            bytes: report.bytes,
            total: report.total,
            rate: elapsedMs > 0 ? Math.round((report.bytes * 1000) / elapsedMs) : 0,
            retransmits: 0,
          };
          request.onProgress(progress);
          if (report.error !== undefined) {
            end(
              heard || report.bytes > 0
                ? { kind: "stopped", reason: `Device ${job.deviceId} stopped fetching: ${report.error}` }
                : { kind: "failed", reason: `Device ${job.deviceId} could not fetch: ${report.error}` },
            );
            return;
          }
          heard = true;
          silence.cancel();
          silence = this.clock.setTimer(request.waitMs, silent);
          if (report.done) {
            end({
              kind: "delivered",
              progress,
              elapsedMs,
              summary: `Device fetched ${report.bytes} bytes itself.`,
              details: { reports: 1 },
            });
          }
        },
      });
    });
  }
}
