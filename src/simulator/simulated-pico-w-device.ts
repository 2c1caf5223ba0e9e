import { BOARD_PORTS } from "../agent-host/board-ports.ts";
import { DeviceFilesystem } from "../agent-host/device-filesystem.ts";
import { PICO_W_FS_BYTES } from "../agent-host/python-rp2-fakes.ts";
import { SelfBootedBoard, type SelfBootedOptions } from "./self-booted-board.ts";

export type SimulatedPicoWOptions = SelfBootedOptions;

const RP2 = BOARD_PORTS.rp2;

/**
 * One simulated Raspberry Pi Pico W (MicroPython's RPI_PICO_W build): the
 * real agent, loader and app updater under MicroPython with the rp2 port's
 * modules (python-rp2-fakes.ts) on a LittleFS filesystem of 848 KiB. There
 * is no bootloader to model and no firmware mpota updates: machine.reset()
 * reboots through the watchdog, and a deep sleep is a light sleep ended by
 * that same reboot, so every boot after the first says WDT_RESET. Its `fw`
 * is what the agent reports (the MicroPython build), from its check-ins.
 */
export class SimulatedPicoWDevice extends SelfBootedBoard {
  constructor(options: SimulatedPicoWOptions) {
    super(options, {
      chip: "rp2",
      defaults: { filesystem: new DeviceFilesystem({ kind: "littlefs", capacity: PICO_W_FS_BYTES }) },
    });
    this.events.on("event", (e) => {
      if (e.type === "checkin" && typeof e.state.fw === "string") this.runningFw = e.state.fw;
    });
  }

  /** Power-on: PWRON_RESET. */
  protected powerOn(): void {
    this.boot(RP2.powerOnCause);
  }

  /** machine.reset() reboots through the watchdog. */
  protected softReset(): void {
    this.boot(RP2.resetCause);
  }

  /** The light sleep ends in a watchdog reboot. */
  protected wakeUp(): void {
    this.boot(RP2.wakeCause);
  }

  private boot(cause: number): void {
    if (!this.beginBoot()) return;
    void this.runAgent(cause);
    this.refresh();
  }
}
