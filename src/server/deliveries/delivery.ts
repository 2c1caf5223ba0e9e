import type { FetchCommand } from "../../protocol/command-signature.ts";
import { RequestError } from "../base/request-error.ts";
import type { CheckedArtifact } from "../releases/release-kind.ts";
import type { JobRecord } from "../storage/storage.ts";
import type { DeliveryWords } from "./delivery-words.ts";

/**
 * The delivery seam: how a release gets onto a device once the device has
 * taken the job's command. The job state machine (src/server/jobs/) holds
 * the lease, records progress and outcome, retries and verifies by the
 * device's next state; a delivery only moves the bytes and says how it
 * went. Today: the UDP push of signed yaota8266 datagrams (udp-push.ts). A
 * device that fetches its release itself (an ESP32 writing its other slot,
 * an app bundle by manifest) is another implementation of this interface.
 */

export interface DeliveryProgress {
  bytes: number;
  total: number;
  /** Bytes per second so far. */
  rate: number;
  retransmits: number;
  /** An app's: files staged of the release's. */
  files?: number;
  of?: number;
}

/** What the signed command carries beyond `ota`'s fields when the device fetches the release itself. */
export type { FetchCommand };

export interface DeliveryRequest {
  /** The job, holding the lease; `targetIp`/`targetPort` are the address the device acked from. */
  job: JobRecord;
  artifact: CheckedArtifact;
  /** How long the device may take to answer at all (the receiver's listening window). */
  waitMs: number;
  /** Aborted when the server stops: resolve with `{ kind: "aborted" }` at once. */
  signal: AbortSignal;
  onProgress: (progress: DeliveryProgress) => void;
  /**
   * When this try's command was stamped: the job's last `command` step,
   * written just before it was published, maybe by another instance
   * (undefined when none is stored or it cannot be read). The device
   * reports on a try only after it took that command. Read from storage on
   * demand, by a delivery the device fetches.
   */
  commandAt?: () => Promise<number | undefined>;
  /** Adds a step to the job's log that changes nothing (a report the delivery set aside, and why). */
  note?: (kind: string, message: string, data: Record<string, unknown>) => void;
}

export type DeliveryOutcome =
  /** The release is on the device; it should boot it and report. `summary`: what happened, for the job's log. */
  | {
      kind: "delivered";
      progress: DeliveryProgress;
      elapsedMs: number;
      summary: string;
      details?: Record<string, number>;
    }
  /** Broke off part way: the device needs time to reset before a whole new try. `reason`: what and what next. */
  | { kind: "stopped"; reason: string }
  /**
   * The device did not answer. `neverAnswered`: why, when it has not answered
   * since it took the command (the job says otherwise when it went silent
   * after an earlier delivery).
   */
  | { kind: "silent"; neverAnswered: string }
  /** `final`: a new try cannot help (the device refused the image itself): the job fails at once. */
  | { kind: "failed"; reason: string; final?: boolean }
  /** The server is stopping: the job stays as it is for whoever takes it next. */
  | { kind: "aborted" };

export interface Delivery {
  /** Its name in the release kinds (`ReleaseKind.delivery`). */
  readonly name: string;
  /**
   * Why this server cannot deliver this way (a push without a signing key),
   * in the words a request gets; undefined when it can.
   */
  readonly unavailable?: { request: string; job: string } | undefined;
  /** What the job's steps and advice call this delivery and its troubles (delivery-words.ts). */
  readonly words: DeliveryWords;
  /**
   * Whether the device fetches the release itself. Its ready ack starts the
   * fetch at once (no boot delay before following it), and its state of
   * the old release while a fetch is broken off is no failed try: it runs
   * the old one until it switches. Such a delivery has {@link command}.
   */
  readonly fetchedByDevice?: boolean;
  /**
   * For a device that fetches the release itself: what the signed command
   * adds, or undefined while the server does not know its own URL yet (an
   * HTTP port 0 before it listens). Without it the job sends `ota` and the
   * server brings the bytes.
   */
  command?(job: JobRecord, artifact: CheckedArtifact): FetchCommand | undefined;
  deliver(request: DeliveryRequest): Promise<DeliveryOutcome>;
}

/** The deliveries a server has, by name; given to the job runner by the composition root. */
export class Deliveries {
  private readonly byName = new Map<string, Delivery>();

  constructor(deliveries: readonly Delivery[]) {
    for (const d of deliveries) this.byName.set(d.name, d);
  }

  /** Why this server can deliver nothing at all (every delivery unavailable), or undefined. */
  get noneAvailable(): string | undefined {
    const all = [...this.byName.values()];
    if (all.some((d) => d.unavailable === undefined)) return undefined;
    return all[0]?.unavailable?.request ?? "This server has no way to deliver updates.";
  }

  get(name: string): Delivery {
    const found = this.byName.get(name);
    if (!found) {
      throw new RequestError(
        `This server has no delivery "${name}" (it has ${[...this.byName.keys()].join(", ") || "none"}); a release of this kind cannot be sent from it yet. The release stays stored; until an mpota with that delivery runs here, install it on the device by hand (firmware by serial: esptool.py write_flash or the board's own tool; app files with mpremote).`,
      );
    }
    return found;
  }
}
