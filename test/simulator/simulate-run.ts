import assert from "node:assert/strict";
import { Command, CommanderError } from "commander";
import { MemoryIo } from "../../src/cli/io.ts";
import { registerSimulateCommand } from "../../src/cli/simulate.ts";
import type { SimulateDeps } from "../../src/cli/simulate-options.ts";
import { MpotaError } from "../../src/errors.ts";
import { FAST, SHORT_GPIO } from "./support.ts";

// `mpota simulate` through its own commander program (registered in src/cli/commands.ts by the lead).

export interface Run {
  code: number;
  io: MemoryIo;
  error?: unknown;
}

/** Runs `mpota simulate ARGS` in-process as main() would: MpotaError -> its exit code. */
export async function simulate(args: string[], deps: SimulateDeps = {}, io = new MemoryIo()): Promise<Run> {
  const program = new Command("mpota").exitOverride().configureOutput({
    writeOut: (s) => io.out(s),
    writeErr: (s) => io.err(s),
  });
  registerSimulateCommand(program, io, { timing: FAST, settings: SHORT_GPIO, ...deps });
  for (const cmd of program.commands) {
    cmd.exitOverride().configureOutput({ writeOut: (s) => io.out(s), writeErr: (s) => io.err(s) });
  }
  try {
    await program.parseAsync(["node", "mpota", "simulate", ...args]);
    return { code: 0, io };
  } catch (error) {
    if (error instanceof CommanderError) return { code: error.exitCode === 0 ? 0 : 2, io, error };
    if (error instanceof MpotaError) {
      io.err(`mpota: ${error.message}\n`);
      return { code: error.exitCode, io, error };
    }
    throw error;
  }
}

/** Starts `mpota simulate ARGS` in the background; aborting `stop` ends it as Ctrl-C would. */
export function startSimulate(
  args: string[],
  deps: SimulateDeps = {},
): { stop: AbortController; io: MemoryIo; running: Promise<Run> } {
  const stop = new AbortController();
  const io = new MemoryIo();
  return { stop, io, running: simulate(args, { ...deps, stop: stop.signal }, io) };
}

/**
 * Ends a run against a test server: stops it as Ctrl-C would, then the
 * bridge and the server, removes the data, and asserts the run exited 0.
 */
export async function endServerRun(
  run: { stop: AbortController; running: Promise<Run> | undefined; io: MemoryIo },
  server: { bridge: { close(): Promise<void> }; s: { stop(): Promise<void> }; data: { remove(): void } },
): Promise<void> {
  run.stop.abort();
  const code = (await run.running)?.code;
  await server.bridge.close();
  await server.s.stop();
  server.data.remove();
  assert.equal(code, 0, run.io.stderrText);
}

/** Resolves once the command's output matches `pattern`; fails with the output so far after `timeoutMs`. */
export async function untilOutput(io: MemoryIo, pattern: RegExp, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pattern.test(io.stdout)) {
    if (Date.now() > deadline) throw new Error(`no ${pattern} in output:\n${io.stdout}${io.stderrText}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
