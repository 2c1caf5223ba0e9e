import cliProgress from "cli-progress";
import type { PushEvent, PushStats } from "../transfer/sender.ts";
import type { CliIo } from "./io.ts";

export type ProgressMode = "bar" | "lines" | "json";

const kb = (bytes: number) => (bytes / 1024).toFixed(1);

function rate(stats: PushStats): number {
  return stats.elapsedMs > 0 ? stats.ackedBytes / (stats.elapsedMs / 1000) : 0;
}

/** Summary line for a finished push. */
export function describeResult(stats: PushStats): string {
  return `${stats.totalBytes} bytes in ${(stats.elapsedMs / 1000).toFixed(1)} s (${kb(rate(stats))} KiB/s), ${stats.datagramsSent} datagrams, ${stats.retransmits} retransmitted`;
}

/**
 * Shows a push as it happens: a progress bar on a terminal (bytes, rate,
 * retransmits), a line per 10 % otherwise, or JSON lines with --json.
 */
export class PushProgress {
  private bar: cliProgress.SingleBar | undefined;
  private lastDecile = -1;

  constructor(
    private readonly io: CliIo,
    private readonly mode: ProgressMode,
    private readonly target: string,
  ) {}

  handle = (event: PushEvent): void => {
    if (this.mode === "json") {
      this.io.out(`${JSON.stringify({ ...event, target: this.target })}\n`);
      return;
    }
    switch (event.type) {
      case "waiting":
        if (event.attempt === 1 || event.attempt % 20 === 0) {
          this.io.err(
            `waiting for ${this.target} to answer (${(event.elapsedMs / 1000).toFixed(0)} s)${event.unreachable ? ": nothing listens there yet" : ""}...\n`,
          );
        }
        break;
      case "started":
        this.io.err(`${this.target} answered after ${(event.elapsedMs / 1000).toFixed(1)} s; sending\n`);
        if (this.mode === "bar") {
          this.bar = new cliProgress.SingleBar(
            {
              stream: this.io.stderr,
              format:
                "{bar} {percentage}% | {done}/{all} KiB | {rate} KiB/s | {rexmit} rexmit | ETA {eta_formatted}",
              hideCursor: true,
              etaBuffer: 50,
            },
            cliProgress.Presets.shades_classic,
          );
          this.bar.start(1, 0, { done: "0.0", all: "?", rate: "0.0", rexmit: 0 });
        }
        break;
      case "progress":
        if (this.bar) {
          this.bar.setTotal(event.totalBytes);
          this.bar.update(event.ackedBytes, {
            done: kb(event.ackedBytes),
            all: kb(event.totalBytes),
            rate: kb(rate(event)),
            rexmit: event.retransmits,
          });
        } else {
          const decile = Math.floor((event.ackedBytes / event.totalBytes) * 10);
          if (decile > this.lastDecile) {
            this.lastDecile = decile;
            this.io.err(
              `${decile * 10}% ${event.ackedBytes}/${event.totalBytes} bytes, ${kb(rate(event))} KiB/s, ${event.retransmits} retransmitted\n`,
            );
          }
        }
        break;
      case "finishing":
        this.bar?.stop();
        this.bar = undefined;
        break;
      case "done":
        break;
    }
  };

  stop(): void {
    this.bar?.stop();
    this.bar = undefined;
  }
}
