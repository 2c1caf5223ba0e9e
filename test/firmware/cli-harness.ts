import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Command, CommanderError } from "commander";
import { type CliIo, MemoryIo } from "../../src/cli/io.ts";
import { MpotaError } from "../../src/errors.ts";

export interface CliRun {
  /** The exit code the CLI's main maps the outcome to. */
  code: number;
  stdout: string;
  stderr: string;
  error: unknown;
}

/**
 * Runs one command in-process the way src/cli/main.ts does: a fresh program
 * with exitOverride, the command registered on it, output captured.
 */
export async function runCommand(
  register: (program: Command, io: CliIo) => unknown,
  args: string[],
): Promise<CliRun> {
  const io = new MemoryIo();
  const program = new Command("mpota")
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.out(s), writeErr: (s) => io.err(s) });
  register(program, io);
  let code = 0;
  let error: unknown;
  try {
    await program.parseAsync(["node", "mpota", ...args]);
  } catch (e) {
    error = e;
    if (e instanceof CommanderError) code = e.exitCode === 0 ? 0 : 2;
    else if (e instanceof MpotaError) code = e.exitCode;
    else throw e;
  }
  return { code, stdout: io.stdout, stderr: io.stderrText, error };
}

export interface TempFiles {
  /** The path of a file in the directory. */
  path(name: string): string;
  remove(): void;
}

/** A fresh temporary directory with the given files written into it. */
export function tempFiles(files: Record<string, Uint8Array | string>): TempFiles {
  const dir = mkdtempSync(join(tmpdir(), "mpota-firmware-"));
  for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), content);
  return { path: (name) => join(dir, name), remove: () => rmSync(dir, { recursive: true, force: true }) };
}
