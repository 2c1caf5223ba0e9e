import type { IPublishPacket } from "mqtt";
import type { Logger } from "pino";
import type { JobProgressMessage } from "../bridge/api.ts";
import { deviceView } from "../bridge/views.ts";
import type { DeviceInbox } from "../devices/device-inbox.ts";
import type { MqttLink } from "../mqtt/mqtt-link.ts";
import type { Topics } from "../mqtt/topics.ts";
import type { FirmwareRecord, Storage } from "../storage/storage.ts";
import type { EventStream } from "./event-stream.ts";

export interface FleetEventsOptions {
  link: MqttLink;
  topics: Topics;
  storage: Storage;
  inbox: DeviceInbox;
  stream: EventStream;
  logger: Logger;
  /** Hears every live job progress message (line updates start their next device). */
  onJob?: (message: JobProgressMessage) => void;
  /** Device changes within this window are sent once (default 50 ms). */
  coalesceMs?: number;
}

/**
 * Turns what happens on the broker into stream events: a device's state or
 * status (sent as the same device view the API returns, read from storage
 * once the inbox stored it), job progress (the server's retained progress
 * message, as `mpota/bridge/jobs/<job>` carries it), firmware added or
 * removed over the bridge. It listens on MQTT rather than inside the
 * features, so changes made by another server instance reach this page too.
 */
export class FleetEvents {
  private readonly pending = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private readonly filters: string[];
  private stopped = false;

  constructor(private readonly o: FleetEventsOptions) {
    const t = o.topics;
    this.filters = [
      t.allDevices("state"),
      t.allDevices("status"),
      t.allJobProgress,
      `${t.base}/bridge/response/firmware/+`,
    ];
  }

  async start(): Promise<void> {
    for (const filter of this.filters)
      await this.o.link.subscribe(filter, (topic, payload, packet) => this.onMessage(topic, payload, packet));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    for (const filter of this.filters) await this.o.link.unsubscribe(filter).catch(() => undefined);
  }

  /** Sends a device's current view soon (several changes within the window, once). */
  deviceChanged(id: string): void {
    if (this.stopped) return;
    this.pending.add(id);
    if (this.timer === undefined) this.timer = setTimeout(() => void this.flush(), this.o.coalesceMs ?? 50);
  }

  private onMessage(topic: string, payload: Buffer, packet: IPublishPacket): void {
    const t = this.o.topics;
    if (topic.startsWith(`${t.base}/bridge/`)) {
      // Retained progress replayed at subscription is history, not news.
      if (packet.retain || payload.length === 0) return;
      if (topic.startsWith(`${t.base}/bridge/jobs/`)) this.onJob(payload);
      else if (topic.startsWith(`${t.base}/bridge/response/firmware/`)) this.onFirmwareReply(topic, payload);
      return;
    }
    const parsed = t.parseDevice(topic);
    if (parsed && parsed.id !== "bridge" && payload.length > 0) this.deviceChanged(parsed.id);
  }

  private onJob(payload: Buffer): void {
    let message: JobProgressMessage;
    try {
      message = JSON.parse(payload.toString("utf8")) as JobProgressMessage;
    } catch {
      return;
    }
    if (typeof message?.job !== "string" || typeof message.device !== "string") return;
    this.o.stream.publish("job", message);
    this.o.onJob?.(message);
    // The device's active job (shown in its row) may have changed with it.
    this.deviceChanged(message.device);
  }

  private onFirmwareReply(topic: string, payload: Buffer): void {
    try {
      const reply = JSON.parse(payload.toString("utf8")) as { status?: string };
      if (reply.status !== "ok") return;
    } catch {
      return;
    }
    this.o.stream.publish("firmware", { action: topic.slice(topic.lastIndexOf("/") + 1) });
  }

  private async flush(): Promise<void> {
    this.timer = undefined;
    const ids = [...this.pending];
    this.pending.clear();
    try {
      await this.o.inbox.idle();
      const storage = this.o.storage;
      const firmware = new Map(
        (await storage.firmware.list()).map((f) => [f.id, f] as [string, FirmwareRecord]),
      );
      for (const id of ids) {
        if (this.stopped) return;
        const device = await storage.devices.get(id);
        if (!device) continue;
        const active = await storage.jobs.activeForDevice(id);
        this.o.stream.publish("device", deviceView(device, firmware, active));
      }
    } catch (error) {
      this.o.logger.warn({ err: (error as Error).message }, "device event not sent");
    }
  }
}
