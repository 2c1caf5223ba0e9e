// Runs the emulator until stopped: signals, and command lines from a pipe, a file or the terminal in the foreground.
import { fstatSync } from "node:fs";
import { createInterface } from "node:readline";
import { isatty, ReadStream } from "node:tty";
import type { EmulatedDevice } from "../emulator/device.ts";
import type { EmulateCommandOptions, EmulateDeps } from "./emulate-options.ts";
import { consoleCommand } from "./emulator-commands.ts";
import type { EmulatorLog } from "./emulator-log.ts";
import { inTerminalForeground } from "./terminal-foreground.ts";

/** Where the console's command lines come from: a stream (pipe, file, test), or the terminal. */
type ConsoleInput = { kind: "stream"; stream: NodeJS.ReadableStream } | { kind: "terminal" } | undefined;

function consoleInput(options: EmulateCommandOptions, deps: EmulateDeps): ConsoleInput {
  if (options.console === false) return undefined;
  if (deps.stdin !== undefined) return deps.stdin ? { kind: "stream", stream: deps.stdin } : undefined;
  if (deps.openTerminal || isatty(0)) return { kind: "terminal" };
  try {
    const stat = fstatSync(0);
    return stat.isFIFO() || stat.isFile() || stat.isSocket()
      ? { kind: "stream", stream: process.stdin }
      : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Reads commands from the terminal only while the emulator is the
 * terminal's foreground job. Started with `&` from an interactive shell, a
 * read would get it stopped by the shell (SIGTTIN, "Stopped (tty input)")
 * and the device would go silent; so in the background it keeps the
 * terminal closed, and opens it when brought back with `fg`.
 */
class TerminalConsole {
  private stream: (NodeJS.ReadableStream & { destroy(): void }) | undefined;
  private lines: ReturnType<typeof createInterface> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private saidBackground = false;

  constructor(
    private readonly open: () => NodeJS.ReadableStream & { destroy(): void },
    private readonly foreground: () => boolean | undefined,
    private readonly onLine: (line: string) => void,
    private readonly log: EmulatorLog,
  ) {}

  start(pollMs: number): void {
    this.check();
    this.timer = setInterval(() => this.check(), pollMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.detach();
  }

  private check(): void {
    // When the OS cannot tell, behave as a foreground program.
    const inForeground = this.foreground() !== false;
    if (inForeground && !this.lines) {
      if (this.saidBackground) this.log.line("in the foreground: reading commands from the terminal");
      this.saidBackground = false;
      this.stream = this.open();
      this.lines = createInterface({ input: this.stream, terminal: false });
      this.lines.on("line", this.onLine);
    } else if (!inForeground && !this.saidBackground) {
      this.detach();
      this.saidBackground = true;
      this.log.line(
        `running in the background: commands are not read from the terminal (fg brings the emulator back to type them); stop it with kill ${process.pid}`,
      );
    }
  }

  private detach(): void {
    this.lines?.close();
    this.lines = undefined;
    this.stream?.destroy();
    this.stream = undefined;
  }
}

export function runUntilStopped(
  device: EmulatedDevice,
  log: EmulatorLog,
  options: EmulateCommandOptions,
  deps: EmulateDeps,
  cleanups: Array<() => void>,
): Promise<void> {
  const rtcMagic = options.rtcMagic;
  return new Promise((resolve) => {
    const stop = () => resolve();
    const onSignal = () => {
      log.line("signal received, stopping");
      stop();
    };
    process.once("SIGINT", onSignal);
    process.once("SIGTERM", onSignal);
    cleanups.push(() => {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
    });
    if (deps.stop) {
      if (deps.stop.aborted) stop();
      deps.stop.addEventListener("abort", stop, { once: true });
      cleanups.push(() => deps.stop?.removeEventListener("abort", stop));
    }
    const onLine = (line: string) => {
      if (consoleCommand(device, log, line.trim().toLowerCase(), rtcMagic) === "quit") stop();
    };
    const input = consoleInput(options, deps);
    if (input?.kind === "stream") {
      const lines = createInterface({ input: input.stream, terminal: false });
      lines.on("line", onLine);
      cleanups.push(() => lines.close());
    } else if (input?.kind === "terminal") {
      const terminal = new TerminalConsole(
        deps.openTerminal ?? (() => new ReadStream(0)),
        deps.foreground ?? (() => inTerminalForeground()),
        onLine,
        log,
      );
      terminal.start(deps.foregroundPollMs ?? 500);
      cleanups.push(() => terminal.stop());
    }
  });
}
