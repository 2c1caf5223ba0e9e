import type { Logger } from "pino";
import type { JobProgressMessage } from "../api/api.ts";
import type { BridgeResponse, Topics } from "../api/topics.ts";
import { deviceView } from "../api/views.ts";
import type { DeviceInbox } from "../devices/device-inbox.ts";
import type { MqttLink } from "../mqtt/mqtt-link.ts";
import { quietly, type RawMessage } from "../mqtt/payload-reader.ts";
import { readBridgeResponse, readJobProgress, readState, readStatus } from "../mqtt/topic-readers.ts";
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
      t.bridgeResponses("firmware"),
    ];
  }

  async start(): Promise<void> {
    const { link, topics: t } = this.o;
    const changed = (message: RawMessage) => {
      const id = t.parseDevice(message.topic)?.id;
      if (id !== undefined) this.deviceChanged(id);
    };
    // The inbox logs bad device messages; here they are only skipped.
    await link.subscribe(t.allDevices("state"), quietly(readState), changed);
    await link.subscribe(t.allDevices("status"), quietly(readStatus), changed);
    // Retained progress and replies replayed at subscription are history, not news.
    await link.subscribe(t.allJobProgress, readJobProgress, (m) => {
      if (!m.retained) this.onJob(m.payload);
    });
    await link.subscribe(t.bridgeResponses("firmware"), readBridgeResponse, (m) => {
      if (!m.retained) this.onFirmwareReply(m.topic, m.payload);
    });
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

  private onJob(message: JobProgressMessage): void {
    this.o.stream.publish("job", message);
    this.o.onJob?.(message);
    // The device's active job (shown in its row) may have changed with it.
    this.deviceChanged(message.device);
  }

  private onFirmwareReply(topic: string, reply: BridgeResponse): void {
    if (reply.status !== "ok") return;
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
