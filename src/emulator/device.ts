import { UsageError } from "../errors.ts";
import { RTC_MEMORY_MAX } from "../firmware/rtc-memory.ts";
import { type Clock, systemClock } from "../net/clock.ts";
import { ImpairedChannel, type ImpairmentStats, type LinkProfile, linkProfile } from "../net/impairment.ts";
import { seededRandom } from "../net/random.ts";
import type { UdpChannel, UdpEndpoint } from "../net/udp-channel.ts";
import { DEFAULT_SETTINGS, type YaotaSettings } from "../protocol/config-h.ts";
import { SECTOR_SIZE as FLASH_SECTOR_SIZE } from "../protocol/datagram.ts";
import { Agenda } from "./agenda.ts";
import {
  afterGpioWait,
  type BootDecision,
  type EarlyBoot,
  earlyBoot,
  RESET_REASON_NAMES,
  ResetReason,
} from "./boot.ts";
import type { AppIdentity, DeviceEvents, DeviceLogEntry, DeviceState } from "./device-events.ts";
import type { EmulatedDeviceOptions } from "./device-options.ts";
import { type DeviceStats, newDropCounts } from "./device-stats.ts";
import { type Flash, MemoryFlash } from "./flash.ts";
import { Listeners } from "./listeners.ts";
import { DROP_MESSAGES, type DropReason, OtaReceiver, type ReceiverStep } from "./receiver.ts";
import { type DeviceTiming, resolveTiming, runSteps, UartFifo } from "./timing.ts";

// The device's public surface, defined beside it: importers of the device keep one place to import from.

/** The port yaota8266's receiver listens on. */
export const OTA_PORT = 8266;

/** soft: machine.reset() / system_restart(); hard: the reset pin; deepsleep: the RTC wakes the chip. */
export type ResetCause = "soft" | "hard" | "deepsleep";

const RESET_REASONS: Record<ResetCause, number> = {
  soft: ResetReason.softRestart,
  hard: ResetReason.external,
  deepsleep: ResetReason.deepSleepWake,
};

/** The emulated device was asked to do something its state does not allow. */
export class EmulatorStateError extends UsageError {}

const hex = (n: number) => `0x${n.toString(16)}`;

/**
 * An ESP8266 with yaota8266: boot8266 chooses between the main app and the
 * ota-server on every reset; the ota-server receives updates on UDP port
 * 8266 exactly like ota.c, paced by the spec's timing model (one datagram at
 * a time, a 7-datagram receive queue, UART-bound logging, 65 ms sector
 * writes). Flash, RTC user memory and the link are emulated; time comes
 * from the injected clock.
 */
export class EmulatedDevice {
  readonly events = new Listeners<DeviceEvents>();
  readonly stats: DeviceStats = {
    datagramsReceived: 0,
    datagramsIgnored: 0,
    dropped: newDropCounts(),
    queueOverflows: 0,
    acksSent: 0,
    sectorsWritten: 0,
    duplicates: 0,
    boots: 0,
  };
  readonly flash: Flash;
  readonly settings: YaotaSettings;
  readonly timing: DeviceTiming;

  private readonly clock: Clock;
  private readonly agenda: Agenda;
  private readonly link: LinkProfile | undefined;
  private channel: UdpChannel | undefined;
  private impaired: ImpairedChannel | undefined;
  /** The channel the receiver uses: the impaired one when a link profile is set. */
  private io: UdpChannel | undefined;
  private current: DeviceState = "off";
  private rtc: Uint8Array | undefined;
  private gpioWait:
    | { early: Extract<EarlyBoot, { done: false }>; startedAt: number; cancel: () => void }
    | undefined;
  private receiver: OtaReceiver | undefined;
  private uart: UartFifo | undefined;
  private busy = false;
  /** Model time at which the CPU finishes its current work. */
  private cpuFreeAt = 0;
  private tickDue = false;
  private readonly queue: Array<{ data: Uint8Array; from: UdpEndpoint }> = [];
  private runningApp: AppIdentity | undefined;
  private lastResetReason: number = ResetReason.powerOn;

  constructor(private readonly options: EmulatedDeviceOptions) {
    this.clock = options.clock ?? systemClock;
    this.agenda = new Agenda(this.clock);
    this.flash = options.flash ?? new MemoryFlash();
    this.settings = { ...DEFAULT_SETTINGS, ...options.settings };
    this.timing = resolveTiming({ baudRate: this.settings.baudRate, ...options.timing });
    const link = typeof options.link === "string" ? linkProfile(options.link) : options.link;
    this.link = link && link.name !== "none" ? link : undefined;
  }

  get state(): DeviceState {
    return this.current;
  }

  /** Where the device listens (after powerOn). */
  get endpoint(): UdpEndpoint {
    if (!this.channel) throw new EmulatorStateError("The emulated device has no address before powerOn().");
    return this.channel.local;
  }

  /** The app boot8266 started last, while it runs. */
  get app(): AppIdentity | undefined {
    return this.current === "app" ? this.runningApp : undefined;
  }

  /** What the link profile did to datagrams (undefined without a profile). */
  get linkStats(): ImpairmentStats | undefined {
    return this.impaired?.stats;
  }

  /** The receiver's expected offset and buffer fill, while in OTA mode. */
  get receiverState(): { expectedOffset: number; buffered: number } | undefined {
    return (
      this.receiver && { expectedOffset: this.receiver.expectedOffset, buffered: this.receiver.buffered }
    );
  }

  /** MicroPython's RTC user memory (survives soft resets and deep sleep, not power loss). */
  get rtcMemory(): Uint8Array | undefined {
    return this.rtc && new Uint8Array(this.rtc);
  }

  set rtcMemory(value: Uint8Array | undefined) {
    if (value !== undefined && value.length > RTC_MEMORY_MAX) {
      throw new RangeError(`RTC user memory holds at most ${RTC_MEMORY_MAX} bytes, not ${value.length}`);
    }
    this.rtc = value && new Uint8Array(value);
  }

  /** Binds the UDP port (first time only), clears RTC memory and boots with reset reason 0. */
  async powerOn(): Promise<void> {
    if (this.current !== "off") throw new EmulatorStateError("The emulated device is already on.");
    if (!this.channel) {
      const channel = await this.options.network.bind({
        address: this.options.address ?? "127.0.0.1",
        port: this.options.port ?? OTA_PORT,
      });
      this.channel = channel;
      if (this.link) {
        this.impaired = new ImpairedChannel(
          channel,
          this.link,
          this.clock,
          this.options.random ?? seededRandom(1),
        );
      }
      this.io = this.impaired ?? channel;
      this.io.onMessage((data, from) => this.onDatagram(data, from));
    }
    this.rtc = undefined;
    this.boot(ResetReason.powerOn);
  }

  /** Cuts the power: everything in progress stops, RTC memory is lost, flash stays. */
  powerOff(): void {
    this.stopEverything();
    this.rtc = undefined;
    this.setState("off");
  }

  /** Resets the chip; boot8266 decides again. */
  reset(cause: ResetCause = "soft"): void {
    if (this.current === "off")
      throw new EmulatorStateError("The emulated device is off; call powerOn() first.");
    this.boot(RESET_REASONS[cause]);
  }

  /**
   * Toggles a watched GPIO input (the "button in the seconds after boot").
   * Only boot8266's GPIO wait notices; returns whether it did.
   */
  pressButton(): boolean {
    const wait = this.gpioWait;
    if (!wait) return false;
    wait.cancel();
    this.gpioWait = undefined;
    this.decided(
      afterGpioWait(this.bootInput(), wait.early, this.clock.now() - wait.startedAt),
      this.lastResetReason,
    );
    return true;
  }

  /** Resolves when the device next enters `state`. */
  waitForState(state: DeviceState): Promise<void> {
    return this.events.once("state", (e) => e.state === state).then(() => undefined);
  }

  /** Powers off and releases the UDP port. The flash is the caller's to close. */
  async close(): Promise<void> {
    this.powerOff();
    const channel = this.io;
    this.channel = undefined;
    this.impaired = undefined;
    this.io = undefined;
    await channel?.close();
  }

  // --- boot8266 ---------------------------------------------------------

  private bootInput() {
    return {
      flash: this.flash,
      mainAppOffset: this.settings.mainAppOffset,
      gpioMask: this.settings.gpioMask,
      gpioWaitMs: this.settings.gpioWaitMs,
      rtcMagic: this.options.rtcMagic ?? true,
    };
  }

  private boot(resetReason: number): void {
    this.stopEverything();
    this.lastResetReason = resetReason;
    this.stats.boots++;
    this.setState("booting");
    this.events.emit("reset", { resetReason, atMs: this.clock.now() });
    this.log("boot8266", `reset reason ${resetReason} (${RESET_REASON_NAMES[resetReason] ?? "unknown"})`);
    const early = earlyBoot({ ...this.bootInput(), resetReason, rtcMemory: this.rtc });
    if (early.done) {
      this.decided(early.decision, resetReason);
      return;
    }
    this.rtc = early.rtcMemory;
    const startedAt = this.clock.now();
    this.log(
      "boot8266",
      `watching GPIO mask ${hex(early.params.gpioMask)} for ${early.params.gpioWaitMs} ms (${early.params.source})`,
    );
    const cancel = this.agenda.at(startedAt + early.params.gpioWaitMs, () => {
      this.gpioWait = undefined;
      this.decided(afterGpioWait(this.bootInput(), early, undefined), resetReason);
    });
    this.gpioWait = { early, startedAt, cancel };
  }

  private decided(decision: BootDecision, resetReason: number): void {
    this.rtc = decision.rtcMemory;
    const now = this.clock.now();
    this.log("boot8266", `${decision.message} -> ${decision.mode === "ota" ? "Running OTA" : "Running app"}`);
    this.events.emit("boot", { decision, resetReason, atMs: now });
    if (decision.mode === "ota") {
      this.agenda.at(now + this.timing.otaBootMs, () => this.enterOta());
    } else {
      const app: AppIdentity = {
        size: decision.app?.size ?? 0,
        md5: decision.app?.md5,
        checked: decision.reason !== "deep-sleep-wake",
      };
      this.agenda.at(now + this.timing.appBootMs, () => this.enterApp(app));
    }
  }

  private enterApp(app: AppIdentity): void {
    this.runningApp = app;
    this.setState("app");
    this.log(
      "emulator",
      `Running app ${app.md5 ?? "(no MD5 trailer)"}${app.checked ? "" : " (not checked: deep-sleep wake)"}`,
    );
    this.events.emit("appBoot", app);
    this.options.onAppBoot?.(app);
  }

  // --- ota-server -------------------------------------------------------

  private enterOta(): void {
    const now = this.clock.now();
    this.receiver = new OtaReceiver(this.options.key, this.settings, now);
    this.uart = new UartFifo(this.timing.baudRate, this.timing.uartFifoBytes);
    this.busy = false;
    this.tickDue = false;
    this.setState("ota");
    const at = this.channel ? `${this.channel.local.address}:${this.channel.local.port}` : "?";
    this.log(
      "emulator",
      `OTA mode, listening on ${at} (${this.options.key.bits}-bit key, app at ${hex(this.settings.mainAppOffset)})`,
    );
    this.cpuFreeAt = now;
    this.agenda.at(now + 1000, () => this.onTick(now + 1000));
  }

  private onDatagram(data: Uint8Array, from: UdpEndpoint): void {
    if (this.current !== "ota" || !this.receiver) {
      this.stats.datagramsIgnored++;
      return;
    }
    this.stats.datagramsReceived++;
    if (this.busy) {
      if (this.queue.length >= this.timing.receiveQueue) {
        this.stats.queueOverflows++;
        this.countDrop("queue-overflow", this.clock.now());
        return;
      }
      this.queue.push({ data: new Uint8Array(data), from });
      return;
    }
    this.execute(this.receiver.receive(data, from), this.clock.now());
  }

  private onTick(at: number): void {
    if (this.current !== "ota") return;
    if (this.busy) {
      this.tickDue = true;
      return;
    }
    this.runTick(at);
  }

  private runTick(at: number): void {
    const receiver = this.receiver as OtaReceiver;
    const end = this.execute(receiver.tick(at), at);
    // sys_timeout(1000) is re-armed at the end of the handler.
    this.agenda.at(end + 1000, () => this.onTick(end + 1000));
  }

  /**
   * Runs steps on the modelled CPU from `start` (model time: a queued
   * datagram starts when the previous one ends, even if a real clock's
   * timer fires late); the CPU is busy until they are done.
   */
  private execute(steps: ReceiverStep[], start: number): number {
    this.busy = true;
    const end = runSteps(steps, start, this.uart as UartFifo, this.timing, (step, at) => {
      if (step.op === "print" && step.text === undefined) return;
      this.agenda.at(at, () => this.apply(step, at));
    });
    this.cpuFreeAt = end;
    this.agenda.at(end, () => this.cpuFree());
    return end;
  }

  private cpuFree(): void {
    this.busy = false;
    if (this.current !== "ota" || !this.receiver) return;
    if (this.tickDue) {
      this.tickDue = false;
      this.runTick(this.cpuFreeAt);
      return;
    }
    const next = this.queue.shift();
    if (next) this.execute(this.receiver.receive(next.data, next.from), this.cpuFreeAt);
  }

  private apply(step: ReceiverStep, at: number): void {
    switch (step.op) {
      case "print":
        if (step.text !== undefined) this.log("ota-server", step.text, at);
        return;
      case "erase":
        if (step.address + FLASH_SECTOR_SIZE <= this.flash.size)
          this.flash.eraseSector(step.address / FLASH_SECTOR_SIZE);
        else
          this.log(
            "emulator",
            `SPIEraseSector(${hex(step.address)}) is beyond the end of flash: ignored`,
            at,
          );
        return;
      case "program":
        if (step.address + step.data.length <= this.flash.size) {
          this.flash.write(step.address, step.data);
          this.stats.sectorsWritten++;
          this.events.emit("sectorWritten", { address: step.address, filled: step.filled, atMs: at });
        } else {
          this.log("emulator", `SPIWrite(${hex(step.address)}) is beyond the end of flash: ignored`, at);
        }
        return;
      case "send":
        this.io?.send(step.to, step.data);
        this.stats.acksSent++;
        this.events.emit("ack", { ack: step.ack, to: step.to, atMs: at });
        return;
      case "touch":
        this.receiver?.touch(at);
        return;
      case "drop":
        this.countDrop(step.reason, at);
        return;
      case "duplicate":
        this.stats.duplicates++;
        return;
      case "accepted":
        this.events.emit("accepted", { offset: step.offset, length: step.length, atMs: at });
        return;
      case "session-restart":
        this.events.emit("sessionRestart", { atMs: at, buffered: step.buffered });
        return;
      case "finished":
        this.events.emit("otaFinished", { rexmits: step.rexmits, atMs: at });
        return;
      case "restart":
        // system_restart(): a soft reset, and boot8266 decides again.
        this.boot(ResetReason.softRestart);
        return;
      case "work":
        return;
    }
  }

  private countDrop(reason: DropReason, at: number): void {
    this.stats.dropped[reason]++;
    if (reason === "queue-overflow") this.log("emulator", DROP_MESSAGES[reason], at);
    this.events.emit("drop", { reason, atMs: at });
  }

  private stopEverything(): void {
    this.agenda.clear();
    this.gpioWait = undefined;
    this.receiver = undefined;
    this.uart = undefined;
    this.busy = false;
    this.tickDue = false;
    this.queue.length = 0;
    this.runningApp = undefined;
  }

  private setState(state: DeviceState): void {
    const previous = this.current;
    this.current = state;
    if (previous !== state) this.events.emit("state", { state, previous, atMs: this.clock.now() });
  }

  private log(source: DeviceLogEntry["source"], message: string, atMs = this.clock.now()): void {
    this.options.logger?.({ atMs, source, message });
  }
}
