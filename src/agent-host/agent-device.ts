import { createHash } from "node:crypto";
import { EventEmitter } from "node:events";
import { MpotaError } from "../errors.ts";
import { EXIT_CODES } from "../exit-codes.ts";
import { DEFAULT_MAIN_APP_OFFSET } from "../firmware/flash-layout.ts";
import { hasRtcMagic, RTC_MEMORY_MAX } from "../firmware/rtc-memory.ts";
import { type Clock, systemClock, type Timer } from "../net/clock.ts";
import {
  DEVICE_DIR,
  EXAMPLE_MAINS,
  type PythonValue,
  readAgentFiles,
  readDeviceFile,
  renderConfig,
} from "./agent-files.ts";
import {
  DeviceFilesystem,
  type FilesystemKind,
  type FsStep,
  PowerCut,
  serveFsCall,
} from "./device-filesystem.ts";
import { DeviceSockets, Errno } from "./device-sockets.ts";
import { type FlashSource, flashSource } from "./flash-source.ts";
import {
  decodePublish,
  type MqttPacket,
  MqttPacketReader,
  MqttPacketType,
  type PublishedMessage,
} from "./mqtt-packets.ts";
import { ResetCause } from "./reset-cause.ts";
import { WorkerLink } from "./worker-link.ts";
import type { HostCall, HostReply, RunOutcome, WorkerEvent } from "./worker-protocol.ts";

/** The simulated device cannot do what was asked (wrong phase, worker failure, nothing happened in time). */
export class AgentHostError extends MpotaError {
  override readonly exitCode: number = EXIT_CODES.agentHost.code;
}

export interface BrokerAddress {
  host: string;
  port: number;
  username?: string;
  password?: string;
}

export interface WifiOptions {
  /** WLAN.isconnected() (default true: the ESP8266 keeps its WiFi credentials). */
  connected: boolean;
  ip: string;
  netmask: string;
  gateway: string;
  dns: string;
  /** WLAN.status("rssi") */
  rssi: number;
}

export interface AgentDeviceOptions {
  /** The broker the agent connects to: `mqtt://[user:password@]host[:port]` or its parts. */
  broker: string | BrokerAddress;
  /** The device's flash: a Uint8Array (read live), a file path, or a {@link FlashSource}. */
  flash: Uint8Array | string | FlashSource;
  /** DEVICE_ID in mpota_config.py; default none, so the agent uses the hex of unique_id(). */
  id?: string;
  /** machine.unique_id(), 4 bytes; default derived from `id`. */
  uniqueId?: Uint8Array;
  /** RTC memory at the first power-on (default empty). */
  rtc?: Uint8Array;
  /** SLEEP: seconds between wakes of a deep-sleeping device; 0 (default): always on. */
  sleepSeconds?: number;
  /** Battery voltage the agent reads through ADC(0); absent: no battery reader configured. */
  vbat?: number;
  /** MIN_VBAT: the agent refuses an update below it. */
  minVbat?: number;
  baseTopic?: string;
  cmdWaitMs?: number;
  keepalive?: number;
  mainAppOffset?: number;
  /** CMD_KEYS: moduli (hex) of the keys the agent accepts signed commands from; default none. */
  commandKeys?: readonly string[];
  /** ALLOW_UNSIGNED: act on unsigned (contract v1) commands too; default false, as the agent's own default. */
  allowUnsigned?: boolean;
  /** More mpota_config.py settings; they win over the ones above. */
  config?: Record<string, PythonValue>;
  /** main.py; default device/examples/sleepy_main.py when sleepSeconds > 0, else always_on_main.py. */
  main?: string;
  /**
   * How long a sleepy device stays awake after check-in, as if reading a slow
   * sensor (the default sleepy main.py then calls machine.lightsleep(awakeMs)).
   */
  awakeMs?: number;
  /** More files on the device (path -> text), e.g. boot.py. */
  files?: Record<string, string>;
  /**
   * The device's filesystem: its kind (default "littlefs", as MicroPython formats a fresh
   * ESP8266), or one to use. The agent's files are written into it when the device is made;
   * it keeps what the device writes across resets, deep sleeps and power cuts.
   */
  filesystem?: FilesystemKind | DeviceFilesystem;
  wifi?: Partial<WifiOptions>;
  /** esp.flash_size(); default the size of `flash`. */
  flashSize?: number;
  /** esp.flash_user_start(): where the filesystem starts; default 0xd4000 (v1.27 OTA build). */
  flashUserStart?: number;
  /** os.uname().version */
  version?: string;
  /** After deepsleep(ms), boot with DEEPSLEEP_RESET when ms have passed on `clock` (default true). */
  autoWake?: boolean;
  /** After machine.reset() without the OTA magic, boot again with SOFT_RESET (default true). */
  autoRestart?: boolean;
  /** Times deep-sleep wakes (default the system clock). Sockets and MicroPython run on real time. */
  clock?: Clock;
  /** Where the agent's files are (default the package's device/). */
  deviceDir?: string;
}

/** How one run of the device ended. */
export type RunEnd =
  | { kind: "reset"; rtc: Uint8Array; ota: boolean }
  | { kind: "deepsleep"; ms: number | null }
  | { kind: "exit" }
  | { kind: "crash"; error: string };

export type DevicePhase = "off" | "booting" | "running" | "sleeping" | "ota" | "halted";

export interface AgentDeviceEvents {
  booted: [{ cause: number; count: number }];
  stdout: [string];
  /** Every MQTT packet the device sent (CONNECT, PINGREQ, ...). */
  packet: [MqttPacket];
  published: [PublishedMessage];
  /** machine.reset(); `ota` when RTC memory holds b"yaotaota" (the device is entering OTA mode). */
  reset: [{ rtc: Uint8Array; ota: boolean }];
  /** Reset into OTA mode: nothing boots until the caller calls boot(). */
  ota: [{ rtc: Uint8Array }];
  deepsleep: [{ ms: number | null }];
  ended: [RunEnd];
  /** The power was cut before this filesystem step (see DeviceFilesystem.beforeStep); the device is off. */
  powerCut: [FsStep];
  /** The harness itself failed (worker died, automatic boot failed). */
  failure: [Error];
}

const DEFAULT_WIFI: WifiOptions = {
  connected: true,
  ip: "127.0.0.1",
  netmask: "255.255.255.0",
  gateway: "127.0.0.1",
  dns: "127.0.0.1",
  rssi: -61,
};

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex");

export function parseBroker(broker: string | BrokerAddress): BrokerAddress {
  if (typeof broker !== "string") return broker;
  let url: URL;
  try {
    url = new URL(broker);
  } catch {
    throw new AgentHostError(`Broker address ${broker} is not a URL; write it as mqtt://host:1883.`);
  }
  if (url.protocol !== "mqtt:") {
    throw new AgentHostError(
      `The simulated device speaks plain MQTT over TCP only; use an mqtt:// broker URL, not ${url.protocol}//.`,
    );
  }
  return {
    host: url.hostname,
    port: url.port ? Number(url.port) : 1883,
    ...(url.username ? { username: decodeURIComponent(url.username) } : {}),
    ...(url.password ? { password: decodeURIComponent(url.password) } : {}),
  };
}

/** The example sleepy main.py, staying awake `awakeMs` longer before it publishes. */
function sleepyMain(example: string, awakeMs: number): string {
  if (awakeMs <= 0) return example;
  const publish = /^( *)agent\.publish\(/m.exec(example);
  if (!publish)
    throw new AgentHostError("device/examples/sleepy_main.py has no agent.publish( line to delay.");
  const at = publish.index;
  return `${example.slice(0, at)}${publish[1]}machine.lightsleep(${Math.round(awakeMs)})\n${example.slice(at)}`;
}

/**
 * One simulated ESP8266 running the unmodified device agent under real
 * MicroPython (wasm) in its own worker thread, with fakes for `machine`,
 * `esp`, `network` and `socket` (real TCP to a real broker) and its own
 * filesystem ({@link DeviceFilesystem}: LittleFS or FAT durability, kept
 * across runs, power cuts before any write on request).
 *
 * `boot(cause)` starts a fresh interpreter carrying RTC memory, flash and
 * the filesystem over. A run ends in a reset, a deep sleep, or at the REPL; a reset whose
 * RTC memory holds the OTA magic emits `ota` and leaves it to the caller
 * (e.g. the emulator) to decide what boots next.
 */
export class AgentDevice extends EventEmitter<AgentDeviceEvents> {
  /** Everything the device published, in order. */
  readonly published: PublishedMessage[] = [];
  /** Everything the device printed. */
  readonly output: string[] = [];
  /** The device's filesystem (flash): survives resets, deep sleeps and power cuts. */
  readonly fs: DeviceFilesystem;

  private readonly options: AgentDeviceOptions;
  private readonly broker: BrokerAddress;
  private readonly flash: FlashSource;
  private readonly uniqueId: Uint8Array;
  private readonly clock: Clock;
  private readonly sockets: DeviceSockets;
  private readonly readers = new Map<number, MqttPacketReader>();
  private link: WorkerLink | undefined;
  private rtcBytes: Uint8Array;
  private wakeTimer: Timer | undefined;
  private currentPhase: DevicePhase = "off";
  private bootCount = 0;
  private bootCause: number = ResetCause.PWRON_RESET;
  private battery: number | undefined;
  private firstPowerOn = true;

  constructor(options: AgentDeviceOptions) {
    super();
    this.options = options;
    this.broker = parseBroker(options.broker);
    this.flash = flashSource(options.flash);
    this.uniqueId =
      options.uniqueId ??
      createHash("sha256")
        .update(options.id ?? "mpota-device")
        .digest()
        .subarray(0, 4);
    if (this.uniqueId.length !== 4) {
      throw new AgentHostError(`machine.unique_id() of an ESP8266 is 4 bytes, not ${this.uniqueId.length}.`);
    }
    this.rtcBytes = new Uint8Array(0);
    this.rtc = options.rtc ?? new Uint8Array(0);
    this.battery = options.vbat;
    this.clock = options.clock ?? systemClock;
    this.sockets = new DeviceSockets({
      written: (id, data) => this.sent(id, data),
      closed: (id) => this.readers.delete(id),
    });
    const fs = options.filesystem;
    this.fs = fs instanceof DeviceFilesystem ? fs : new DeviceFilesystem({ kind: fs ?? "littlefs" });
    for (const [path, text] of Object.entries(this.deviceFiles())) this.fs.writeFile(path, text);
  }

  /** The device id the agent uses: `id`, else the hex of unique_id(). */
  get id(): string {
    return this.options.id ?? hex(this.uniqueId);
  }

  get phase(): DevicePhase {
    return this.currentPhase;
  }

  /** How many times the device has booted. */
  get boots(): number {
    return this.bootCount;
  }

  /** reset_cause() of the current (or last) run. */
  get resetCause(): number {
    return this.bootCause;
  }

  /** RTC user memory as it stands (survives reset and deep sleep, not power loss). */
  get rtc(): Uint8Array {
    return this.rtcBytes.slice();
  }

  set rtc(value: Uint8Array) {
    if (value.length > RTC_MEMORY_MAX) {
      throw new AgentHostError(`RTC user memory holds at most ${RTC_MEMORY_MAX} bytes, not ${value.length}.`);
    }
    this.rtcBytes = value.slice();
  }

  /** The battery voltage the agent reads from now on. */
  set vbat(volts: number | undefined) {
    this.battery = volts;
  }

  /** Power on (reset cause PWRON_RESET): RTC memory starts empty, except for `rtc` at the first power-on. */
  powerOn(): Promise<void> {
    if (!this.firstPowerOn) this.rtcBytes = new Uint8Array(0);
    this.firstPowerOn = false;
    return this.boot(ResetCause.PWRON_RESET);
  }

  /**
   * Boots a fresh interpreter with this reset cause, RTC memory and flash as
   * they are now. Resolves once boot.py/main.py have started.
   */
  async boot(resetCause: number): Promise<void> {
    if (this.currentPhase === "booting" || this.currentPhase === "running") {
      throw new AgentHostError(
        `Device ${this.id} is ${this.currentPhase}; it can boot again only after it resets, sleeps or is powered off.`,
      );
    }
    this.firstPowerOn = false;
    this.wakeTimer?.cancel();
    this.wakeTimer = undefined;
    this.sockets.destroyAll();
    this.currentPhase = "booting";
    this.bootCause = resetCause;
    try {
      if (!this.link?.alive) {
        this.link = await WorkerLink.start(
          (request) => this.hostCall(request),
          (event) => this.workerEvent(event),
          (error) => this.workerFailed(error),
        );
      }
      const booted = this.bootedOrFailed(30_000);
      this.link.boot({
        type: "boot",
        resetCause,
        rtc: hex(this.rtcBytes),
        uniqueId: hex(this.uniqueId),
        flashSize: this.options.flashSize ?? this.flash.size,
        flashUserStart: this.options.flashUserStart ?? 0xd4000,
        wifi: { ...DEFAULT_WIFI, ...this.options.wifi },
        version: this.options.version ?? "v1.27.0 on 2025-12-10",
      });
      await booted;
    } catch (error) {
      this.currentPhase = "off";
      throw error;
    }
  }

  /** Cuts the power: the interpreter stops wherever it is, connections drop without DISCONNECT, RTC memory is lost. */
  async powerOff(): Promise<void> {
    this.wakeTimer?.cancel();
    this.wakeTimer = undefined;
    const link = this.link;
    this.link = undefined;
    this.sockets.destroyAll();
    this.fs.dropOpenFiles();
    await link?.stop();
    this.currentPhase = "off";
    this.rtcBytes = new Uint8Array(0);
  }

  /**
   * Breaks the device's TCP connections while it runs, as a WiFi or broker
   * outage would: the broker sees an unclean drop, the agent sees ECONNRESET.
   */
  dropConnections(): void {
    this.sockets.resetAll();
  }

  /** Powers off and releases the worker. */
  close(): Promise<void> {
    return this.powerOff();
  }

  /** Resolves with the next `event` (matching `predicate`); rejects after `timeoutMs` of real time. */
  waitFor<K extends keyof AgentDeviceEvents>(
    event: K,
    predicate?: (...args: AgentDeviceEvents[K]) => boolean,
    timeoutMs = 10_000,
  ): Promise<AgentDeviceEvents[K][0]> {
    return new Promise((resolve, reject) => {
      const listener = (...args: AgentDeviceEvents[K]) => {
        if (predicate && !predicate(...args)) return;
        clearTimeout(timer);
        this.off(event, listener as never);
        resolve(args[0]);
      };
      const timer = setTimeout(() => {
        this.off(event, listener as never);
        const tail = this.output.slice(-8).join("\n  ");
        reject(
          new AgentHostError(
            `Device ${this.id}: no ${String(event)} within ${timeoutMs} ms (phase ${this.currentPhase}).` +
              (tail ? `\n  last output:\n  ${tail}` : ""),
          ),
        );
      }, timeoutMs);
      this.on(event, listener as never);
    });
  }

  /** Resolves with the message the device publishes next on `topic` (under <base>/<id>/ when relative). */
  nextPublish(topic: string, timeoutMs = 10_000): Promise<PublishedMessage> {
    const full = topic.includes("/") ? topic : `${this.options.baseTopic ?? "mpota"}/${this.id}/${topic}`;
    return this.waitFor("published", (m) => m.topic === full, timeoutMs);
  }

  private bootedOrFailed(timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const done = (error?: Error) => {
        clearTimeout(timer);
        this.off("booted", onBooted);
        this.off("failure", done);
        if (error) reject(error);
        else resolve();
      };
      const onBooted = () => done();
      const timer = setTimeout(
        () => done(new AgentHostError(`Device ${this.id} did not boot within ${timeoutMs} ms.`)),
        timeoutMs,
      );
      this.on("booted", onBooted);
      this.on("failure", done);
    });
  }

  private deviceFiles(): Record<string, string> {
    const o = this.options;
    const dir = o.deviceDir ?? DEVICE_DIR;
    const sleepSeconds = o.sleepSeconds ?? 0;
    const config: Record<string, PythonValue> = {
      MQTT_HOST: this.broker.host,
      MQTT_PORT: this.broker.port,
      MQTT_USER: this.broker.username ?? null,
      MQTT_PASSWORD: this.broker.password ?? null,
      DEVICE_ID: o.id ?? null,
      BASE_TOPIC: o.baseTopic ?? "mpota",
      SLEEP: sleepSeconds,
      MIN_VBAT: o.minVbat ?? 0,
      // ADC(0) counts 0..1024; the host reports the battery as round(volts * 256).
      VBAT_ADC_SCALE: o.vbat === undefined ? null : 1 / 256,
      CMD_WAIT_MS: o.cmdWaitMs ?? 500,
      MAIN_APP_OFFSET: o.mainAppOffset ?? DEFAULT_MAIN_APP_OFFSET,
      KEEPALIVE: o.keepalive ?? 60,
      CMD_KEYS: o.commandKeys ?? [],
      ALLOW_UNSIGNED: o.allowUnsigned ?? false,
      ...o.config,
    };
    const main =
      o.main ??
      (sleepSeconds > 0
        ? sleepyMain(readDeviceFile(EXAMPLE_MAINS.sleepy, dir), o.awakeMs ?? 0)
        : readDeviceFile(EXAMPLE_MAINS.alwaysOn, dir));
    return { ...readAgentFiles(dir), "mpota_config.py": renderConfig(config), "main.py": main, ...o.files };
  }

  private async hostCall(request: HostCall): Promise<HostReply> {
    try {
      switch (request.op) {
        case "stdout":
          this.output.push(request.line);
          this.emit("stdout", request.line);
          return { value: null };
        case "flash_read": {
          const { offset, length } = request;
          if (offset < 0 || length < 0 || offset + length > this.flash.size) return { errno: Errno.EIO };
          return { value: hex(this.flash.read(offset, length)) };
        }
        case "adc":
          if (request.channel === 1) return { value: 3300 }; // ADC(1) reads VCC in mV
          return {
            value:
              this.battery === undefined ? 0 : Math.max(0, Math.min(1024, Math.round(this.battery * 256))),
          };
        case "delay":
          await new Promise((resolve) => setTimeout(resolve, Math.max(0, request.ms)));
          return { value: null };
        case "resolve":
          return { value: await this.sockets.resolve(request.host) };
        case "sock_new":
          return { value: this.sockets.create() };
        case "sock_connect":
          return {
            value: await this.sockets.connect(request.id, request.host, request.port, request.timeoutMs),
          };
        case "sock_write":
          return { value: this.sockets.write(request.id, Buffer.from(request.data, "hex")) };
        case "sock_read":
          return await this.sockets.read(request.id, request.length, request.timeoutMs, request.once);
        case "sock_close":
          this.sockets.close(request.id);
          return { value: null };
        case "fs":
          return { value: serveFsCall(this.fs, request.name, request.args) };
      }
    } catch (error) {
      if (error instanceof PowerCut) {
        const step = error.step;
        void this.powerOff().then(() => this.emit("powerCut", step));
        return { halt: true };
      }
      this.emit("failure", error instanceof Error ? error : new Error(String(error)));
      return { errno: Errno.EIO };
    }
  }

  private sent(id: number, data: Buffer): void {
    let reader = this.readers.get(id);
    if (!reader) {
      reader = new MqttPacketReader();
      this.readers.set(id, reader);
    }
    for (const packet of reader.push(data)) {
      this.emit("packet", packet);
      if (packet.type === MqttPacketType.PUBLISH) {
        const message = decodePublish(packet);
        this.published.push(message);
        this.emit("published", message);
      }
    }
  }

  private workerEvent(event: WorkerEvent): void {
    switch (event.type) {
      case "booted":
        this.currentPhase = "running";
        this.bootCount++;
        this.emit("booted", { cause: this.bootCause, count: this.bootCount });
        return;
      case "ended":
        this.ended(event.outcome);
        return;
      case "ready":
        return;
    }
  }

  private ended(outcome: RunOutcome): void {
    // A reset or deep sleep drops whatever TCP connection is left (the agent disconnects cleanly before),
    // and files left open lose what was not flushed (machine.reset() runs no cleanup).
    this.sockets.destroyAll();
    this.fs.dropOpenFiles();
    this.rtcBytes = new Uint8Array(Buffer.from(outcome.rtc, "hex"));
    switch (outcome.kind) {
      case "reset": {
        const ota = hasRtcMagic(this.rtcBytes);
        this.currentPhase = ota ? "ota" : "off";
        this.emit("reset", { rtc: this.rtc, ota });
        if (ota) this.emit("ota", { rtc: this.rtc });
        this.emit("ended", { kind: "reset", rtc: this.rtc, ota });
        if (!ota && this.options.autoRestart !== false) this.bootLater(ResetCause.SOFT_RESET, 0);
        return;
      }
      case "deepsleep":
        this.currentPhase = "sleeping";
        this.emit("deepsleep", { ms: outcome.ms });
        this.emit("ended", { kind: "deepsleep", ms: outcome.ms });
        if (outcome.ms !== null && this.options.autoWake !== false) {
          this.bootLater(ResetCause.DEEPSLEEP_RESET, outcome.ms);
        }
        return;
      case "exit":
        this.currentPhase = "halted";
        this.emit("ended", { kind: "exit" });
        return;
      case "crash":
        this.currentPhase = "halted";
        this.emit("ended", { kind: "crash", error: outcome.error });
        return;
    }
  }

  private bootLater(cause: number, ms: number): void {
    this.wakeTimer = this.clock.setTimer(ms, () => {
      this.wakeTimer = undefined;
      this.boot(cause).catch((error: unknown) =>
        this.emit("failure", error instanceof Error ? error : new Error(String(error))),
      );
    });
  }

  private workerFailed(error: Error): void {
    this.link = undefined;
    this.sockets.destroyAll();
    if (this.currentPhase === "booting" || this.currentPhase === "running") this.currentPhase = "halted";
    this.emit("failure", error);
  }
}
