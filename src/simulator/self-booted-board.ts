import { AgentDevice } from "../agent-host/agent-device.ts";
import type { AgentDeviceOptions } from "../agent-host/agent-device-options.ts";
import type { BrokerAddress } from "../agent-host/broker-address.ts";
import { type Clock, systemClock, type Timer } from "../net/clock.ts";
import { SimulatedBoard } from "./simulated-board.ts";
import type { SimulatedDeviceSummary } from "./simulated-device.ts";
import type { SimulatedStatus } from "./simulated-events.ts";
import { SimulatorError } from "./simulator-error.ts";

/** What every self-booted board is given: its agent's id, broker, address and timing. */
export interface SelfBootedOptions {
  /** DEVICE_ID of the agent. */
  id: string;
  broker: string | BrokerAddress;
  /** The IP the agent reports (default 127.0.0.1). */
  address?: string;
  sleepSeconds?: number;
  awakeMs?: number;
  baseTopic?: string;
  cmdWaitMs?: number;
  /** More AgentDevice options (app keys, battery, config entries, files, ...). */
  agent?: Partial<Omit<AgentDeviceOptions, "broker" | "chip" | "esp32" | "id" | "autoWake" | "autoRestart">>;
  clock?: Clock;
}

/** The board's own part of its agent: the chip, and defaults `options.agent` may override. */
export interface SelfBootedChip {
  chip: NonNullable<AgentDeviceOptions["chip"]>;
  esp32?: AgentDeviceOptions["esp32"];
  defaults?: Partial<AgentDeviceOptions>;
}

/**
 * A board whose one {@link AgentDevice} it boots itself (the agent restarts
 * nothing on its own): the ESP32, which runs ESP-IDF's bootloader at every
 * reset, and the Pico W. Shared: the agent and its wiring, power on and off,
 * the deep sleep and its wake timer, the status from power, halt, sleep and
 * the agent's phase, main.py's end (MicroPython sits at the REPL; nothing
 * resets the chip) and the summary line. A subclass says how the chip starts
 * at power-on (`powerOn`), after `machine.reset()` (`softReset`) and after a
 * deep sleep (`wakeUp`).
 */
export abstract class SelfBootedBoard extends SimulatedBoard {
  readonly id: string;
  readonly agent: AgentDevice;
  readonly sleepSeconds: number;
  /** The IP the agent reports (these boards bind no UDP port: they pull their updates). */
  readonly address: string;
  protected readonly clock: Clock;
  protected readonly baseTopic: string;
  protected asleep = false;
  protected powered = false;
  /** The firmware identity the summary shows. */
  protected runningFw: string | undefined;
  protected updateCount = 0;
  private bootCount = 0;
  private wakeTimer: Timer | undefined;

  protected constructor(options: SelfBootedOptions, chip: SelfBootedChip) {
    super();
    this.id = options.id;
    this.clock = options.clock ?? systemClock;
    this.baseTopic = options.baseTopic ?? "mpota";
    this.sleepSeconds = options.sleepSeconds ?? 0;
    this.address = options.address ?? "127.0.0.1";
    this.agent = new AgentDevice({
      ...chip.defaults,
      ...options.agent,
      ...this.agentOptions(options),
      chip: chip.chip,
      ...(chip.esp32 ? { esp32: chip.esp32 } : {}),
    });
    this.wireAgent(this.agent);
    this.agent.on("reset", () => {
      if (!this.closing) this.softReset();
    });
    this.agent.on("deepsleep", ({ ms }) => this.deepSleep(ms));
    this.agent.on("ended", (end) => {
      if (end.kind === "exit") this.halt("main.py ended; the board sits at the REPL");
      else if (end.kind === "crash") this.halt(`main.py raised: ${end.error}`);
    });
  }

  /** The firmware identity of the app that runs or ran last. */
  get fw(): string | undefined {
    return this.runningFw;
  }

  /** Times the chip started (power-on included). */
  get boots(): number {
    return this.bootCount;
  }

  /** Times a different firmware booted. */
  get updates(): number {
    return this.updateCount;
  }

  /** One line for tables and `--json`, as the ESP8266's (port 0 and link "none": these boards pull over TCP). */
  summary(): SimulatedDeviceSummary {
    return {
      id: this.id,
      address: this.address,
      port: 0,
      status: this.status,
      fw: this.runningFw ?? null,
      sleepSeconds: this.sleepSeconds,
      link: "none",
      boots: this.bootCount,
      checkins: this.checkinCount,
      updates: this.updateCount,
    };
  }

  /** Powers on; the chip then starts as `powerOn` says. */
  async start(): Promise<void> {
    if (this.closing) throw new SimulatorError(`Simulated device ${this.id} was stopped; create a new one.`);
    this.emit({ type: "power-on" });
    this.powered = true;
    this.powerOn();
  }

  /** Powers off for good and releases the worker. */
  async stop(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.cancelWake();
    await this.agent.close();
    this.powerOff();
    this.powered = false;
    this.setStatus("off");
  }

  /** Fires the timer of a sleeping device now (a deep-sleep wake). Does nothing unless it sleeps. */
  wake(): void {
    if (this.closing || !this.asleep) return;
    this.cancelWake();
    this.wakeUp();
  }

  /** Starts the chip at power-on. */
  protected abstract powerOn(): void;

  /** Starts the chip again after the agent's `machine.reset()`. */
  protected abstract softReset(): void;

  /** Starts the chip as its deep-sleep wake does. */
  protected abstract wakeUp(): void;

  /** What else loses power when the board stops for good; nothing by default. */
  protected powerOff(): void {}

  /**
   * A chip start begins: awake, not halted, one boot more. False when the
   * board is stopping and nothing should start.
   */
  protected beginBoot(): boolean {
    if (this.closing) return false;
    this.asleep = false;
    this.haltedWith = undefined;
    this.bootCount++;
    return true;
  }

  /** Runs the agent's boot with `resetCause`; a boot that fails halts the board with the reason. */
  protected runAgent(resetCause: number): Promise<void> {
    return this.agent.boot(resetCause).then(
      () => this.refresh(),
      (error: unknown) => {
        if (!this.closing) this.halt(`the app did not boot: ${(error as Error).message}`);
      },
    );
  }

  protected derivedStatus(): SimulatedStatus {
    if (!this.powered) return "off";
    if (this.haltedWith !== undefined) return "halted";
    if (this.asleep) return "sleeping";
    return this.agent.phase === "running" ? "awake" : "booting";
  }

  protected cancelWake(): void {
    this.wakeTimer?.cancel();
    this.wakeTimer = undefined;
  }

  private deepSleep(ms: number | null): void {
    if (this.closing) return;
    this.asleep = true;
    this.emit({ type: "deepsleep", ms });
    this.refresh();
    this.cancelWake();
    if (ms === null) return;
    this.wakeTimer = this.clock.setTimer(ms, () => {
      this.wakeTimer = undefined;
      if (!this.closing && this.asleep) this.wakeUp();
    });
  }
}
