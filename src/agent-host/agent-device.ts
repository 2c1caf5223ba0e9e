import { createHash } from "node:crypto";
import { EventEmitter } from "node:events";
import { hasRtcMagic } from "../firmware/rtc-memory.ts";
import { type Clock, systemClock, type Timer } from "../net/clock.ts";
import type { AgentDeviceEvents, DevicePhase } from "./agent-device-events.ts";
import { agentDeviceFiles } from "./agent-device-files.ts";
import { type AgentDeviceOptions, DEFAULT_WIFI, type WifiOptions } from "./agent-device-options.ts";
import { AgentHostError } from "./agent-host-error.ts";
import { BOARD_PORTS, type BoardPort } from "./board-ports.ts";
import { type BrokerAddress, parseBroker } from "./broker-address.ts";
import { DeviceFilesystem } from "./device-filesystem.ts";
import { DeviceSockets, Errno } from "./device-sockets.ts";
import { serveEsp32Call } from "./esp32-calls.ts";
import { type FlashSource, flashSource } from "./flash-source.ts";
import { serveFsCall } from "./fs-calls.ts";
import { PowerCut } from "./fs-step.ts";
import { DEFAULT_MICROPYTHON, MICROPYTHON_BUILDS } from "./micropython-release.ts";
import { ModelledDelay } from "./modelled-delay.ts";
import { decodePublish, MqttPacketReader, MqttPacketType, type PublishedMessage } from "./mqtt-packets.ts";
import { WorkerLink } from "./worker-link.ts";
import type { HostCall, HostReply, RunOutcome, WorkerEvent } from "./worker-protocol.ts";

// The device's public surface, defined beside it: importers of the device keep one place to import from.

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex");

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
  private readonly port: BoardPort;
  private readonly uniqueId: Uint8Array;
  private readonly clock: Clock;
  private readonly sockets: DeviceSockets;
  private readonly readers = new Map<number, MqttPacketReader>();
  /** The board's modelled flash time (Esp32BoardPort.callMs; none by default). */
  private readonly flashDelay = new ModelledDelay();
  private link: WorkerLink | undefined;
  /** Counts power-offs, so a worker that finished starting after one is stopped, not kept. */
  private powerCuts = 0;
  private rtcBytes: Uint8Array;
  private wakeTimer: Timer | undefined;
  private currentPhase: DevicePhase = "off";
  private bootCount = 0;
  private bootCause: number;
  private battery: number | undefined;
  private firstPowerOn = true;
  private wifiOverride: Partial<WifiOptions> = {};

  constructor(options: AgentDeviceOptions) {
    super();
    this.options = options;
    this.broker = parseBroker(options.broker);
    const esp32 = options.chip === "esp32";
    this.port = BOARD_PORTS[options.chip ?? "esp8266"];
    this.bootCause = this.port.powerOnCause;
    if (esp32 && !options.esp32) {
      throw new AgentHostError(
        "A simulated ESP32 needs its board (the esp32 option: the emulator's Esp32Board).",
      );
    }
    // A Pico W's agent reads no flash (the rp2 port has no esp module).
    const flash = esp32 ? options.esp32 : options.chip === "rp2" ? new Uint8Array(0) : options.flash;
    if (!flash) throw new AgentHostError("A simulated ESP8266 needs its flash (the flash option).");
    this.flash = flashSource(flash);
    const idLength = this.port.idLength;
    this.uniqueId =
      options.uniqueId ??
      createHash("sha256")
        .update(options.id ?? "mpota-device")
        .digest()
        .subarray(0, idLength);
    if (this.uniqueId.length !== idLength) {
      throw new AgentHostError(
        `machine.unique_id() of ${this.port.label} is ${idLength} bytes, not ${this.uniqueId.length}.`,
      );
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
    for (const [path, text] of Object.entries(agentDeviceFiles(options, this.broker)))
      this.fs.writeFile(path, text);
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
    if (value.length > this.port.rtcMax) {
      throw new AgentHostError(
        `RTC user memory of ${this.port.label} holds at most ${this.port.rtcMax} bytes, not ${value.length}.`,
      );
    }
    this.rtcBytes = value.slice();
  }

  /** WiFi as the next boot sees it (e.g. `{ connected: false }`: WLAN never connects), over the options' own. */
  set wifi(value: Partial<WifiOptions>) {
    this.wifiOverride = { ...value };
  }

  /** The battery voltage the agent reads from now on. */
  set vbat(volts: number | undefined) {
    this.battery = volts;
  }

  /** Power on (reset cause PWRON_RESET): RTC memory starts empty, except for `rtc` at the first power-on. */
  powerOn(): Promise<void> {
    if (!this.firstPowerOn) this.rtcBytes = new Uint8Array(0);
    this.firstPowerOn = false;
    return this.boot(this.port.powerOnCause);
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
        const cuts = this.powerCuts;
        const link = await WorkerLink.start(
          (request) => this.hostCall(request),
          (event) => this.workerEvent(event),
          (error) => this.workerFailed(error),
          this.options.micropython ?? DEFAULT_MICROPYTHON,
        );
        if (cuts !== this.powerCuts) {
          // Powered off (or closed) while the worker started: it must not outlive the device.
          await link.stop();
          return;
        }
        this.link = link;
      }
      const booted = this.bootedOrFailed(30_000);
      this.link.boot({
        type: "boot",
        resetCause,
        rtc: hex(this.rtcBytes),
        uniqueId: hex(this.uniqueId),
        flashSize: this.options.flashSize ?? this.flash.size,
        flashUserStart: this.options.flashUserStart ?? 0xd4000,
        wifi: { ...DEFAULT_WIFI, ...this.options.wifi, ...this.wifiOverride },
        version:
          this.options.version ?? MICROPYTHON_BUILDS[this.options.micropython ?? DEFAULT_MICROPYTHON].banner,
        chip: this.options.chip ?? "esp8266",
        ...(this.options.esp32 ? { boardName: this.options.esp32.boardName } : {}),
        ...(this.options.boardName ? { boardName: this.options.boardName } : {}),
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
    this.powerCuts++;
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
          // The ESP32's ADC fake reads the battery in mV (wired straight to the pin).
          if (request.channel === 2) return { value: Math.round((this.battery ?? 0) * 1000) };
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
        case "sock_poll":
          return { value: await this.sockets.poll(request.id, request.events, request.waitMs) };
        case "sock_close":
          this.sockets.close(request.id);
          return { value: null };
        case "fs":
          return { value: serveFsCall(this.fs, request.name, request.args) };
        case "esp32": {
          const board = this.options.esp32;
          if (!board) return { errno: Errno.EIO };
          const value = serveEsp32Call(board, request.name, request.args);
          await this.flashDelay.wait(board.callMs?.(request.name, request.args) ?? 0);
          return { value };
        }
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
        if (!ota && this.autoRestart) this.bootLater(this.port.resetCause, 0);
        return;
      }
      case "deepsleep":
        this.currentPhase = "sleeping";
        this.emit("deepsleep", { ms: outcome.ms });
        this.emit("ended", { kind: "deepsleep", ms: outcome.ms });
        if (outcome.ms !== null && this.autoWake) {
          this.bootLater(this.port.wakeCause, outcome.ms);
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

  /** An ESP32's resets go through its bootloader, which the caller runs: no automatic boot by default. */
  private get autoRestart(): boolean {
    return this.options.autoRestart ?? this.port.restartsItself;
  }

  private get autoWake(): boolean {
    return this.options.autoWake ?? this.port.restartsItself;
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
