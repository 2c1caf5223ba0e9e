import type { Logger } from "pino";
import {
  type DeviceAck,
  type DeviceState,
  type DeviceStatus,
  isPullReport,
} from "../../protocol/mqtt-contract.ts";
import type { KeyedQueue } from "../base/keyed-queue.ts";
import type { DeliveryWords } from "../deliveries/delivery-words.ts";
import type { NetworkPolicy } from "../devices/network-policy.ts";
import { type ReleaseKind, rolledBackOf, runningOf } from "../releases/release-kind.ts";
import type { DeviceRecord, JobRecord, Storage } from "../storage/storage.ts";
import { isTerminal } from "../storage/types.ts";
import { declinedMessage, declinedPermanentlyMessage, isPermanentDecline } from "./job-advice.ts";
import type { JobLedger } from "./job-ledger.ts";
import type { JobTimings } from "./job-timings.ts";

/** The step a job gets when its device takes its command after it ended. */
const LATE_ACK = "late-ack";

export interface JobMessagesOptions {
  storage: Storage;
  ledger: JobLedger;
  policy: NetworkPolicy;
  timings: JobTimings;
  logger: Logger;
  /** The runner's per-job queue. */
  queue: KeyedQueue;
  /** The runner's lease holder: runs `fn` holding the job's lease, waiting up to `waitMs` for it. */
  withLease: (id: string, fn: (job: JobRecord) => Promise<void>, waitMs?: number) => Promise<void>;
  /** Look at due jobs after `delayMs`. */
  kick: (delayMs: number) => void;
  /** Whether the device fetches the job's release itself (an ESP32's pull, an app), rather than being pushed to. */
  fetchedByDevice: (job: JobRecord) => Promise<boolean>;
  /** The kind of the job's release: what the device reports running of it, and its way back. */
  kindOf: (job: JobRecord) => Promise<ReleaseKind>;
  /** The words of the job's delivery. */
  wordsOf: (job: JobRecord) => Promise<DeliveryWords>;
}

/**
 * What a device's messages do to its active job: a state verifies (or
 * refutes) a delivery, a ready ack sets the address to deliver to (checked
 * against the network policy, once per delivery), a declining ack retries
 * or gives up. Called in each device's message order.
 */
export class JobMessages {
  constructor(private readonly o: JobMessagesOptions) {}

  /** `receivedAt`: when the state reached this instance, to tell one sent before a device's switch. */
  async handleState(device: DeviceRecord, state: DeviceState, receivedAt?: number): Promise<void> {
    const active = await this.o.storage.jobs.activeForDevice(device.id);
    if (!active) return;
    await this.o.queue.run(active.id, async () => {
      const current = await this.o.storage.jobs.get(active.id);
      if (!current || isTerminal(current.phase)) return;
      const kind = await this.o.kindOf(current);
      const running = runningOf(kind, state).identity ?? "none";
      if (rolledBackOf(kind, state, current.id) && current.phase !== "ready" && current.phase !== "pushing") {
        // The device went back (an ESP32's bootloader, an app's loader): the new release never confirmed itself.
        await this.o.withLease(
          current.id,
          (job) => this.o.ledger.failIfRolledBack(job).then(() => undefined),
          this.messageLeaseWaitMs,
        );
        return;
      }
      if (current.phase === "ready" || current.phase === "pushing") {
        await this.o.ledger.note(
          current.id,
          "device-state",
          `Device reported ${what(kind, running)} during the ${(await this.o.wordsOf(current)).noun}.`,
          {
            fw: running,
          },
        );
        return;
      }
      await this.o.withLease(
        current.id,
        async (job) => {
          // A state that reached the server before the delivery ended was sent before the device
          // switched: states wait for the database (and, with several instances, may wait in one
          // while another carries the delivery on), so they can be handled after the end.
          const sentBefore =
            job.phase === "verifying" && receivedAt !== undefined && receivedAt < (job.pushedAt ?? 0);
          // A device fetching its release runs the old one until it switches: its state during a
          // broken-off fetch (it reconnected, woke, or the server restarted) is no failed try.
          const beforeSwitch =
            sentBefore || (job.phase === "recovering" && (await this.o.fetchedByDevice(job)));
          if (running === job.firmwareId) {
            await this.o.ledger.succeedIfReported(job);
          } else if ((job.phase === "verifying" || job.phase === "recovering") && !beforeSwitch) {
            await this.o.ledger.attemptFailed(
              job,
              (await this.o.wordsOf(job)).wrongFirmware(job, running),
              "command",
              "wrong-firmware",
              {
                fw: running,
              },
            );
          } else if (sentBefore) {
            await this.o.ledger.note(
              job.id,
              "device-state",
              `Device reported ${what(kind, running)} before the ${(await this.o.wordsOf(job)).noun} ended; waiting for its state after the switch.`,
              { fw: running },
            );
          } else {
            const next = state.sleep ? `, sleeping ${state.sleep} s next` : "";
            await this.o.ledger.note(
              job.id,
              "device-state",
              `Device woke running ${what(kind, running)}${next}.`,
              {
                fw: running,
                ip: state.ip,
              },
            );
          }
        },
        this.messageLeaseWaitMs,
      );
    });
  }

  /** How long a device message waits for a job's lease held elsewhere. */
  private get messageLeaseWaitMs(): number {
    return Math.min(this.o.timings.leaseMs, 5000);
  }

  async handleStatus(device: DeviceRecord, status: DeviceStatus): Promise<void> {
    if (status !== "ota") return;
    const active = await this.o.storage.jobs.activeForDevice(device.id);
    if (active && (active.phase === "ready" || active.phase === "waiting")) {
      await this.o.ledger.note(active.id, "device-status", (await this.o.wordsOf(active)).statusOta);
    }
  }

  async handleAck(device: DeviceRecord, ack: DeviceAck): Promise<void> {
    // A fetch's progress reports go to the delivery that follows them (deliveries/device-fetch.ts).
    if (isPullReport(ack)) return;
    const answer = ack;
    const active = await this.o.storage.jobs.activeForDevice(device.id);
    if (!active || active.id !== ack.job) {
      this.o.logger.warn(
        { device: device.id, ackJob: ack.job, activeJob: active?.id ?? null },
        "ack ignored: it names no active job of this device",
      );
      if (answer.ready === true) await this.lateAck(device, ack.job);
      return;
    }
    await this.o.queue.run(active.id, () =>
      this.o.withLease(
        active.id,
        async (job) => {
          if (job.phase !== "waiting" && job.phase !== "retrying") {
            this.o.logger.info(
              { job: job.id, phase: job.phase },
              "ack ignored: the job is not waiting for one",
            );
            return;
          }
          if (answer.ready === true) await this.accept(job, device, answer);
          else await this.declined(job, answer.error);
        },
        this.messageLeaseWaitMs,
      ),
    );
  }

  /**
   * A device took the command of one of its jobs that has ended meanwhile
   * (cancelled, or a rollout took it back, while the command was on its
   * way): the device acts on it all the same, so its job says what the
   * device does now. Once per job, whatever the device repeats; only the
   * job's own device can add it.
   */
  private async lateAck(device: DeviceRecord, jobId: string): Promise<void> {
    const job = await this.o.storage.jobs.get(jobId);
    if (!job || job.deviceId !== device.id || !isTerminal(job.phase)) return;
    if ((await this.o.storage.jobs.steps(job.id)).some((step) => step.kind === LATE_ACK)) return;
    const ended = job.phase === "cancelled" ? "was cancelled" : `had ended (${job.phase})`;
    const then = (await this.o.fetchedByDevice(job))
      ? "it asks for the release, the server refuses it (the job is over), and the device goes on with what it runs."
      : "it has reset into OTA mode, where yaota8266 waits up to a minute for a push that will not come, and then boots the firmware it had.";
    await this.o.ledger.note(
      job.id,
      LATE_ACK,
      `Device ${job.deviceId} took this job's command after the job ${ended}: ${then} ${again(job)}`,
    );
  }

  /** A ready ack: check the address, then push after the boot delay. */
  private async accept(
    job: JobRecord,
    device: DeviceRecord,
    ack: Extract<DeviceAck, { ready: true }>,
  ): Promise<void> {
    const reported = device.state?.ip;
    const ip = ack.ip ?? reported;
    if (ip === undefined) {
      await this.o.ledger.fail(
        job,
        `Device ${job.deviceId} acknowledged without an address and never reported one in its state; the server pushes only to an address the device reported.`,
      );
      return;
    }
    if (ack.ip !== undefined && reported !== undefined && ack.ip !== reported) {
      this.o.logger.warn(
        { job: job.id, ackIp: ack.ip, stateIp: reported },
        "push refused: ack names another address than the state",
      );
      await this.o.ledger.fail(
        job,
        `Refused to push: the ack names ${ack.ip}, but device ${job.deviceId} reported ${reported} in its state. The server pushes only to the address the device itself reported; a mismatch means a misconfigured agent or a message that did not come from the device.`,
      );
      return;
    }
    const refusal = this.o.policy.refusal(ip);
    if (refusal) {
      this.o.logger.warn({ job: job.id, ip }, "push refused: address outside the allowed networks");
      await this.o.ledger.fail(job, `Refused to push to device ${job.deviceId}: ${refusal}`);
      return;
    }
    // A device that fetches starts at once: its delivery must be following its reports by then.
    const fetches = await this.o.fetchedByDevice(job);
    const bootDelayMs = fetches ? 0 : this.o.timings.bootDelayMs;
    const said = fetches
      ? `Device is ready; it fetches the release itself (from ${ip}).`
      : `Device is ready; resetting into OTA mode at ${ip}:${ack.port}.`;
    await this.o.ledger.update(job, {
      patch: {
        phase: "ready",
        targetIp: ip,
        targetPort: ack.port,
        ackedAt: this.o.ledger.now,
        dueAt: this.o.ledger.now + bootDelayMs,
        error: null,
      },
      steps: [
        this.o.ledger.step("ack", said, {
          ip,
          port: ack.port,
        }),
      ],
    });
    this.o.kick(bootDelayMs);
  }

  /** A ready:false ack: give up for reasons a retry cannot fix, retry otherwise. */
  private async declined(job: JobRecord, reason: string): Promise<void> {
    const counted = { ...job, attempt: job.attempt + 1 };
    if (isPermanentDecline(reason)) {
      const message = declinedPermanentlyMessage(job, reason);
      await this.o.ledger.fail(counted, message, [
        this.o.ledger.step("declined", message, { error: reason }),
      ]);
    } else {
      await this.o.ledger.attemptFailed(counted, declinedMessage(job, reason), "command", "declined", {
        error: reason,
      });
    }
  }
}

/** "firmware <fw>", or for a kind that reports a name of its own (an app) "app <identity>". */
function what(kind: ReleaseKind, running: string): string {
  return kind.running ? `${kind.name} ${running}` : `firmware ${running}`;
}

/** What to do about a late ack: nothing was installed, so another update is needed to install the release. */
function again(job: JobRecord): string {
  return `It was not updated: to install ${job.firmwareName} ${job.firmwareVersion} after all, update it again (a paused rollout gives it its turn again when resumed).`;
}
