import type { IPublishPacket } from "mqtt";
import type { Logger } from "pino";
import { UsageError } from "../../errors.ts";
import type { JobProgressMessage } from "../bridge/api.ts";
import type { BridgeHandlers } from "../bridge/bridge.ts";
import { jobPercent } from "../bridge/views.ts";
import type { DeviceInbox } from "../devices/device-inbox.ts";
import { updateRefusalText, versionVerdict } from "../jobs/downgrade-policy.ts";
import { KeyedQueue } from "../keyed-queue.ts";
import { deviceIdProblem, RESERVED_DEVICE_IDS } from "../mqtt/contract.ts";
import type { MqttLink } from "../mqtt/mqtt-link.ts";
import type { Topics } from "../mqtt/topics.ts";
import type { DeviceRecord, FirmwareRecord, Storage } from "../storage/storage.ts";

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

/**
 * A state message: only keys of Home Assistant's JSON update schema
 * (`MQTT_JSON_UPDATE_SCHEMA`: strings never null, `release_url` an http(s)
 * URL, `update_percentage` 0-100 or null), since one bad key makes it drop
 * the whole message. Optional keys are left out, never sent as null.
 */
export interface HaUpdateState {
  installed_version: string;
  latest_version: string;
  title: string;
  release_summary?: string;
  release_url?: string;
  /**
   * True from the moment a job exists until it ends, also while it waits for
   * a sleeping device to wake (Home Assistant has no "scheduled" state; the
   * entity shows an install in progress without a percentage, and its
   * install button stays off so the job is not asked for twice).
   */
  in_progress: boolean;
  /** 0-100 once the device is in OTA mode (pushing, verifying); null while the job waits and when there is none. */
  update_percentage: number | null;
}

export interface HomeAssistantOptions {
  /** Discovery prefix (default homeassistant). */
  prefix?: string;
  /**
   * The dashboard's address as people on the network open it
   * (http://mpota.local:8080/). With it the state carries `release_url`:
   * the firmware's page (with its release notes) or the device's page.
   * Without it `release_url` is left out: the server cannot tell which of
   * its addresses Home Assistant's users reach.
   */
  dashboardUrl?: string;
}

export interface HomeAssistantDeps {
  link: MqttLink;
  topics: Topics;
  storage: Storage;
  inbox: DeviceInbox;
  handlers: BridgeHandlers;
  /** What the devices are, in words (the release kind's device model, "ESP8266 with yaota8266"). */
  deviceModel: string;
  version: string;
  logger: Logger;
}

const ACTIVE_PUSH = new Set(["ready", "pushing", "verifying", "recovering"]);

/** The dashboard URL as given, with one trailing slash; a UsageError when it is not an http(s) URL. */
export function dashboardBase(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    parsed = new URL("invalid:");
  }
  if ((parsed.protocol !== "http:" && parsed.protocol !== "https:") || parsed.host === "") {
    throw new UsageError(
      `The dashboard URL for Home Assistant's release links must be an http:// or https:// address with a host (such as http://mpota.local:8080/), not "${url.slice(0, 100)}".`,
    );
  }
  parsed.hash = "";
  parsed.search = "";
  return parsed.href.endsWith("/") ? parsed.href : `${parsed.href}/`;
}

/**
 * Home Assistant MQTT discovery: one `update` entity per device. Its state
 * says which firmware the device runs and the newest of that line in the
 * store; pressing install in Home Assistant publishes `payload_install` on
 * the command topic, which starts an update job as `mpota update` does.
 * Home Assistant cannot allow a downgrade: when the newest firmware of the
 * line is older than the one the device runs, install is refused (logged)
 * and the entity's release summary gives the refusal.
 * Availability follows the server (`<base>/bridge/state`), not the device,
 * so a sleeping device stays available. Clearing a device's retained state
 * (decommissioning it) removes its entity.
 *
 * A device's messages are published one after another (a slow read can
 * never publish an older state over a newer one), a config or state equal
 * to the last one sent is not sent again (during a push the state changes
 * with the percentage only), and everything is sent again when Home
 * Assistant announces itself (`<prefix>/status` online) or the broker
 * connection comes back.
 */
export class HomeAssistantFeature {
  readonly prefix: string;
  readonly dashboardUrl: string | undefined;
  private readonly filters: string[];
  private stopped = false;
  private readonly queue = new KeyedQueue();
  /** Devices with a refresh queued that has not started yet (one is enough: it reads the newest records). */
  private readonly queued = new Set<string>();
  /** The config and state last published per device. */
  private readonly sent = new Map<string, { config: string; state: string }>();
  /** Devices whose entity was removed; published again only when they report a state again. */
  private readonly removed = new Set<string>();
  private readonly onReconnect = () => {
    if (!this.stopped) void this.publishAll().catch((e: unknown) => this.warn(e));
  };

  constructor(
    private readonly d: HomeAssistantDeps,
    options: HomeAssistantOptions = {},
  ) {
    this.prefix = options.prefix ?? DEFAULT_HA_PREFIX;
    this.dashboardUrl = options.dashboardUrl === undefined ? undefined : dashboardBase(options.dashboardUrl);
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
    this.d.link.client.on("connect", this.onReconnect);
    await this.publishAll();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.d.link.client.off("connect", this.onReconnect);
    for (const filter of this.filters) await this.d.link.unsubscribe(filter).catch(() => undefined);
    await this.queue.idle();
  }

  /**
   * Publishes every known device's config and state, also those equal to
   * what was sent before (at start, when Home Assistant comes online, after
   * a reconnect): Home Assistant may have lost them.
   */
  async publishAll(): Promise<void> {
    const devices = await this.d.storage.devices.list();
    await Promise.all(
      devices.map((device) => this.queue.run(device.id, () => this.publishDevice(device.id, true))),
    );
  }

  /** Removes a device's entity (empty retained config and state). */
  async removeDevice(id: string): Promise<void> {
    await this.queue.run(id, async () => {
      this.removed.add(id);
      this.sent.delete(id);
      await this.d.link.publish(this.configTopic(id), "", { retain: true });
      await this.d.link.publish(this.stateTopic(id), "", { retain: true });
      this.d.logger.info({ device: id }, "Home Assistant entity removed");
    });
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
        model: this.d.deviceModel,
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
    const verdict = running && latest ? versionVerdict(fw, running, latest) : undefined;
    // The newest firmware of the line in the store is older than the one the device runs: installing
    // it is refused (Home Assistant cannot allow a downgrade), and the entity says so in the same words.
    const notes =
      verdict?.kind === "downgrade" && latest
        ? updateRefusalText(device.id, verdict.from, latest)
        : (latest?.notes ?? running?.notes);
    if (notes) state.release_summary = summary(notes);
    if (this.dashboardUrl) {
      const page = latest ? `firmware/${latest.id}` : `device/${encodeURIComponent(device.id)}`;
      state.release_url = `${this.dashboardUrl}#/${page}`;
    }
    return state;
  }

  private async latestOf(running: FirmwareRecord): Promise<FirmwareRecord | undefined> {
    return (await this.d.storage.firmware.findByName(running.name))[0];
  }

  /** Publishes a device's config and state (only what changed, unless `all`); run in the device's queue. */
  private async publishDevice(id: string, all = false): Promise<void> {
    if (this.stopped || this.removed.has(id)) return;
    const device = await this.d.storage.devices.get(id);
    if (!device?.state) return;
    const value = await this.state(device);
    if (!value) return;
    const config = JSON.stringify(this.config(device));
    const state = JSON.stringify(value);
    const last = all ? undefined : this.sent.get(id);
    this.sent.set(id, { config, state });
    if (last?.config !== config) await this.d.link.publish(this.configTopic(id), config, { retain: true });
    if (last?.state !== state) await this.d.link.publish(this.stateTopic(id), state, { retain: true });
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
      if (typeof message.device === "string") this.refresh(message.device);
      return;
    }
    const parsed = t.parseDevice(topic);
    if (!parsed || RESERVED_DEVICE_IDS.has(parsed.id) || deviceIdProblem(parsed.id)) return;
    if (parsed.kind === "state" && payload.length === 0 && !packet.retain) {
      // A cleared retained state: the device was taken out of service.
      void this.removeDevice(parsed.id).catch((e: unknown) => this.warn(e));
      return;
    }
    if (payload.length === 0) return;
    // A device that reports a state again is back in service.
    if (parsed.kind === "state") this.removed.delete(parsed.id);
    this.refresh(parsed.id);
  }

  /** Publishes a device's entity soon, after the messages before it are stored; at most one waits per device. */
  private refresh(id: string): void {
    if (this.stopped || this.queued.has(id)) return;
    this.queued.add(id);
    this.queue
      .run(id, async () => {
        this.queued.delete(id);
        await this.d.inbox.idle();
        await this.publishDevice(id);
      })
      .catch((error: unknown) => this.warn(error));
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
      // Among the refusals, a downgrade: Home Assistant has no way to say allowDowngrade (its entity shows why).
      this.d.logger.warn({ device: id, err: (error as Error).message }, "Home Assistant install refused");
    }
    this.refresh(id);
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
