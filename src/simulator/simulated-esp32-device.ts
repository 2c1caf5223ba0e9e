import { AgentDevice } from "../agent-host/agent-device.ts";
import type { AgentDeviceOptions } from "../agent-host/agent-device-options.ts";
import type { BrokerAddress } from "../agent-host/broker-address.ts";
import { Esp32Board } from "../emulator/esp32-board.ts";
import { ESP32_RESET_CAUSE, type Esp32ResetKind } from "../emulator/esp32-bootloader.ts";
import type { Esp32PartitionTable } from "../emulator/esp32-partition-table.ts";
import { type Clock, systemClock } from "../net/clock.ts";
import { SelfBootedBoard } from "./self-booted-board.ts";
import type { SimulatedDeviceSummary } from "./simulated-device.ts";
import { ESP32_WAKE_NAMES } from "./simulated-events.ts";
import { SimulatorError } from "./simulator-error.ts";

/**
 * What a firmware does when the bootloader starts it: `ok` runs MicroPython
 * (boot.py, main.py: the agent); `crash` panics in C before Python runs (the
 * chip resets with ESP_RST_PANIC, so the agent never confirms it);
 * `no-wifi` runs the agent but WLAN never connects.
 */
export type FirmwareBehaviour = "ok" | "crash" | "no-wifi";

export interface SimulatedEsp32Options {
  /** DEVICE_ID of the agent. */
  id: string;
  broker: string | BrokerAddress;
  /** The board (default a fresh one with `table`); keep it to read otadata and flash. */
  board?: Esp32Board;
  /** Default the OTA variant's table; ESP32_FACTORY_TABLE for a board with one app slot. */
  table?: Esp32PartitionTable;
  /** Written to the first app partition (ota_0, or factory) before the first power-on, as a serial flash. */
  firmware?: Uint8Array;
  /** By firmware identity (the first 32 hex digits of its ELF SHA-256): what it does at boot; default "ok". */
  behaviour?: Record<string, FirmwareBehaviour>;
  /** The IP the agent reports (default 127.0.0.1). */
  address?: string;
  sleepSeconds?: number;
  awakeMs?: number;
  baseTopic?: string;
  cmdWaitMs?: number;
  /** More AgentDevice options (battery, config entries, files, ...). */
  agent?: Partial<Omit<AgentDeviceOptions, "broker" | "chip" | "esp32" | "id" | "autoWake" | "autoRestart">>;
  clock?: Clock;
}

/** Panics in a row after which the simulation stops a boot loop. */
const MAX_PANICS = 8;

/**
 * One simulated ESP32 (MicroPython's OTA variant by default): the emulated
 * board (flash, partition table, otadata, ESP-IDF's bootloader with rollback
 * and the deep-sleep fast boot) whose app is the real agent under
 * MicroPython. Every reset goes through the bootloader: `machine.reset()` is
 * a software reset, a deep-sleep wake boots the partition that ran before
 * without reading otadata, and a firmware whose behaviour is `crash` panics
 * so the bootloader rolls back at the next boot.
 */
export class SimulatedEsp32Device extends SelfBootedBoard {
  readonly id: string;
  readonly board: Esp32Board;
  readonly agent: AgentDevice;
  readonly sleepSeconds: number;
  /** The IP the agent reports (an ESP32 binds no UDP port: it pulls its updates). */
  readonly address: string;
  protected readonly clock: Clock;
  protected readonly baseTopic: string;
  private readonly behaviour: Record<string, FirmwareBehaviour>;
  private runningFw: string | undefined;
  private updateCount = 0;
  private bootCount = 0;
  private panics = 0;

  constructor(options: SimulatedEsp32Options) {
    super();
    this.id = options.id;
    this.clock = options.clock ?? systemClock;
    this.baseTopic = options.baseTopic ?? "mpota";
    this.sleepSeconds = options.sleepSeconds ?? 0;
    this.behaviour = { ...options.behaviour };
    this.address = options.address ?? "127.0.0.1";
    this.board = options.board ?? new Esp32Board(options.table ? { table: options.table } : {});
    if (options.firmware) {
      const first = this.board.partitions().find((p) => p.type === 0);
      if (!first) throw new SimulatorError(`The ${this.board.table.name} table has no app partition.`);
      this.board.writeImage(first.label, options.firmware);
    }
    this.agent = new AgentDevice({
      ...options.agent,
      broker: options.broker,
      chip: "esp32",
      esp32: this.board,
      id: options.id,
      sleepSeconds: this.sleepSeconds,
      baseTopic: this.baseTopic,
      wifi: { ...options.agent?.wifi, ip: this.address },
      clock: this.clock,
      autoWake: false,
      autoRestart: false,
      ...(options.awakeMs !== undefined ? { awakeMs: options.awakeMs } : {}),
      ...(options.cmdWaitMs !== undefined ? { cmdWaitMs: options.cmdWaitMs } : {}),
    });
    this.wireAgent(this.agent);
    this.agent.on("reset", () => this.chipReset("software"));
    this.wireSleepAndEnd(this.agent);
  }

  /** The identity (first 32 hex digits of the ELF SHA-256) of the app that runs or ran last. */
  get fw(): string | undefined {
    return this.runningFw;
  }

  /** Times the chip reset (power-on included). */
  get boots(): number {
    return this.bootCount;
  }

  /** Times a different firmware booted. */
  get updates(): number {
    return this.updateCount;
  }

  /** One line for tables and `--json`, as the ESP8266's (port 0 and link "none": an ESP32 pulls over TCP). */
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

  /** Sets what the firmware of identity `fw` does at its next boots. */
  setBehaviour(fw: string, behaviour: FirmwareBehaviour): void {
    this.behaviour[fw] = behaviour;
  }

  /** Powers on: the bootloader decides, then the chosen firmware starts. */
  async start(): Promise<void> {
    if (this.closing) throw new SimulatorError(`Simulated device ${this.id} was stopped; create a new one.`);
    this.emit({ type: "power-on" });
    this.powered = true;
    this.agent.rtc = new Uint8Array(0);
    this.boot("power-on");
  }

  /**
   * Resets the chip from outside while the app runs wherever it is (no
   * cleanup runs): "power-on" as the EN button or a power cut (RTC memory is
   * lost), "watchdog", "panic", or "software".
   */
  async reset(kind: Esp32ResetKind = "power-on"): Promise<void> {
    this.cancelWake();
    const rtc = this.agent.rtc;
    if (this.agent.phase !== "off") await this.agent.powerOff();
    // Only a power-on reset loses RTC memory; stopping the interpreter must not.
    if (kind !== "power-on") this.agent.rtc = rtc;
    else this.emit({ type: "power-off" });
    this.boot(kind);
  }

  /** Powers off for good and releases the worker. */
  async stop(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.cancelWake();
    await this.agent.close();
    this.board.powerOff();
    this.powered = false;
    this.setStatus("off");
  }

  /** The RTC timer fires: the bootloader boots the partition that ran before, without reading otadata. */
  protected wakeUp(): void {
    this.boot("deepsleep");
  }

  private chipReset(kind: Esp32ResetKind): void {
    if (this.closing) return;
    this.boot(kind);
  }

  private boot(kind: Esp32ResetKind): void {
    if (this.closing) return;
    this.asleep = false;
    this.haltedWith = undefined;
    this.bootCount++;
    if (kind === "power-on") this.agent.rtc = new Uint8Array(0);
    const result = this.board.boot(kind);
    const resetCause = ESP32_RESET_CAUSE[kind];
    const partition = result.partition?.label ?? null;
    this.emit({ type: "esp32-boot", partition, fastBoot: result.fastBoot, log: result.log, resetCause });
    if (!partition) {
      this.halt("the bootloader found no bootable app (it resets again and again)");
      return;
    }
    const fw = this.board.elfSha256(partition)?.slice(0, 32);
    const previous = this.runningFw;
    this.runningFw = fw;
    this.emit({
      type: "app-start",
      fw,
      checked: !result.fastBoot,
      wake: ESP32_WAKE_NAMES[resetCause] ?? "other",
    });
    if (fw !== previous && previous !== undefined) {
      this.updateCount++;
      this.emit({ type: "firmware-changed", from: previous, to: fw });
    }
    const behaviour = (fw && this.behaviour[fw]) ?? "ok";
    if (behaviour === "crash") {
      this.panics++;
      this.emit({
        type: "panic",
        fw,
        message: "Guru Meditation Error: Core 0 panic'ed (the firmware crashes at start-up)",
      });
      if (this.panics >= MAX_PANICS) {
        this.halt(`boot loop: ${this.panics} panics in a row`);
        return;
      }
      // The panic handler restarts the chip: ESP_RST_PANIC, through the bootloader again.
      this.clock.setTimer(0, () => this.chipReset("panic"));
      return;
    }
    this.panics = 0;
    this.agent.wifi = { connected: behaviour !== "no-wifi" };
    const start = () =>
      this.agent.boot(resetCause).then(
        () => this.refresh(),
        (error: unknown) => {
          if (!this.closing) this.halt(`the app did not boot: ${(error as Error).message}`);
        },
      );
    // The board's modelled boot (bootloader, MicroPython, WiFi); none by default.
    const bootMs = this.board.timing.bootMs;
    if (bootMs > 0) {
      this.clock.setTimer(bootMs, () => {
        if (!this.closing) void start();
      });
    } else void start();
    this.refresh();
  }
}
