import { Esp32Board } from "../emulator/esp32-board.ts";
import { ESP32_RESET_CAUSE, type Esp32ResetKind } from "../emulator/esp32-bootloader.ts";
import type { Esp32PartitionTable } from "../emulator/esp32-partition-table.ts";
import { SelfBootedBoard, type SelfBootedOptions } from "./self-booted-board.ts";
import { ESP32_WAKE_NAMES } from "./simulated-events.ts";
import { SimulatorError } from "./simulator-error.ts";

/**
 * What a firmware does when the bootloader starts it: `ok` runs MicroPython
 * (boot.py, main.py: the agent); `crash` panics in C before Python runs (the
 * chip resets with ESP_RST_PANIC, so the agent never confirms it);
 * `no-wifi` runs the agent but WLAN never connects.
 */
export type FirmwareBehaviour = "ok" | "crash" | "no-wifi";

export interface SimulatedEsp32Options extends SelfBootedOptions {
  /** The board (default a fresh one with `table`); keep it to read otadata and flash. */
  board?: Esp32Board;
  /** Default the OTA variant's table; ESP32_FACTORY_TABLE for a board with one app slot. */
  table?: Esp32PartitionTable;
  /** Written to the first app partition (ota_0, or factory) before the first power-on, as a serial flash. */
  firmware?: Uint8Array;
  /** By firmware identity (the first 32 hex digits of its ELF SHA-256): what it does at boot; default "ok". */
  behaviour?: Record<string, FirmwareBehaviour>;
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
  readonly board: Esp32Board;
  private readonly behaviour: Record<string, FirmwareBehaviour>;
  private panics = 0;

  constructor(options: SimulatedEsp32Options) {
    const board = options.board ?? new Esp32Board(options.table ? { table: options.table } : {});
    if (options.firmware) {
      const first = board.partitions().find((p) => p.type === 0);
      if (!first) throw new SimulatorError(`The ${board.table.name} table has no app partition.`);
      board.writeImage(first.label, options.firmware);
    }
    super(options, { chip: "esp32", esp32: board });
    this.board = board;
    this.behaviour = { ...options.behaviour };
  }

  /** Sets what the firmware of identity `fw` does at its next boots. */
  setBehaviour(fw: string, behaviour: FirmwareBehaviour): void {
    this.behaviour[fw] = behaviour;
  }

  /** Powers on: the bootloader decides, then the chosen firmware starts. */
  protected powerOn(): void {
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

  /** machine.reset() is a software reset, through the bootloader. */
  protected softReset(): void {
    this.boot("software");
  }

  protected override powerOff(): void {
    this.board.powerOff();
  }

  /** The RTC timer fires: the bootloader boots the partition that ran before, without reading otadata. */
  protected wakeUp(): void {
    this.boot("deepsleep");
  }

  private boot(kind: Esp32ResetKind): void {
    if (!this.beginBoot()) return;
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
      this.clock.setTimer(0, () => this.boot("panic"));
      return;
    }
    this.panics = 0;
    this.agent.wifi = { connected: behaviour !== "no-wifi" };
    const start = () => this.runAgent(resetCause);
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
