import type { IClientOptions } from "mqtt";
import { EmulatedDevice } from "../../../src/emulator/device.ts";
import type { AppIdentity } from "../../../src/emulator/device-events.ts";
import { type Flash, MemoryFlash } from "../../../src/emulator/flash.ts";
import { NodeUdpNetwork } from "../../../src/net/node-udp.ts";
import type { OtaCommand } from "../../../src/protocol/mqtt-contract.ts";
import { MqttDevice } from "./mqtt-device.ts";
import { testKey } from "./test-server.ts";

export const MAIN_APP_OFFSET = 0x3c000;

export interface TwinOptions {
  url: string;
  id: string;
  /** The app in flash at power-on. */
  image: Uint8Array;
  base?: string;
  /** Loopback address the receiver binds (port 0: a free port). */
  address?: string;
  /** Deep-sleep period in ms; 0: always on. */
  sleepMs?: number;
  /** How long a waking sleepy device waits for a retained command (the agent's 500 ms window). */
  windowMs?: number;
  /** The ip the agent reports (default: the receiver's address). */
  reportIp?: string;
  /** Decline commands with this reason. */
  decline?: string;
  /** The device's flash (default: 1 MiB in memory). */
  flash?: Flash;
  /** Credentials and TLS for the broker. */
  mqttOptions?: IClientOptions;
}

/**
 * A device for the server's tests: the emulated ESP8266 with yaota8266
 * (src/emulator) on a real UDP socket, and a small agent over MQTT that
 * follows the contract: at every app boot it connects, publishes state and
 * status, takes a command by acking it, writing the RTC magic and resetting
 * into OTA mode; a sleepy one deep-sleeps after its window.
 */
export class DeviceTwin {
  readonly emulator: EmulatedDevice;
  readonly flash: Flash;
  /** Apps the device booted, in order (md5 of each). */
  readonly boots: Array<string | undefined> = [];
  mqtt: MqttDevice | undefined;
  /** Set false to make the agent stop reporting (a device that never comes back). */
  agentEnabled = true;
  private sleepTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private session = Promise.resolve();

  constructor(readonly options: TwinOptions) {
    this.flash = options.flash ?? new MemoryFlash(0x100000);
    this.flash.write(MAIN_APP_OFFSET, options.image);
    this.emulator = new EmulatedDevice({
      network: new NodeUdpNetwork(),
      address: options.address ?? "127.0.0.1",
      port: 0,
      key: testKey,
      flash: this.flash,
      settings: { gpioWaitMs: 50, pktWaitMs: 1000, idleRebootMs: 2000 },
      timing: { otaBootMs: 100, appBootMs: 50, baudRate: 921600 },
      onAppBoot: (app) => this.onAppBoot(app),
    });
  }

  get endpoint(): { address: string; port: number } {
    return this.emulator.endpoint;
  }

  async start(): Promise<void> {
    await this.emulator.powerOn();
  }

  private onAppBoot(app: AppIdentity): void {
    this.boots.push(app.md5);
    if (!this.agentEnabled || this.closed) return;
    this.session = this.session.then(() => this.runAgent(app)).catch(() => undefined);
  }

  private async runAgent(app: AppIdentity): Promise<void> {
    const { url, id, base = "mpota" } = this.options;
    const fw = app.md5 as string;
    const mqtt = await MqttDevice.connect(url, id, base, this.options.mqttOptions);
    this.mqtt = mqtt;
    const sleepMs = this.options.sleepMs ?? 0;
    await mqtt.state({
      fw,
      ip: this.options.reportIp ?? this.endpoint.address,
      flash: 1048576,
      wake: "soft",
      sleep: sleepMs / 1000,
    });
    await mqtt.status("online");
    let taken = false;
    const take = async (command: OtaCommand | "") => {
      if (command === "" || command.fw === fw || this.closed || taken) return false;
      taken = true;
      if (this.options.decline) {
        await mqtt.ack({ job: command.job, ready: false, error: this.options.decline });
        taken = false;
        return false;
      }
      await mqtt.ack({ job: command.job, ready: true, ip: this.endpoint.address, port: this.endpoint.port });
      await mqtt.status("ota");
      await mqtt.close();
      this.mqtt = undefined;
      this.emulator.rtcMemory = new Uint8Array(Buffer.from("yaotaota", "latin1"));
      this.emulator.reset("soft");
      return true;
    };
    if (sleepMs === 0) {
      // Always on: act on every command as it arrives.
      mqtt.client.on("message", (topic, payload) => {
        if (topic !== `${base}/${id}/cmd` || payload.length === 0) return;
        void take(JSON.parse(payload.toString()) as OtaCommand).catch(() => undefined);
      });
      for (const c of mqtt.commands) if (await take(c)) return;
      return;
    }
    // Sleepy: wait a short window for a retained command, then sleep.
    await new Promise((resolve) => setTimeout(resolve, this.options.windowMs ?? 300));
    for (const c of mqtt.commands) if (await take(c)) return;
    if (this.closed) return;
    await mqtt.status("sleeping");
    await mqtt.close();
    this.mqtt = undefined;
    this.sleepTimer = setTimeout(() => {
      this.sleepTimer = undefined;
      if (!this.closed && this.emulator.state === "app") this.emulator.reset("deepsleep");
    }, sleepMs);
  }

  /**
   * Ends a sleepy device's sleep now, as its timer would: it boots its app
   * and runs its agent. Waits until the agent has gone to sleep first, so a
   * test decides what happens before the wake (a job created while it sleeps).
   */
  async wake(): Promise<void> {
    await this.session;
    if (this.sleepTimer === undefined || this.closed || this.emulator.state !== "app") {
      throw new Error(`Device ${this.options.id} is not asleep: it cannot be woken.`);
    }
    clearTimeout(this.sleepTimer);
    this.sleepTimer = undefined;
    this.emulator.reset("deepsleep");
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.sleepTimer) clearTimeout(this.sleepTimer);
    await this.session;
    await this.mqtt?.close().catch(() => undefined);
    await this.emulator.close();
  }
}
