import type { Logger } from "pino";
import type { DeviceState } from "../../protocol/mqtt-contract.ts";
import type { BridgeDeviceEntry, BridgeInfoMessage, ServerInfo } from "../api/api.ts";
import { type BridgeResponse, type Topics, toJson } from "../api/topics.ts";
import { firmwareRef } from "../api/views.ts";
import type { MqttLink } from "../mqtt/mqtt-link.ts";
import { type Inbound, quietly, serverJson } from "../mqtt/payload-reader.ts";
import { readState } from "../mqtt/topic-readers.ts";
import type { FirmwareRecord, Storage } from "../storage/storage.ts";

/** At most this many devices in `<base>/bridge/devices`: one retained message stays a few hundred KB. */
export const MAX_BRIDGE_DEVICES = 1000;
/** Changes within this window are published once. */
export const BRIDGE_INFO_DEBOUNCE_MS = 1000;
/** At most one publication per this interval, whatever the fleet does. */
export const BRIDGE_INFO_MIN_INTERVAL_MS = 5000;

export interface BridgeInfoOptions {
  link: MqttLink;
  topics: Topics;
  storage: Storage;
  info: () => ServerInfo;
  /** Resolves once the device messages received so far are stored. */
  settled?: () => Promise<void>;
  logger: Logger;
  debounceMs?: number;
  minIntervalMs?: number;
  maxDevices?: number;
}

/** The fields of a device's state that bridge/devices shows: a change of one of them republishes it. */
function stateKey(fw: unknown, ip: unknown, ver: unknown, sleep: unknown, v: unknown): string {
  return JSON.stringify([fw ?? null, ip ?? null, ver ?? null, sleep ?? null, v ?? 1]);
}

/**
 * Retained `<base>/bridge/info` and `<base>/bridge/devices`, as
 * Zigbee2MQTT's bridge offers them: what the server is (version, base
 * topic, storage, signing key, fleet size) and the devices it knows with
 * their firmware, for dashboards and scripts that only read MQTT. Only
 * slow-changing fields are listed (firmware, address, sleep period), not
 * status or signal, which live on each device's own topics; the list is
 * bounded ({@link MAX_BRIDGE_DEVICES}) and republished at most every few
 * seconds, only when it changed. Every instance publishes the same content
 * from the shared storage.
 */
export class BridgeInfoPublisher {
  /** stateKey of every device, as last listed or heard. */
  private readonly known = new Map<string, string>();
  private lastInfo = "";
  private lastDevices = "";
  private lastAt = 0;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  private readonly filters: string[];
  private readonly onConnect = () => {
    // The broker may have lost retained messages while we were away.
    this.lastInfo = "";
    this.lastDevices = "";
    this.schedule();
  };

  constructor(private readonly o: BridgeInfoOptions) {
    this.filters = [o.topics.allDevices("state"), o.topics.bridgeResponses("firmware")];
  }

  async start(): Promise<void> {
    await this.publish();
    // The inbox reads and logs device states; this only looks at the good ones.
    await this.o.link.subscribe(this.o.topics.allDevices("state"), quietly(readState), (m) =>
      this.onState(m),
    );
    await this.o.link.subscribe(
      this.o.topics.bridgeResponses("firmware"),
      serverJson<BridgeResponse>((reply) => typeof reply.status === "string"),
      // A firmware added or removed renames devices' firmware.
      () => this.schedule(),
    );
    this.o.link.client.on("connect", this.onConnect);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.o.link.client.off("connect", this.onConnect);
    for (const filter of this.filters) await this.o.link.unsubscribe(filter).catch(() => undefined);
    await this.running;
  }

  private onState(message: Inbound<DeviceState>): void {
    const parsed = this.o.topics.parseDevice(message.topic);
    if (!parsed || parsed.id === "bridge") return;
    const state = message.payload;
    const key = stateKey(state.fw, state.ip, state.ver, state.sleep, state.v);
    if (this.known.get(parsed.id) !== key) this.schedule();
  }

  private schedule(): void {
    if (this.stopped || this.timer !== undefined) return;
    const debounce = this.o.debounceMs ?? BRIDGE_INFO_DEBOUNCE_MS;
    const wait = Math.max(
      debounce,
      this.lastAt + (this.o.minIntervalMs ?? BRIDGE_INFO_MIN_INTERVAL_MS) - Date.now(),
    );
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.running = this.publish().finally(() => {
        this.running = undefined;
      });
    }, wait);
    this.timer.unref();
  }

  private async publish(): Promise<void> {
    try {
      await this.o.settled?.();
      const storage = this.o.storage;
      const [devices, firmware] = await Promise.all([storage.devices.list(), storage.firmware.list()]);
      if (this.stopped) return;
      this.lastAt = Date.now();
      const byId = new Map(firmware.map((f) => [f.id, f] as [string, FirmwareRecord]));
      const max = this.o.maxDevices ?? MAX_BRIDGE_DEVICES;
      const sorted = [...devices].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
      this.known.clear();
      const entries: BridgeDeviceEntry[] = [];
      for (const d of sorted) {
        const s = d.state;
        this.known.set(d.id, stateKey(s?.fw, s?.ip, s?.ver, s?.sleep, s ? (s.v ?? 1) : undefined));
        if (entries.length >= max) continue;
        const known = s ? byId.get(s.fw) : undefined;
        entries.push({
          id: d.id,
          fw: s?.fw ?? null,
          firmware: known ? firmwareRef(known) : null,
          ver: s?.ver ?? null,
          ip: s?.ip ?? null,
          sleep: s?.sleep ?? null,
          v: s ? (s.v ?? 1) : null,
          chip: s?.chip ?? null,
          firstSeen: d.firstSeen,
        });
      }
      const server = this.o.info();
      const info: BridgeInfoMessage = {
        version: server.version,
        base: server.base,
        storage: server.storage,
        keyBits: server.keyBits,
        devices: { count: devices.length, listed: entries.length },
        firmware: firmware.length,
      };
      const infoJson = JSON.stringify(info);
      const devicesJson = JSON.stringify(entries);
      if (devicesJson !== this.lastDevices) {
        await this.o.link.publish(this.o.topics.bridgeDevices, toJson(entries), { retain: true, qos: 1 });
        this.lastDevices = devicesJson;
      }
      if (infoJson !== this.lastInfo) {
        await this.o.link.publish(this.o.topics.bridgeInfo, toJson(info), { retain: true, qos: 1 });
        this.lastInfo = infoJson;
      }
    } catch (error) {
      // Storage or broker away: the next change (or reconnection) tries again.
      this.o.logger.warn({ err: (error as Error).message }, "bridge/info and bridge/devices not published");
    }
  }
}
