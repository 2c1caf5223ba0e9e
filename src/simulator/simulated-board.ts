import type { AgentDevice } from "../agent-host/agent-device.ts";
import type { AgentDeviceOptions } from "../agent-host/agent-device-options.ts";
import type { BrokerAddress } from "../agent-host/broker-address.ts";
import type { PublishedMessage } from "../agent-host/mqtt-packets.ts";
import { Listeners } from "../emulator/listeners.ts";
import type { Clock } from "../net/clock.ts";
import type { SimulatedDeviceEvents, SimulatedEvent, SimulatedStatus } from "./simulated-events.ts";
import { SimulatorError } from "./simulator-error.ts";

function parseJson(payload: Buffer): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(payload.toString("utf8"));
    return typeof value === "object" && value !== null ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** What a board's options say of its agent, as every board takes them. */
export interface BoardAgentOptions {
  broker: string | BrokerAddress;
  awakeMs?: number;
  cmdWaitMs?: number;
  agent?: { wifi?: AgentDeviceOptions["wifi"] };
}

/**
 * What every simulated board shares (the ESP8266 with yaota8266, the
 * ESP32 with its bootloader, the Pico W): the event stream and status,
 * waiting for them, the options every board gives its agent, and the
 * agent's output, check-ins, acks and failures turned into events. A
 * subclass says what the board is doing (`derivedStatus`).
 */
export abstract class SimulatedBoard {
  readonly events = new Listeners<SimulatedDeviceEvents>();
  abstract readonly id: string;
  /** The IP the agent reports. */
  abstract readonly address: string;
  abstract readonly sleepSeconds: number;

  protected abstract readonly clock: Clock;
  protected abstract readonly baseTopic: string;
  protected closing = false;
  protected haltedWith: string | undefined;
  protected checkinCount = 0;
  private currentStatus: SimulatedStatus = "off";

  get status(): SimulatedStatus {
    return this.currentStatus;
  }

  /** Resolves when the device next reaches `status` (at once if it is there); rejects after `timeoutMs`. */
  waitForStatus(status: SimulatedStatus, timeoutMs = 30_000): Promise<void> {
    if (this.currentStatus === status) return Promise.resolve();
    const reached = (e: SimulatedDeviceEvents["status"]): e is SimulatedDeviceEvents["status"] =>
      e.status === status;
    return this.waitFor("status", reached, timeoutMs).then(() => undefined);
  }

  /** Resolves with the next event of `type` that matches `filter`; rejects after `timeoutMs`. */
  waitForEvent<T extends SimulatedEvent["type"]>(
    type: T,
    filter: (event: Extract<SimulatedEvent, { type: T }>) => boolean = () => true,
    timeoutMs = 30_000,
  ): Promise<Extract<SimulatedEvent, { type: T }>> {
    type Event = SimulatedDeviceEvents["event"];
    type Wanted = Event & Extract<SimulatedEvent, { type: T }>;
    const isWanted = (e: Event): e is Wanted => e.type === type && filter(e as Wanted);
    return this.waitFor<"event", Wanted>("event", isWanted, timeoutMs);
  }

  /** What the board is doing now, from its parts. */
  protected abstract derivedStatus(): SimulatedStatus;

  /**
   * The agent options every board sets the same way, over what the caller
   * passes through: who the agent is, where it reports, its IP, and that the
   * board, not the agent, decides what boots after a reset or a deep sleep.
   */
  protected agentOptions(o: BoardAgentOptions): AgentDeviceOptions {
    return {
      broker: o.broker,
      id: this.id,
      sleepSeconds: this.sleepSeconds,
      baseTopic: this.baseTopic,
      wifi: { ...o.agent?.wifi, ip: this.address },
      clock: this.clock,
      autoWake: false,
      autoRestart: false,
      ...(o.awakeMs !== undefined ? { awakeMs: o.awakeMs } : {}),
      ...(o.cmdWaitMs !== undefined ? { cmdWaitMs: o.cmdWaitMs } : {}),
    };
  }

  /** Events from the agent every board reports the same way. */
  protected wireAgent(agent: AgentDevice): void {
    agent.on("published", (m) => this.published(m));
    agent.on("stdout", (line) => this.emit({ type: "output", line }));
    agent.on("booted", () => this.refresh());
    agent.on("failure", (error) => {
      if (this.closing) return;
      // A dead worker leaves the agent halted; a failed host call (answered EIO) does not stop it.
      if (agent.phase === "halted") this.halt(`the simulated app failed: ${error.message}`);
      else this.emit({ type: "warning", message: `the simulated app's host call failed: ${error.message}` });
    });
  }

  protected halt(reason: string): void {
    this.haltedWith = reason;
    this.emit({ type: "halted", reason });
    this.refresh();
  }

  protected refresh(): void {
    if (this.closing) return;
    this.setStatus(this.derivedStatus());
  }

  protected setStatus(status: SimulatedStatus): void {
    const previous = this.currentStatus;
    if (previous === status) return;
    this.currentStatus = status;
    this.events.emit("status", { status, previous, atMs: this.clock.now() });
  }

  protected emit(event: SimulatedEvent): void {
    this.events.emit("event", { ...event, atMs: this.clock.now() });
  }

  private published(message: PublishedMessage): void {
    const prefix = `${this.baseTopic}/${this.id}/`;
    if (!message.topic.startsWith(prefix)) return;
    const sub = message.topic.slice(prefix.length);
    if (sub === "state") {
      this.checkinCount++;
      this.emit({ type: "checkin", state: parseJson(message.payload) ?? {} });
    } else if (sub === "ack") {
      this.emit({ type: "ack", ack: parseJson(message.payload) ?? {} });
    }
  }

  private waitFor<K extends keyof SimulatedDeviceEvents, R extends SimulatedDeviceEvents[K]>(
    name: K,
    filter: (payload: SimulatedDeviceEvents[K]) => payload is R,
    timeoutMs: number,
  ): Promise<R> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        reject(
          new SimulatorError(
            `Simulated device ${this.id}: nothing matching on "${String(name)}" within ${timeoutMs} ms (status ${this.currentStatus}${this.haltedWith ? `: ${this.haltedWith}` : ""}).`,
          ),
        );
      }, timeoutMs);
      const off = this.events.on(name, (payload) => {
        if (!filter(payload)) return;
        clearTimeout(timer);
        off();
        resolve(payload);
      });
    });
  }
}
