import type { Logger } from "pino";
import type { JobProgressMessage, JobView } from "../api.ts";
import type { BridgeHandlers } from "../bridge.ts";
import type { FirmwareLibrary } from "../firmware-library.ts";
import { RequestError } from "../request-error.ts";
import type { FirmwareRecord, Storage } from "../storage/storage.ts";

export const MAX_LINE_CONCURRENCY = 20;
export const DEFAULT_LINE_CONCURRENCY = 2;

export interface LineUpdateResult {
  firmware: { id: string; name: string; version: string };
  concurrency: number;
  /** Jobs created now. */
  started: JobView[];
  /** Devices whose jobs start as earlier ones end. */
  queued: string[];
  /** Devices of the line left out, with why. */
  skipped: Array<{ device: string; reason: string }>;
}

const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);

/**
 * "Update every device on firmware line X": every device whose running
 * firmware is in the store under the target's name gets a job, at most
 * `concurrency` at a time; the next starts when one ends. Jobs are created
 * with the same `update` handler as one device's update. The waiting list
 * is held by this server instance only: after a restart, start the rest
 * again (devices already updated are skipped).
 */
export class LineUpdates {
  private readonly waiting = new Map<string, { firmware: string; devices: string[]; active: Set<string> }>();

  constructor(
    private readonly o: {
      storage: Storage;
      library: FirmwareLibrary;
      handlers: BridgeHandlers;
      logger: Logger;
    },
  ) {}

  async start(firmwareRef: string, concurrency = DEFAULT_LINE_CONCURRENCY): Promise<LineUpdateResult> {
    if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > MAX_LINE_CONCURRENCY) {
      throw new RequestError(`"concurrency" must be a whole number from 1 to ${MAX_LINE_CONCURRENCY}.`);
    }
    const target = await this.o.library.resolve(firmwareRef);
    const firmware = new Map(
      (await this.o.storage.firmware.list()).map((f) => [f.id, f] as [string, FirmwareRecord]),
    );
    const active = new Set((await this.o.storage.jobs.list({ active: true })).map((j) => j.deviceId));
    const skipped: LineUpdateResult["skipped"] = [];
    const candidates: string[] = [];
    for (const device of await this.o.storage.devices.list()) {
      const running = device.state ? firmware.get(device.state.fw) : undefined;
      if (!running || running.name !== target.name) continue;
      if (running.id === target.id) continue;
      if (active.has(device.id) || this.queuedAnywhere(device.id)) {
        skipped.push({ device: device.id, reason: "it already has an update job" });
        continue;
      }
      candidates.push(device.id);
    }
    if (candidates.length === 0 && skipped.length === 0) {
      throw new RequestError(
        `No device runs an older or other version of the line "${target.name}": nothing to update to ${target.version}.`,
      );
    }
    const started: JobView[] = [];
    const group = { firmware: target.id, devices: [] as string[], active: new Set<string>() };
    for (const id of candidates) {
      if (started.length >= concurrency) {
        group.devices.push(id);
        continue;
      }
      try {
        const job = await this.o.handlers.update({ device: id, firmware: target.id });
        started.push(job);
        group.active.add(job.id);
      } catch (error) {
        skipped.push({ device: id, reason: (error as Error).message });
      }
    }
    if (group.devices.length > 0) this.waiting.set(`${target.id}:${Date.now()}:${Math.random()}`, group);
    return {
      firmware: { id: target.id, name: target.name, version: target.version },
      concurrency,
      started,
      queued: [...group.devices],
      skipped,
    };
  }

  /** Called for every job progress message: starts the next device of a group when one of its jobs ended. */
  onJob(message: JobProgressMessage): void {
    if (!TERMINAL.has(message.state)) return;
    for (const [key, group] of this.waiting) {
      if (!group.active.delete(message.job)) continue;
      void this.next(key, group);
    }
  }

  private queuedAnywhere(device: string): boolean {
    for (const group of this.waiting.values()) if (group.devices.includes(device)) return true;
    return false;
  }

  private async next(key: string, group: { firmware: string; devices: string[]; active: Set<string> }) {
    while (group.devices.length > 0) {
      const id = group.devices.shift() as string;
      try {
        const job = await this.o.handlers.update({ device: id, firmware: group.firmware });
        group.active.add(job.id);
        break;
      } catch (error) {
        this.o.logger.warn({ device: id, err: (error as Error).message }, "line update: job not created");
      }
    }
    if (group.devices.length === 0 && group.active.size === 0) this.waiting.delete(key);
    else if (group.devices.length === 0) this.waiting.delete(key);
  }

  stop(): void {
    this.waiting.clear();
  }
}
