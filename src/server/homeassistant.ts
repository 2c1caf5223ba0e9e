import type { IPublishPacket } from "mqtt";
import type { Logger } from "pino";
import type { JobProgressMessage } from "./api.ts";
import type { BridgeHandlers } from "./bridge.ts";
import { deviceIdProblem, RESERVED_DEVICE_IDS } from "./contract.ts";
import type { DeviceInbox } from "./device-inbox.ts";
import type { MqttLink } from "./mqtt-link.ts";
import type { DeviceRecord, FirmwareRecord, Storage } from "./storage/storage.ts";
import type { Topics } from "./topics.ts";
import { jobPercent } from "./views.ts";

export const DEFAULT_HA_PREFIX = "homeassistant";
export const HA_PAYLOAD_INSTALL = "install";
/** Home Assistant shows at most this much of `release_summary`. */
export const HA_SUMMARY_MAX = 255;

/** The discovery config of one device's `update` entity (Home Assistant's MQTT update schema). */
export interface HaUpdateConfig {
  name: string;
  unique_id: string;
  device_class: "firmware";
  entity_category: "config";
  state_topic: string;
  command_topic: string;
  payload_install: string;
  availability: Array<{
    topic: string;
    value_template: string;
    payload_available: string;
    payload_not_available: string;
  }>;
  device: { identifiers: string[]; name: string; manufacturer: string; model: string; sw_version?: string };
  origin: { name: string; sw_version: string };
}

/** A state message: only keys Home Assistant's update schema knows, never null in a string key. */
export interface HaUpdateState {
  installed_version: string;
  latest_version: string;
  title: string;
  release_summary?: string;
  in_progress: boolean;
  update_percentage: number | null;
}

export interface HomeAssistantOptions {
  /** Discovery prefix (default homeassistant). */
  prefix?: string;
}

export interface HomeAssistantDeps {
  link: MqttLink;
  topics: Topics;
  storage: Storage;
  inbox: DeviceInbox;
  handlers: BridgeHandlers;
  version: string;
  logger: Logger;
}

const ACTIVE_PUSH = new Set(["ready", "pushing", "verifying", "recovering"]);

/**
 * Home Assistant MQTT discovery: one `update` entity per device. Its state
 * says which firmware the device runs and the newest of that line in the
 * store; pressing install in Home Assistant publishes `payload_install` on
 * the command topic, which starts an update job as `mpota update` does.
 * Availability follows the server (`<base>/bridge/state`), not the device,
 * so a sleeping device stays available. Clearing a device's retained state
 * (decommissioning it) removes its entity.
 */
export class HomeAssistantFeature {
  readonly prefix: string;
  private readonly filters: string[];
  private stopped = false;

  constructor(
    private readonly d: HomeAssistantDeps,
    options: HomeAssistantOptions = {},
  ) {
    this.prefix = options.prefix ?? DEFAULT_HA_PREFIX;
    const t = d.topics;
    this.filters = [
      t.allDevices("state"),
      t.allDevices("status"),
      t.allJobProgress,
      `${t.base}/bridge/homeassistant/+/install`,
      `${this.prefix}/status`,
    ];
  }

  configTopic(id: string): string {
    return `${this.prefix}/update/${id}/config`;
  }

  stateTopic(id: string): string {
    return `${this.d.topics.base}/bridge/homeassistant/${id}/state`;
  }

  commandTopic(id: string): string {
    return `${this.d.topics.base}/bridge/homeassistant/${id}/install`;
  }

  async start(): Promise<void> {
    for (const filter of this.filters)
      await this.d.link.subscribe(filter, (topic, payload, packet) => this.onMessage(topic, payload, packet));
    await this.publishAll();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const filter of this.filters) await this.d.link.unsubscribe(filter).catch(() => undefined);
  }

  /** Publishes every known device's config and state (at start, and when Home Assistant comes online). */
  async publishAll(): Promise<void> {
    for (const device of await this.d.storage.devices.list()) await this.publishDevice(device.id);
  }

  /** Removes a device's entity (empty retained config and state). */
  async removeDevice(id: string): Promise<void> {
    await this.d.link.publish(this.configTopic(id), "", { retain: true });
    await this.d.link.publish(this.stateTopic(id), "", { retain: true });
    this.d.logger.info({ device: id }, "Home Assistant entity removed");
  }

  config(device: DeviceRecord): HaUpdateConfig {
    const base = this.d.topics.base;
    const key = `${base.replace(/\//g, "_")}_${device.id}`;
    const ver = device.state?.ver;
    return {
      name: "Firmware",
      unique_id: `mpota_${key}_firmware`,
      device_class: "firmware",
      entity_category: "config",
      state_topic: this.stateTopic(device.id),
      command_topic: this.commandTopic(device.id),
      payload_install: HA_PAYLOAD_INSTALL,
      availability: [
        {
          topic: this.d.topics.bridgeState,
          value_template: "{{ value_json.state }}",
          payload_available: "online",
          payload_not_available: "offline",
        },
      ],
      device: {
        identifiers: [`mpota_${key}`],
        name: device.id,
        manufacturer: "mpota",
        model: "ESP8266 with yaota8266",
        ...(ver ? { sw_version: ver } : {}),
      },
      origin: { name: "mpota", sw_version: this.d.version },
    };
  }

  /** The entity state of a device, from storage: the same records the API shows. */
  async state(device: DeviceRecord): Promise<HaUpdateState | undefined> {
    const fw = device.state?.fw;
    if (!fw) return undefined;
    const running = await this.d.storage.firmware.get(fw);
    const latest = running ? await this.latestOf(running) : undefined;
    const job = await this.d.storage.jobs.activeForDevice(device.id);
    const installed = running ? running.version : `unknown ${fw.slice(0, 8)}`;
    const state: HaUpdateState = {
      installed_version: installed,
      latest_version: latest ? latest.version : installed,
      title: running ? running.name : "Firmware unknown to mpota",
      in_progress: job !== undefined,
      update_percentage: job && ACTIVE_PUSH.has(job.phase) ? jobPercent(job) : null,
    };
    const notes = latest?.notes ?? running?.notes;
    if (notes) state.release_summary = summary(notes);
    return state;
  }

  private async latestOf(running: FirmwareRecord): Promise<FirmwareRecord | undefined> {
    return (await this.d.storage.firmware.findByName(running.name))[0];
  }

  private async publishDevice(id: string): Promise<void> {
    if (this.stopped) return;
    const device = await this.d.storage.devices.get(id);
    if (!device?.state) return;
    const state = await this.state(device);
    if (!state) return;
    await this.d.link.publishJson(this.configTopic(id), this.config(device), { retain: true });
    await this.d.link.publishJson(this.stateTopic(id), state, { retain: true });
  }

  private onMessage(topic: string, payload: Buffer, packet: IPublishPacket): void {
    const t = this.d.topics;
    if (topic === `${this.prefix}/status`) {
      if (payload.toString() === "online") void this.publishAll().catch((e: unknown) => this.warn(e));
      return;
    }
    if (topic.startsWith(`${t.base}/bridge/homeassistant/`)) {
      const id = topic.split("/").at(-2) as string;
      if (!packet.retain) void this.install(id, payload.toString("utf8")).catch((e: unknown) => this.warn(e));
      return;
    }
    if (topic.startsWith(`${t.base}/bridge/jobs/`)) {
      if (packet.retain || payload.length === 0) return;
      let message: JobProgressMessage;
      try {
        message = JSON.parse(payload.toString("utf8")) as JobProgressMessage;
      } catch {
        return;
      }
      if (typeof message.device === "string") void this.refresh(message.device);
      return;
    }
    const parsed = t.parseDevice(topic);
    if (!parsed || RESERVED_DEVICE_IDS.has(parsed.id) || deviceIdProblem(parsed.id)) return;
    if (parsed.kind === "state" && payload.length === 0 && !packet.retain) {
      // A cleared retained state: the device was taken out of service.
      void this.removeDevice(parsed.id).catch((e: unknown) => this.warn(e));
      return;
    }
    if (payload.length > 0) void this.refresh(parsed.id);
  }

  private async refresh(id: string): Promise<void> {
    try {
      await this.d.inbox.idle();
      await this.publishDevice(id);
    } catch (error) {
      this.warn(error);
    }
  }

  /** Home Assistant pressed install: update the device to the newest firmware of its line. */
  private async install(id: string, payload: string): Promise<void> {
    if (payload !== HA_PAYLOAD_INSTALL) {
      this.d.logger.warn(
        { device: id, payload: payload.slice(0, 40) },
        "Home Assistant command ignored: not the install payload",
      );
      return;
    }
    const device = await this.d.storage.devices.get(id);
    const running = device?.state ? await this.d.storage.firmware.get(device.state.fw) : undefined;
    const latest = running ? await this.latestOf(running) : undefined;
    if (!device || !running || !latest || latest.id === running.id) {
      this.d.logger.warn(
        { device: id },
        running
          ? "Home Assistant install ignored: the device runs the newest firmware of its line"
          : "Home Assistant install ignored: the device runs firmware the store does not know",
      );
      return;
    }
    try {
      const job = await this.d.handlers.update({ device: id, firmware: latest.id });
      this.d.logger.info(
        { device: id, job: job.id, firmware: latest.id },
        "update started from Home Assistant",
      );
    } catch (error) {
      this.d.logger.warn({ device: id, err: (error as Error).message }, "Home Assistant install refused");
    }
    await this.publishDevice(id);
  }

  private warn(error: unknown): void {
    this.d.logger.warn({ err: (error as Error)?.message ?? String(error) }, "Home Assistant update failed");
  }
}

/** At most 255 characters, cut at a word with an ellipsis. */
export function summary(notes: string): string {
  const text = notes.replace(/\s+/g, " ").trim();
  if (text.length <= HA_SUMMARY_MAX) return text;
  const cut = text.slice(0, HA_SUMMARY_MAX - 1);
  const space = cut.lastIndexOf(" ");
  return `${space > 200 ? cut.slice(0, space) : cut}…`;
}
