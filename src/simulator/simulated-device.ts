import { AgentDevice } from "../agent-host/agent-device.ts";
import { checkMainApp, ResetReason } from "../emulator/boot.ts";
import { EmulatedDevice, OTA_PORT } from "../emulator/device.ts";
import type { AppIdentity } from "../emulator/device-events.ts";
import { MemoryFlash } from "../emulator/flash.ts";
import { type Clock, systemClock, type Timer } from "../net/clock.ts";
import { NodeUdpNetwork } from "../net/node-udp.ts";
import { seededRandom } from "../net/random.ts";
import type { UdpEndpoint } from "../net/udp-channel.ts";
import { DEFAULT_SETTINGS, type YaotaSettings } from "../protocol/config-h.ts";
import { describeBindError } from "./bind-errors.ts";
import { writeImage } from "./flash-image.ts";
import { SimulatedBoard } from "./simulated-board.ts";
import type { SimulatedDeviceOptions } from "./simulated-device-options.ts";
import { type SimulatedStatus, WAKE_NAMES } from "./simulated-events.ts";
import { SimulatorError } from "./simulator-error.ts";

// The device's public surface, defined beside it: importers of the device keep one place to import from.

/** One line per device for tables and `--json`. */
export interface SimulatedDeviceSummary {
  id: string;
  address: string;
  port: number;
  status: SimulatedStatus;
  /** The identity (MD5 trailer) of the app that runs or ran last; null without a valid one. */
  fw: string | null;
  sleepSeconds: number;
  link: string;
  /** Resets of the chip, power-on included. */
  boots: number;
  /** Check-ins (state messages) published. */
  checkins: number;
  /** Times a different firmware booted after an update. */
  updates: number;
}

/**
 * One simulated ESP8266 with yaota8266: an {@link EmulatedDevice}
 * (boot8266, the ota-server, flash, RTC memory, reset causes, its link) whose
 * main app is an {@link AgentDevice} (the real MicroPython agent).
 *
 * The emulator owns flash and RTC memory. When boot8266 starts the app, the
 * agent boots a fresh interpreter with the reset cause and the RTC memory;
 * it reads its firmware identity from the emulator's flash and reports the
 * emulator's address as its IP. When the agent resets (`machine.reset()`),
 * its RTC memory goes back to the emulator, which resets softly, so boot8266
 * sees the OTA magic and starts the receiver; after an update it checks the
 * MD5 and boots the new app (or the receiver again). `machine.deepsleep(ms)`
 * becomes a deep-sleep wake of the emulator after `ms`, which boots the app
 * unchecked.
 */
export class SimulatedDevice extends SimulatedBoard {
  readonly emulator: EmulatedDevice;
  readonly agent: AgentDevice;
  readonly id: string;
  readonly address: string;
  readonly port: number;
  readonly sleepSeconds: number;
  readonly link: string;

  protected readonly clock: Clock;
  private readonly settings: YaotaSettings;
  protected readonly baseTopic: string;
  private readonly ownsFlash: boolean;
  private resetReason: number = ResetReason.powerOn;
  private asleep = false;
  private wakeTimer: Timer | undefined;
  private runningFw: string | undefined;
  private updateCount = 0;
  private starting: Promise<void> | undefined;
  private session: { startedAt: number; bytes: number; sectors: number; from?: UdpEndpoint } | undefined;

  constructor(options: SimulatedDeviceOptions) {
    super();
    this.id = options.id;
    this.address = options.address;
    this.port = options.port ?? OTA_PORT;
    this.sleepSeconds = options.sleepSeconds ?? 0;
    this.clock = options.clock ?? systemClock;
    this.settings = { ...DEFAULT_SETTINGS, ...options.settings };
    this.baseTopic = options.baseTopic ?? "mpota";
    this.link = typeof options.link === "string" ? options.link : (options.link?.name ?? "none");

    this.ownsFlash = options.flash === undefined;
    const flash = options.flash ?? new MemoryFlash();
    if (options.firmware) writeImage(flash, this.settings.mainAppOffset, options.firmware);
    this.runningFw = checkMainApp(flash, this.settings.mainAppOffset).md5;

    this.emulator = new EmulatedDevice({
      network: options.network ?? new NodeUdpNetwork(),
      address: options.address,
      port: this.port,
      clock: this.clock,
      random: options.random ?? seededRandom(1),
      key: options.key,
      settings: this.settings,
      flash,
      ...(options.link !== undefined ? { link: options.link } : {}),
      ...(options.timing !== undefined ? { timing: options.timing } : {}),
      ...(options.logger !== undefined ? { logger: options.logger } : {}),
    });
    this.agent = new AgentDevice({
      ...options.agent,
      ...this.agentOptions(options),
      flash,
      flashSize: flash.size,
      mainAppOffset: this.settings.mainAppOffset,
    });
    this.wire();
  }

  /** The identity of the app that runs or ran last (the MD5 trailer boot8266 saw). */
  get fw(): string | undefined {
    return this.runningFw;
  }

  /** Where the receiver listens in OTA mode. */
  get endpoint(): UdpEndpoint {
    return { address: this.address, port: this.port };
  }

  /** Binds the device's address and powers it on: boot8266 decides, then the agent runs. */
  async start(): Promise<void> {
    if (this.closing) throw new SimulatorError(`Simulated device ${this.id} was stopped; create a new one.`);
    this.emit({ type: "power-on" });
    this.starting = this.emulator.powerOn();
    try {
      await this.starting;
    } catch (error) {
      throw describeBindError(error, this.address, this.port);
    } finally {
      this.starting = undefined;
    }
    this.refresh();
  }

  /** Presses the reset pin (or resets softly): the agent stops wherever it is, RTC memory stays. */
  async reset(cause: "hard" | "soft" = "hard"): Promise<void> {
    await this.stopApp();
    this.emulator.reset(cause);
    this.refresh();
  }

  /** Cuts the power and powers on again: RTC memory is lost, flash stays. */
  async powerCycle(): Promise<void> {
    await this.stopApp();
    this.emulator.powerOff();
    this.emit({ type: "power-off" });
    await this.start();
  }

  /**
   * Fires the RTC timer of a sleeping device now: the deep-sleep wake it would
   * otherwise reach after its `sleepSeconds`. Lets a test decide when a sleepy
   * device wakes instead of racing its timer. Does nothing unless it sleeps.
   */
  wake(): void {
    if (this.closing || !this.asleep || this.emulator.state === "off") return;
    this.cancelWake();
    this.emulator.reset("deepsleep");
  }

  summary(): SimulatedDeviceSummary {
    return {
      id: this.id,
      address: this.address,
      port: this.port,
      status: this.status,
      fw: this.runningFw ?? null,
      sleepSeconds: this.sleepSeconds,
      link: this.link,
      boots: this.emulator.stats.boots,
      checkins: this.checkinCount,
      updates: this.updateCount,
    };
  }

  /** Powers off for good and releases the worker and the UDP port. */
  async stop(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.cancelWake();
    // A power-on still binding its port finishes first, so the port is released below.
    await this.starting?.catch(() => undefined);
    await this.agent.close();
    await this.emulator.close();
    if (this.ownsFlash) this.emulator.flash.close();
    this.setStatus("off");
  }

  // --- wiring -------------------------------------------------------------

  private wire(): void {
    const em = this.emulator.events;
    em.on("reset", (e) => {
      this.resetReason = e.resetReason;
      this.asleep = false;
      this.haltedWith = undefined;
      this.session = undefined;
      this.refresh();
    });
    em.on("boot", (e) => {
      this.emit({
        type: "boot",
        mode: e.decision.mode,
        reason: e.decision.reason,
        message: e.decision.message,
        resetReason: e.resetReason,
      });
    });
    em.on("state", (e) => {
      if (e.state === "ota") {
        this.session = { startedAt: e.atMs, bytes: 0, sectors: 0 };
        this.emit({ type: "ota-listening", endpoint: this.endpoint });
      }
      this.refresh();
    });
    em.on("ack", (e) => {
      const s = this.session;
      if (s && !s.from) {
        s.from = e.to;
        s.startedAt = e.atMs;
        this.emit({ type: "push-started", from: e.to });
      }
    });
    em.on("accepted", (e) => {
      if (this.session) this.session.bytes = Math.max(this.session.bytes, e.offset + e.length);
    });
    em.on("sectorWritten", () => {
      if (this.session) this.session.sectors++;
    });
    em.on("sessionRestart", (e) => this.emit({ type: "push-restarted", buffered: e.buffered }));
    em.on("otaFinished", (e) => {
      const s = this.session;
      this.emit({
        type: "push-received",
        bytes: s?.bytes ?? 0,
        sectors: s?.sectors ?? 0,
        ms: s ? e.atMs - s.startedAt : 0,
      });
    });
    em.on("appBoot", (app) => this.startApp(app));

    const agent = this.agent;
    this.wireAgent(agent);
    agent.on("reset", ({ rtc }) => {
      // machine.reset(): a soft reset of the chip, RTC memory carried over.
      if (this.closing || this.emulator.state === "off") return;
      this.emulator.rtcMemory = rtc;
      this.emulator.reset("soft");
    });
    agent.on("deepsleep", ({ ms }) => this.deepSleep(ms));
    agent.on("ended", (end) => {
      if (end.kind === "exit") this.halt("main.py ended; the board sits at the REPL");
      else if (end.kind === "crash") this.halt(`the app crashed: ${end.error}`);
    });
  }

  private startApp(app: AppIdentity): void {
    if (this.closing) return;
    const previous = this.runningFw;
    this.runningFw = app.md5;
    const wake = WAKE_NAMES[this.resetReason] ?? "other";
    this.emit({ type: "app-start", fw: app.md5, checked: app.checked, wake });
    if (app.md5 !== previous) {
      this.updateCount++;
      this.emit({ type: "firmware-changed", from: previous, to: app.md5 });
    }
    if (this.agent.phase === "booting" || this.agent.phase === "running") {
      this.halt("the app was still running when boot8266 started it again");
      return;
    }
    this.agent.rtc = this.emulator.rtcMemory ?? new Uint8Array(0);
    this.agent.boot(this.resetReason).then(
      () => this.refresh(),
      (error: unknown) => {
        if (!this.closing) this.halt(`the app did not boot: ${(error as Error).message}`);
      },
    );
  }

  private deepSleep(ms: number | null): void {
    if (this.closing || this.emulator.state === "off") return;
    this.emulator.rtcMemory = this.agent.rtc;
    this.asleep = true;
    this.emit({ type: "deepsleep", ms });
    this.refresh();
    this.cancelWake();
    if (ms === null) return; // sleeps until reset
    this.wakeTimer = this.clock.setTimer(ms, () => {
      this.wakeTimer = undefined;
      if (this.closing || !this.asleep || this.emulator.state === "off") return;
      // The RTC timer pulls RST (GPIO16 wired to it): a deep-sleep wake.
      this.emulator.reset("deepsleep");
    });
  }

  private async stopApp(): Promise<void> {
    this.cancelWake();
    this.asleep = false;
    if (this.agent.phase !== "off") await this.agent.powerOff();
  }

  private cancelWake(): void {
    this.wakeTimer?.cancel();
    this.wakeTimer = undefined;
  }

  protected derivedStatus(): SimulatedStatus {
    switch (this.emulator.state) {
      case "off":
        return "off";
      case "booting":
        return "booting";
      case "ota":
        return "ota";
      case "app":
        if (this.haltedWith !== undefined) return "halted";
        if (this.asleep) return "sleeping";
        return this.agent.phase === "running" ? "awake" : "booting";
    }
  }
}
