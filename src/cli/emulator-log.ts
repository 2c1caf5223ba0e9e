// The emulator's printed log: timestamped lines or JSON, repeats and "Unexpected offset" drops counted.
import type { DeviceLogEntry } from "../emulator/device-events.ts";
import { DROP_MESSAGES } from "../emulator/receiver.ts";
import type { CliIo } from "./io.ts";

function clockTime(): string {
  return new Date().toISOString().slice(11, 23);
}

/** Prints the device's log: timestamped lines, or one JSON object per line. */
export class EmulatorLog {
  private repeated = 0;
  private last = "";
  /** "Unexpected offset" drops in this OTA session (shown once, then counted). */
  private unexpected = 0;

  constructor(
    private readonly io: CliIo,
    private readonly json: boolean,
  ) {}

  entry = (e: DeviceLogEntry): void => {
    if (this.json) {
      this.emit({ type: "log", source: e.source, message: e.message });
      return;
    }
    // Sector writes show up as progress lines instead.
    if (e.source === "ota-server" && e.message.startsWith("Writing ")) return;
    if (e.source === "ota-server" && e.message === DROP_MESSAGES["unexpected-offset"]) {
      // The real receiver logs every datagram that is ahead of the one it
      // expects; a pipelined sender has several in flight, so a healthy push
      // shows dozens. Explain the first, count the rest.
      if (this.unexpected++ === 0) {
        this.line(
          "ota-server: Unexpected offset: a datagram ahead of the one the receiver expects, dropped as the real receiver does. Normal while a pipelined sender (mpota push) keeps several in flight: it sends them again. Further ones are counted, not shown.",
        );
      }
      return;
    }
    this.line(e.source === "emulator" ? e.message : `${e.source}: ${e.message}`);
  };

  /** The "Unexpected offset" drops counted since the last call. */
  takeUnexpected(): number {
    const n = this.unexpected;
    this.unexpected = 0;
    return n;
  }

  line(text: string): void {
    if (text === this.last) {
      this.repeated++;
      return;
    }
    this.flush();
    this.last = text;
    this.io.out(`${clockTime()}  ${text}\n`);
  }

  emit(event: Record<string, unknown>): void {
    this.io.out(`${JSON.stringify({ time: new Date().toISOString(), ...event })}\n`);
  }

  flush(): void {
    if (this.repeated > 0)
      this.io.out(`${clockTime()}  (last message repeated ${this.repeated} more times)\n`);
    this.repeated = 0;
    this.last = "";
  }
}
