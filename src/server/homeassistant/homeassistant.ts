import type { Logger } from "pino";
import type { DeviceState } from "../../protocol/mqtt-contract.ts";
import type { HaUpdateConfig, HaUpdateState } from "../api/ha-entity.ts";
import { type Json, type Topic, type Topics, toJson } from "../api/topics.ts";
import { jobPercent } from "../api/views.ts";
import { KeyedQueue } from "../base/keyed-queue.ts";
import type { BridgeHandlers } from "../bridge/bridge.ts";
import type { DeviceInbox } from "../devices/device-inbox.ts";
import type { MqttLink } from "../mqtt/mqtt-link.ts";
import { type Inbound, quietly } from "../mqtt/payload-reader.ts";
import { readJobProgress, readStateOrCleared, readStatus, readText } from "../mqtt/topic-readers.ts";
import type { AppReleases } from "../releases/app-releases.ts";
import { updateRefusalText, versionVerdict } from "../releases/downgrade-policy.ts";
import type { ReleaseKinds } from "../releases/release-kind.ts";
import { compareVersions } from "../releases/version-order.ts";
import type { DeviceRecord, FirmwareRecord, JobRecord, Storage } from "../storage/storage.ts";
import { AppEntity, reportedApp } from "./app-entity.ts";
import { dashboardBase } from "./dashboard-base.ts";

export { dashboardBase };

export const DEFAULT_HA_PREFIX = "homeassistant";
export const HA_PAYLOAD_INSTALL = "install";
/** Home Assistant shows at most this much of `release_summary`. */
export const HA_SUMMARY_MAX = 255;

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
  /**
   * The kinds of release: a device's model is the device model of the kind
   * it runs ("ESP8266 with yaota8266"), and it is offered only releases of
   * the target it runs (an ESP8266 never an ESP32 image).
   */
  kinds: ReleaseKinds;
  version: string;
  logger: Logger;
  /** App releases: with them a device that reports an app gets a second entity for it (app-entity.ts). */
  apps?: AppReleases;
}

type Sent = { config: Json<HaUpdateConfig>; state: Json<HaUpdateState> };

const ACTIVE_PUSH = new Set(["ready", "pushing", "verifying", "recovering"]);
/** Jobs whose live percentage is kept at most (one whose end was missed cannot keep the map growing). */
const MAX_LIVE_JOBS = 10_000;

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
  private readonly sent = new Map<string, Sent>();
  /** The app entity's config and state last published per device. */
  private readonly sentApp = new Map<string, Sent>();
  /** Devices without an app whose app entity this process has cleared (once: it may be retained from before). */
  private readonly appCleared = new Set<string>();
  private readonly app: AppEntity | undefined;
  /** The last percentage of each job pushing or fetching now, from its progress topic. */
  private readonly live = new Map<string, number>();
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
      t.haInstall("+"),
      t.haAppInstall("+"),
      t.haStatus(this.prefix),
    ];
    this.app = d.apps
      ? new AppEntity({ storage: d.storage, topics: t, kinds: d.kinds, apps: d.apps })
      : undefined;
  }

  configTopic(id: string): Topic<HaUpdateConfig | ""> {
    return this.d.topics.haConfig(this.prefix, id);
  }

  stateTopic(id: string): Topic<HaUpdateState | ""> {
    return this.d.topics.haState(id);
  }

  commandTopic(id: string): Topic<string> {
    return this.d.topics.haInstall(id);
  }

  async start(): Promise<void> {
    const { link, topics: t } = this.d;
    const warn = (e: unknown) => this.warn(e);
    // The inbox logs bad device messages; here they are only skipped.
    await link.subscribe(t.allDevices("state"), quietly(readStateOrCleared), (m) => this.onState(m));
    await link.subscribe(t.allDevices("status"), quietly(readStatus), (m) => this.refreshFrom(m.topic));
    await link.subscribe(t.allJobProgress, readJobProgress, (m) => {
      if (m.retained) return;
      // The percentage of a push or fetch lives on this topic only (the job's row has it at the end).
      if (this.live.size >= MAX_LIVE_JOBS) this.live.clear();
      if (ACTIVE_PUSH.has(m.payload.state)) this.live.set(m.payload.job, m.payload.percent);
      else this.live.delete(m.payload.job);
      this.refresh(m.payload.device);
    });
    await link.subscribe(t.haInstall("+"), readText, (m) => {
      const id = m.topic.split("/").at(-2) as string;
      if (!m.retained) void this.install(id, m.payload).catch(warn);
    });
    await link.subscribe(t.haAppInstall("+"), readText, (m) => {
      const id = m.topic.split("/").at(-3) as string;
      if (!m.retained) void this.installApp(id, m.payload).catch(warn);
    });
    await link.subscribe(t.haStatus(this.prefix), readText, (m) => {
      if (m.payload === "online") void this.publishAll().catch(warn);
    });
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
      // The app entity first: whoever sees the firmware entity go has seen both go.
      if (this.app && (this.sentApp.has(id) || !this.appCleared.has(id))) await this.clearApp(id);
      await this.d.link.publish(this.configTopic(id), "", { retain: true });
      await this.d.link.publish(this.stateTopic(id), "", { retain: true });
      this.d.logger.info({ device: id }, "Home Assistant entity removed");
    });
  }

  config(device: DeviceRecord, running: FirmwareRecord | undefined): HaUpdateConfig {
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
        model: this.modelOf(device, running),
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
    const active = await this.d.storage.jobs.activeForDevice(device.id);
    // An app job is the app entity's to show.
    const job = active && this.app && (await this.app.isAppJob(active)) ? undefined : active;
    const installed = running ? running.version : `unknown ${fw.slice(0, 8)}`;
    const state: HaUpdateState = {
      installed_version: installed,
      latest_version: latest ? latest.version : installed,
      title: running ? running.name : "Firmware unknown to mpota",
      in_progress: job !== undefined,
      update_percentage: job && ACTIVE_PUSH.has(job.phase) ? this.percentOf(job) : null,
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

  /** What the device is: the kind of the release it runs, else of the chip it reports, else the default kind. */
  private modelOf(device: DeviceRecord, running: FirmwareRecord | undefined): string {
    const { kinds } = this.d;
    const kind = running ? kinds.of(running) : (kinds.forChip(device.state?.chip) ?? kinds.default);
    return kind.deviceModel;
  }

  /** The newest release of the line the device runs that is built for the same hardware (chip). */
  private async latestOf(running: FirmwareRecord): Promise<FirmwareRecord | undefined> {
    const { kinds } = this.d;
    const target = kinds.targetOf(running);
    return (await this.d.storage.firmware.findByName(running.name)).find((r) => kinds.targetOf(r) === target);
  }

  /** Publishes a device's config and state (only what changed, unless `all`); run in the device's queue. */
  private async publishDevice(id: string, all = false): Promise<void> {
    if (this.stopped || this.removed.has(id)) return;
    const device = await this.d.storage.devices.get(id);
    if (!device?.state) return;
    const running = await this.d.storage.firmware.get(device.state.fw);
    const firmwareConfig = this.config(device, running);
    // The app entity first: whoever has seen the firmware entity's messages has seen the app's (a removal too).
    if (this.app) await this.publishApp(this.app, device, firmwareConfig, all);
    const value = await this.state(device);
    if (value) {
      const config = toJson(firmwareConfig);
      const state = toJson(value);
      const last = all ? undefined : this.sent.get(id);
      this.sent.set(id, { config, state });
      if (last?.config !== config) await this.d.link.publish(this.configTopic(id), config, { retain: true });
      if (last?.state !== state) await this.d.link.publish(this.stateTopic(id), state, { retain: true });
    }
  }

  /** The app entity of a device: published while it reports an app, removed when it stops. */
  private async publishApp(
    app: AppEntity,
    device: DeviceRecord,
    firmwareConfig: HaUpdateConfig,
    all: boolean,
  ): Promise<void> {
    const id = device.id;
    const job = await this.d.storage.jobs.activeForDevice(id);
    const value = await app.state(device, job, this.dashboardUrl, ACTIVE_PUSH, (j) => this.percentOf(j));
    if (!value) {
      if (this.sentApp.has(id) || !this.appCleared.has(id)) await this.clearApp(id);
      return;
    }
    this.appCleared.delete(id);
    if (value.release_summary) value.release_summary = summary(value.release_summary);
    const key = firmwareConfig.unique_id.replace(/^mpota_/, "").replace(/_firmware$/, "");
    const config = toJson(app.config(firmwareConfig, id, key));
    const state = toJson(value);
    const last = all ? undefined : this.sentApp.get(id);
    this.sentApp.set(id, { config, state });
    const t = this.d.topics;
    if (last?.config !== config)
      await this.d.link.publish(t.haAppConfig(this.prefix, id), config, { retain: true });
    if (last?.state !== state) await this.d.link.publish(t.haAppState(id), state, { retain: true });
  }

  /** A job's percentage: the live one of its progress topic while it runs, else its row's. */
  private percentOf(job: JobRecord): number {
    return this.live.get(job.id) ?? jobPercent(job);
  }

  /** Removes a device's app entity (empty retained config and state). */
  private async clearApp(id: string): Promise<void> {
    const had = this.sentApp.delete(id);
    this.appCleared.add(id);
    await this.d.link.publish(this.d.topics.haAppConfig(this.prefix, id), "", { retain: true });
    await this.d.link.publish(this.d.topics.haAppState(id), "", { retain: true });
    if (had)
      this.d.logger.info({ device: id }, "Home Assistant app entity removed: the device reports no app");
  }

  private onState(message: Inbound<DeviceState | "">): void {
    const id = this.d.topics.parseDevice(message.topic)?.id;
    if (id === undefined) return;
    if (message.payload === "") {
      // A cleared retained state: the device was taken out of service.
      if (!message.retained) void this.removeDevice(id).catch((e: unknown) => this.warn(e));
      return;
    }
    // A device that reports a state again is back in service.
    this.removed.delete(id);
    this.refresh(id);
  }

  private refreshFrom(deviceTopic: string): void {
    const id = this.d.topics.parseDevice(deviceTopic)?.id;
    if (id !== undefined) this.refresh(id);
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

  /** Home Assistant pressed install on the app entity: the newest release of the app for the device's board. */
  private async installApp(id: string, payload: string): Promise<void> {
    if (payload !== HA_PAYLOAD_INSTALL || !this.app) {
      this.d.logger.warn(
        { device: id, payload: payload.slice(0, 40) },
        "Home Assistant app command ignored: not the install payload",
      );
      return;
    }
    const device = await this.d.storage.devices.get(id);
    const app = device ? reportedApp(device) : undefined;
    const latest = app ? await this.app.latest(app.name, app.board) : undefined;
    if (!app || !latest || compareVersions(latest.version, app.ver) <= 0) {
      this.d.logger.warn(
        { device: id },
        app
          ? "Home Assistant app install ignored: the device runs the newest release of its app"
          : "Home Assistant app install ignored: the device reports no app",
      );
      return;
    }
    const ref = `${latest.name}@${latest.version}`;
    try {
      const job = await this.d.handlers.update({ device: id, firmware: ref });
      this.d.logger.info({ device: id, job: job.id, app: ref }, "app update started from Home Assistant");
    } catch (error) {
      this.d.logger.warn({ device: id, err: (error as Error).message }, "Home Assistant app install refused");
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
