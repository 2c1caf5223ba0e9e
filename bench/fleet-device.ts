import { connectAsync, type MqttClient } from "mqtt";
import { EmulatedDevice } from "../src/emulator/device.ts";
import type { AppIdentity } from "../src/emulator/device-events.ts";
import { MemoryFlash } from "../src/emulator/flash.ts";
import { RTC_MAGIC } from "../src/firmware/rtc-memory.ts";
import type { Random } from "../src/net/random.ts";
import type { UdpNetwork } from "../src/net/udp-channel.ts";
import type { PublicKeyInfo } from "../src/protocol/rsa-key.ts";

export interface BenchDeviceOptions {
  id: string;
  address: string;
  url: string;
  /** The device's own secret (its id is the user name); none: it connects anonymously. */
  password?: string;
  key: PublicKeyInfo;
  image: Uint8Array;
  network: UdpNetwork;
  random: Random;
  /** Seconds between wakes; 0: always on. */
  sleepSeconds: number;
  /** A sleepy device's wait for a retained command after check-in (the agent's 500 ms). */
  windowMs?: number;
  /** Called with the identity of every app the device boots. */
  onBoot?: (fw: string | undefined) => void;
}

const APP_OFFSET = 0x3c000;

/**
 * One device of the fleet benchmark: the emulated ESP8266 with yaota8266
 * (the spec's timing model, the `lan` link, its own loopback address) and a
 * small agent over MQTT.js that follows the device contract v2 as the
 * MicroPython agent does: log in as itself, check in at every boot, take a
 * retained command (ack, RTC magic, reset into OTA mode), deep-sleep between
 * wakes. It is lighter than the real agent (src/simulator runs MicroPython
 * per device), so a thousand of them fit in one process; it does not check
 * the commands' signatures (the real agent does: test/agent).
 */
export class BenchDevice {
  readonly emulator: EmulatedDevice;
  private client: MqttClient | undefined;
  private sleepTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private session = Promise.resolve();

  constructor(private readonly o: BenchDeviceOptions) {
    const flash = new MemoryFlash(0x100000);
    flash.write(APP_OFFSET, o.image);
    this.emulator = new EmulatedDevice({
      network: o.network,
      address: o.address,
      key: o.key,
      flash,
      link: "lan",
      random: o.random,
      onAppBoot: (app) => {
        o.onBoot?.(app.md5);
        this.session = this.session.then(() => this.agent(app)).catch(() => undefined);
      },
    });
  }

  start(): Promise<void> {
    return this.emulator.powerOn();
  }

  private async agent(app: AppIdentity): Promise<void> {
    if (this.closed || !app.md5) return;
    const { id, url } = this.o;
    const base = `mpota/${id}`;
    const client = await connectAsync(url, {
      clientId: id,
      ...(this.o.password !== undefined ? { username: id, password: this.o.password } : {}),
      clean: true,
      reconnectPeriod: 0,
      connectTimeout: 30_000,
      will: { topic: `${base}/status`, payload: Buffer.from("offline"), retain: true, qos: 1 },
    });
    this.client = client;
    const fw = app.md5;
    let taken = false;
    const take = async (payload: Buffer): Promise<boolean> => {
      if (taken || this.closed || payload.length === 0) return false;
      const command = JSON.parse(payload.toString()) as { job: string; fw: string };
      if (command.fw === fw) return false;
      taken = true;
      await client.publishAsync(
        `${base}/ack`,
        JSON.stringify({ job: command.job, ready: true, ip: this.o.address, port: 8266 }),
        { qos: 1 },
      );
      await client.publishAsync(`${base}/status`, "ota", { qos: 1, retain: true });
      await client.endAsync();
      this.client = undefined;
      this.emulator.rtcMemory = RTC_MAGIC;
      this.emulator.reset("soft");
      return true;
    };
    const commands: Buffer[] = [];
    client.on("message", (topic, payload) => {
      if (topic !== `${base}/cmd`) return;
      if (this.o.sleepSeconds === 0) void take(payload).catch(() => undefined);
      else commands.push(payload);
    });
    await client.subscribeAsync(`${base}/cmd`, { qos: 1 });
    const state = {
      v: 2,
      fw,
      ip: this.o.address,
      flash: 0x100000,
      sleep: this.o.sleepSeconds,
      wake: "power",
    };
    await client.publishAsync(`${base}/state`, JSON.stringify(state), { qos: 1, retain: true });
    await client.publishAsync(`${base}/status`, "online", { qos: 1, retain: true });
    if (this.o.sleepSeconds === 0) return;
    await new Promise((resolve) => setTimeout(resolve, this.o.windowMs ?? 500));
    for (const c of commands) if (await take(c)) return;
    if (this.closed) return;
    await client.publishAsync(`${base}/status`, "sleeping", { qos: 1, retain: true });
    await client.endAsync();
    this.client = undefined;
    this.sleepTimer = setTimeout(() => {
      if (!this.closed && this.emulator.state === "app") this.emulator.reset("deepsleep");
    }, this.o.sleepSeconds * 1000);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.sleepTimer) clearTimeout(this.sleepTimer);
    await this.session;
    await this.client?.endAsync().catch(() => undefined);
    await this.emulator.close();
  }
}
