import { createHash } from "node:crypto";
import type { Logger } from "pino";
import type { Clock } from "../../net/clock.ts";
import type { DeviceAck, DeviceState, DeviceStatus } from "../../protocol/mqtt-contract.ts";
import type { Topics } from "../api/topics.ts";
import { KeyedQueue } from "../base/keyed-queue.ts";
import type { MqttLink } from "../mqtt/mqtt-link.ts";
import type { Inbound, RawMessage } from "../mqtt/payload-reader.ts";
import { readAck, readState, readStatus } from "../mqtt/topic-readers.ts";
import { isDiskFull } from "../storage/disk-full.ts";
import { type DeviceRecord, type Storage, StorageUnavailableError } from "../storage/storage.ts";
import { type DeviceLimits, NewDeviceGate } from "./new-device-gate.ts";
import { OutageLog } from "./outage-log.ts";

/** Who hears about device messages once they are stored (the job runner). */
export interface DeviceListener {
  /** `receivedAt`: when the message reached this instance (before its turn in the device's queue). */
  handleState(device: DeviceRecord, state: DeviceState, receivedAt: number): Promise<void>;
  handleStatus(device: DeviceRecord, status: DeviceStatus): Promise<void>;
  handleAck(device: DeviceRecord, ack: DeviceAck): Promise<void>;
}

export interface DeviceInboxOptions {
  link: MqttLink;
  topics: Topics;
  storage: Storage;
  listener: DeviceListener;
  /** Wall clock. */
  clock: Clock;
  logger: Logger;
  /** State history entries kept per device. */
  historyLimit: number;
  /** How long a message is tried again while the database is unreachable (`UNAVAILABLE_RETRY_MS`). */
  unavailableRetryMs?: number;
  /** How many devices are registered, and how fast new ones (`DEFAULT_DEVICE_LIMITS`). */
  limits: DeviceLimits;
}

export const DEFAULT_HISTORY_LIMIT = 200;

/**
 * How long a device message is tried again while the database cannot be
 * reached (a PostgreSQL restart or failover), and the pauses between tries.
 * The device's later messages wait behind it, so their order holds.
 */
export const UNAVAILABLE_RETRY_MS = 120_000;
const UNAVAILABLE_PAUSE_MS = [250, 500, 1000, 2000, 5000];

/**
 * Reads what devices publish (`state`, `status`, `ack`), validates it, keeps
 * the registry in storage up to date, and passes it on to the job runner,
 * one device's messages in order. Bad input is logged and dropped: it never
 * stops the server and never reaches storage.
 *
 * Retained messages the broker replays on (re)subscribing are recognised:
 * a state or status equal to the stored one is not news, so an old retained
 * state is never taken as a device's answer after a push.
 */
export class DeviceInbox {
  private readonly queue = new KeyedQueue();
  private readonly filters: string[];
  private stopped = false;
  /** Messages dropped while the disk is full. */
  private readonly full: OutageLog;
  /** Messages kept and tried again while the database is unreachable, and those dropped after all. */
  private readonly unreachable: OutageLog;
  private readonly unreachableDrops: OutageLog;
  private readonly newDevices: NewDeviceGate;

  constructor(private readonly o: DeviceInboxOptions) {
    this.filters = [o.topics.allDevices("state"), o.topics.allDevices("status"), o.topics.allDevices("ack")];
    this.full = new OutageLog(o.clock);
    this.unreachable = new OutageLog(o.clock);
    this.unreachableDrops = new OutageLog(o.clock);
    this.newDevices = new NewDeviceGate({
      limits: o.limits,
      count: () => o.storage.devices.count(),
      provisioned: async (id) => (await o.storage.credentials.get(id)) !== undefined,
      clock: o.clock,
      logger: o.logger,
    });
  }

  async start(): Promise<void> {
    const { link, topics } = this.o;
    const shared = { shared: true };
    // The readers check the device id and the payload as the contract says, and log what they refuse.
    await link.subscribe(
      topics.allDevices("state"),
      readState,
      (m) => {
        const receivedAt = this.o.clock.now();
        this.enqueue(m, (id) => this.onState(id, m, receivedAt));
      },
      shared,
    );
    await link.subscribe(
      topics.allDevices("status"),
      readStatus,
      (m) => this.enqueue(m, (id) => this.onStatus(id, m)),
      shared,
    );
    await link.subscribe(
      topics.allDevices("ack"),
      readAck,
      (m) => this.enqueue(m, (id) => this.onAck(id, m)),
      shared,
    );
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const filter of this.filters) await this.o.link.unsubscribe(filter).catch(() => undefined);
    await this.queue.idle();
  }

  /** Resolves when every message received so far has been handled (tests). */
  idle(): Promise<void> {
    return this.queue.idle();
  }

  /** Handles a message the contract's reader accepted in its device's queue, one device's messages in order. */
  private enqueue(message: RawMessage, handle: (id: string) => Promise<boolean>): void {
    const parsed = this.o.topics.parseDevice(message.topic);
    if (!parsed) return;
    const { id, kind } = parsed;
    void this.queue
      .run(id, async () => {
        // Only a message the database took ends an outage (not a known state, nor a refused new id).
        if (await this.whileUnavailable(id, kind, () => handle(id))) this.outagesEnded();
      })
      .catch((error: unknown) => {
        if (isDiskFull(error)) this.droppedForSpace(id, kind, error);
        else if (error instanceof StorageUnavailableError) {
          // One line per outage, not per message (the first one dropped); the end line counts them.
          if (this.unreachableDrops.hit())
            this.o.logger.error(
              { device: id, kind, reason: error.message },
              "database still unreachable; message dropped",
            );
        } else
          this.o.logger.error(
            { device: id, kind, err: (error as Error).stack ?? String(error) },
            "device message failed",
          );
      });
  }

  /**
   * A message that could not be stored because the disk is full is dropped:
   * the device sends its state again (and the broker keeps the retained one),
   * while keeping messages would fill memory instead. One line per outage,
   * not per message: thousands of devices report while the disk is full.
   */
  private droppedForSpace(id: string, kind: string, error: unknown): void {
    if (this.full.hit())
      this.o.logger.error(
        { device: id, kind, database: this.o.storage.description, reason: (error as Error).message },
        "disk full: device messages are dropped until space is freed (logged once per outage)",
      );
  }

  /** After an outage, the first message stored again says how long it lasted and what was lost. */
  private outagesEnded(): void {
    const full = this.full.ended();
    if (full)
      this.o.logger.warn(
        { dropped: full.count, seconds: full.seconds },
        "disk space is back: device messages are stored again",
      );
    const unreachable = this.unreachable.ended();
    const dropped = this.unreachableDrops.ended();
    if (unreachable || dropped)
      this.o.logger.warn(
        {
          kept: unreachable?.count ?? 0,
          dropped: dropped?.count ?? 0,
          seconds: Math.max(unreachable?.seconds ?? 0, dropped?.seconds ?? 0),
        },
        "database reachable again: device messages are stored again",
      );
  }

  /**
   * Runs `handle`, and again while the database cannot be reached, for up to
   * `UNAVAILABLE_RETRY_MS`: a message the broker handed to this instance
   * exists nowhere else (a shared subscription gives it to one instance
   * only), so dropping it on a database restart would lose a device's answer.
   */
  private async whileUnavailable(id: string, kind: string, handle: () => Promise<boolean>): Promise<boolean> {
    const giveUpAt = this.o.clock.now() + (this.o.unavailableRetryMs ?? UNAVAILABLE_RETRY_MS);
    for (let attempt = 0; ; attempt++) {
      try {
        return await handle();
      } catch (error) {
        const unavailable = error instanceof StorageUnavailableError;
        if (!unavailable || this.o.clock.now() >= giveUpAt || this.stopped) {
          throw error;
        }
        const pause = UNAVAILABLE_PAUSE_MS[Math.min(attempt, UNAVAILABLE_PAUSE_MS.length - 1)] as number;
        if (attempt === 0 && this.unreachable.hit())
          this.o.logger.warn(
            { device: id, kind, err: error.message },
            "database unreachable; keeping the message and trying again",
          );
        await this.o.clock.sleep(pause);
      }
    }
  }

  /**
   * Reads the device's retained state from the broker and stores it when it
   * is news; true when it was. An instance that takes over a job calls this
   * before pushing again: the state that answered the push may have gone to
   * an instance that died, or arrived while the database was down, and a
   * shared subscription never replays it. The job runner then sees the
   * device's last word in storage. Does not call the listener (the caller
   * holds the job).
   */
  async refreshState(id: string): Promise<boolean> {
    const message = await this.o.link.readRetained(this.o.topics.device(id, "state"), readState);
    if (!message) return false;
    return (await this.storeState(id, message, this.o.clock.now())) !== null;
  }

  /** Each handler says whether the database took the message. */
  private async onState(id: string, message: Inbound<DeviceState>, receivedAt: number): Promise<boolean> {
    const stored = await this.storeState(id, message, receivedAt);
    if (!stored) return false;
    await this.o.listener.handleState(stored.device, stored.state, receivedAt);
    return true;
  }

  /**
   * Stores a state the contract's reader accepted; null when it is already known, older than the
   * stored one (another instance handled a later one first), or a new id over the limits.
   */
  private async storeState(
    id: string,
    message: Inbound<DeviceState>,
    receivedAt: number,
  ): Promise<{ device: DeviceRecord; state: DeviceState } | null> {
    const retained = message.retained;
    if (message.warnings.length > 0)
      this.o.logger.warn({ device: id, fields: message.warnings }, "state: invalid fields ignored");
    const digest = createHash("sha1").update(message.bytes).digest("hex");
    const existing = await this.o.storage.devices.get(id);
    if (retained && existing?.stateDigest === digest) {
      this.o.logger.debug({ device: id }, "retained state already known");
      return null;
    }
    const state = message.payload;
    const now = this.o.clock.now();
    const nextWakeAt = state.sleep ? now + state.sleep * 1000 : null;
    const record = async () => {
      let device = await this.o.storage.devices.recordState({
        id,
        state,
        at: now,
        receivedAt,
        digest,
        nextWakeAt,
        historyLimit: this.o.historyLimit,
      });
      if (!device) {
        this.o.logger.info(
          { device: id, fw: state.fw, retained },
          "older state ignored: a later one is stored",
        );
        return null;
      }
      // A device sends its state only while it is connected, before its status=online: a live
      // state from a device stored as sleeping (or offline, or in OTA mode) means it is awake.
      // Left as it was, a sleeper that just woke would show as asleep with a new wake time.
      if (!retained && device.status !== "online") {
        device = await this.o.storage.devices.recordStatus({ id, status: "online", at: now, nextWakeAt });
      }
      return device;
    };
    const device = existing ? await record() : await this.newDevices.admit(id, "state", record);
    if (!device) return null;
    this.o.logger.info(
      { device: id, fw: state.fw, ip: state.ip, retained },
      existing ? "state" : "new device",
    );
    return { device, state };
  }

  private async onStatus(id: string, message: Inbound<DeviceStatus>): Promise<boolean> {
    const { payload: status, retained } = message;
    const existing = await this.o.storage.devices.get(id);
    if (retained && existing?.status === status) return false;
    const now = this.o.clock.now();
    const sleep = existing?.state?.sleep ?? 0;
    const nextWakeAt =
      status === "sleeping" && sleep > 0
        ? now + sleep * 1000
        : status === "offline"
          ? null
          : (existing?.nextWakeAt ?? null);
    const record = () => this.o.storage.devices.recordStatus({ id, status, at: now, nextWakeAt });
    const device = existing ? await record() : await this.newDevices.admit(id, "status", record);
    if (!device) return false;
    this.o.logger.info({ device: id, status, retained }, "status");
    await this.o.listener.handleStatus(device, status);
    return true;
  }

  /** An ack the reader accepted (acks are never retained by the contract: readAck refuses those). */
  private async onAck(id: string, message: Inbound<DeviceAck>): Promise<boolean> {
    const ack = message.payload;
    const device = await this.o.storage.devices.get(id);
    if (!device) {
      this.o.logger.warn({ device: id, job: ack.job }, "ack ignored: device never reported its state");
      return false;
    }
    this.o.logger.info({ device: id, ...ack }, "ack");
    await this.o.listener.handleAck(device, ack);
    return true;
  }
}
