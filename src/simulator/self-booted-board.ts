import type { AgentDevice } from "../agent-host/agent-device.ts";
import type { Timer } from "../net/clock.ts";
import { SimulatedBoard } from "./simulated-board.ts";
import type { SimulatedStatus } from "./simulated-events.ts";

/**
 * A board whose one {@link AgentDevice} it boots itself (the agent restarts
 * nothing on its own): the ESP32, which runs ESP-IDF's bootloader at every
 * reset, and the Pico W. Shared: the deep sleep and its wake timer, the
 * status from power, halt, sleep and the agent's phase, and main.py's end
 * (MicroPython sits at the REPL; nothing resets the chip). A subclass says
 * how the chip boots after a deep sleep (`wakeUp`).
 */
export abstract class SelfBootedBoard extends SimulatedBoard {
  abstract readonly agent: AgentDevice;
  protected asleep = false;
  protected powered = false;
  private wakeTimer: Timer | undefined;

  /** Boots the chip as its deep-sleep wake does. */
  protected abstract wakeUp(): void;

  /** Fires the timer of a sleeping device now (a deep-sleep wake). Does nothing unless it sleeps. */
  wake(): void {
    if (this.closing || !this.asleep) return;
    this.cancelWake();
    this.wakeUp();
  }

  /** Wires the agent's deep sleep and main.py's end; its reset is the subclass's. */
  protected wireSleepAndEnd(agent: AgentDevice): void {
    agent.on("deepsleep", ({ ms }) => this.deepSleep(ms));
    agent.on("ended", (end) => {
      if (end.kind === "exit") this.halt("main.py ended; the board sits at the REPL");
      else if (end.kind === "crash") this.halt(`main.py raised: ${end.error}`);
    });
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
