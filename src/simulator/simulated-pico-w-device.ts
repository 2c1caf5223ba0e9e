import { AgentDevice } from "../agent-host/agent-device.ts";
import type { AgentDeviceOptions } from "../agent-host/agent-device-options.ts";
import { BOARD_PORTS } from "../agent-host/board-ports.ts";
import type { BrokerAddress } from "../agent-host/broker-address.ts";
import { DeviceFilesystem } from "../agent-host/device-filesystem.ts";
import { PICO_W_FS_BYTES } from "../agent-host/python-rp2-fakes.ts";
import { type Clock, systemClock } from "../net/clock.ts";
import { SelfBootedBoard } from "./self-booted-board.ts";
import type { SimulatedDeviceSummary } from "./simulated-device.ts";
import { SimulatorError } from "./simulator-error.ts";

export interface SimulatedPicoWOptions {
  /** DEVICE_ID of the agent. */
  id: string;
  broker: string | BrokerAddress;
  /** The IP the agent reports (default 127.0.0.1). */
  address?: string;
  sleepSeconds?: number;
  baseTopic?: string;
  cmdWaitMs?: number;
  /** More AgentDevice options (app keys, config entries, files, ...). */
  agent?: Partial<Omit<AgentDeviceOptions, "broker" | "chip" | "esp32" | "id" | "autoWake" | "autoRestart">>;
  clock?: Clock;
}

const RP2 = BOARD_PORTS.rp2;

/**
 * One simulated Raspberry Pi Pico W (MicroPython's RPI_PICO_W build): the
 * real agent, loader and app updater under MicroPython with the rp2 port's
 * modules (python-rp2-fakes.ts) on a LittleFS filesystem of 848 KiB. There
 * is no bootloader to model and no firmware mpota updates: machine.reset()
 * reboots through the watchdog, and a deep sleep is a light sleep ended by
 * that same reboot, so every boot after the first says WDT_RESET.
 */
export class SimulatedPicoWDevice extends SelfBootedBoard {
  readonly id: string;
  readonly agent: AgentDevice;
  readonly sleepSeconds: number;
  readonly address: string;
  protected readonly clock: Clock;
  protected readonly baseTopic: string;
  private bootCount = 0;
  private lastFw: string | undefined;

  constructor(options: SimulatedPicoWOptions) {
    super();
    this.id = options.id;
    this.clock = options.clock ?? systemClock;
    this.baseTopic = options.baseTopic ?? "mpota";
    this.sleepSeconds = options.sleepSeconds ?? 0;
    this.address = options.address ?? "127.0.0.1";
    this.agent = new AgentDevice({
      filesystem: new DeviceFilesystem({ kind: "littlefs", capacity: PICO_W_FS_BYTES }),
      ...options.agent,
      broker: options.broker,
      chip: "rp2",
      id: options.id,
      sleepSeconds: this.sleepSeconds,
      baseTopic: this.baseTopic,
      wifi: { ...options.agent?.wifi, ip: this.address },
      clock: this.clock,
      autoWake: false,
      autoRestart: false,
      ...(options.cmdWaitMs !== undefined ? { cmdWaitMs: options.cmdWaitMs } : {}),
    });
    this.wireAgent(this.agent);
    this.events.on("event", (e) => {
      if (e.type === "checkin" && typeof e.state.fw === "string") this.lastFw = e.state.fw;
    });
    this.agent.on("reset", () => this.boot(RP2.resetCause));
    this.wireSleepAndEnd(this.agent);
  }

  /** Times the chip started (power-on included). */
  get boots(): number {
    return this.bootCount;
  }

  /** One line for tables and `--json`, as the other boards' (port 0, link "none": it pulls over HTTP). */
  summary(): SimulatedDeviceSummary {
    return {
      id: this.id,
      address: this.address,
      port: 0,
      status: this.status,
      fw: this.lastFw ?? null,
      sleepSeconds: this.sleepSeconds,
      link: "none",
      boots: this.bootCount,
      checkins: this.checkinCount,
      updates: 0,
    };
  }

  /** Powers on (PWRON_RESET). */
  async start(): Promise<void> {
    if (this.closing) throw new SimulatorError(`Simulated device ${this.id} was stopped; create a new one.`);
    this.emit({ type: "power-on" });
    this.powered = true;
    this.boot(RP2.powerOnCause);
  }

  /** Powers off for good and releases the worker. */
  async stop(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.cancelWake();
    await this.agent.close();
    this.powered = false;
    this.setStatus("off");
  }

  /** The light sleep ends in a watchdog reboot. */
  protected wakeUp(): void {
    this.boot(RP2.wakeCause);
  }

  private boot(cause: number): void {
    if (this.closing) return;
    this.asleep = false;
    this.haltedWith = undefined;
    this.bootCount++;
    this.agent.boot(cause).then(
      () => this.refresh(),
      (error: unknown) => {
        if (!this.closing) this.halt(`the app did not boot: ${(error as Error).message}`);
      },
    );
    this.refresh();
  }
}
