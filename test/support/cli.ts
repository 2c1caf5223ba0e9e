import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MemoryIo } from "../../src/cli/io.ts";
import { main } from "../../src/cli/main.ts";

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface CliRunOptions {
  /** Working directory for the command (relative paths and default files resolve against it). */
  cwd?: string;
}

/**
 * Runs `mpota ARGS...` in this process through `main()`, output captured.
 * With `cwd` it changes the process's directory for the duration, so tests in
 * one file must run one after the other (node:test's default).
 */
export async function runCli(args: string[], options: CliRunOptions = {}): Promise<CliResult> {
  const io = new MemoryIo();
  const previous = process.cwd();
  if (options.cwd !== undefined) process.chdir(options.cwd);
  try {
    const code = await main(["node", "mpota", ...args], io);
    return { code, stdout: io.stdout, stderr: io.stderrText };
  } finally {
    if (options.cwd !== undefined) process.chdir(previous);
  }
}

/** The package's bin script; it runs the built dist/ (`npm test` builds first). */
export const binPath = new URL("../../bin/mpota.js", import.meta.url).pathname;

export interface CliProcess {
  /** Resolves when the process has exited; `signal` is set when a signal ended it. */
  done: Promise<CliResult & { signal: NodeJS.Signals | null }>;
  /** Resolves with the output so far once stdout or stderr contains `text`. */
  waitForOutput(text: string): Promise<void>;
  /** What the process printed so far. */
  output(): { stdout: string; stderr: string };
  kill(signal: NodeJS.Signals): void;
}

/** Starts `node bin/mpota.js ARGS...` as a real process. */
export function startCliProcess(args: string[], options: CliRunOptions = {}): CliProcess {
  const child = spawn(process.execPath, [binPath, ...args], {
    cwd: options.cwd,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  const waiters: Array<{ text: string; resolve: () => void }> = [];
  const check = () => {
    for (const w of waiters.splice(0)) {
      if (stdout.includes(w.text) || stderr.includes(w.text)) w.resolve();
      else waiters.push(w);
    }
  };
  if (child.stdout === null || child.stderr === null) throw new Error("spawn gave no output pipes");
  child.stdout.setEncoding("utf8").on("data", (s: string) => {
    stdout += s;
    check();
  });
  child.stderr.setEncoding("utf8").on("data", (s: string) => {
    stderr += s;
    check();
  });
  const done = new Promise<CliResult & { signal: NodeJS.Signals | null }>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code, signal) => resolve({ code: code ?? -1, signal, stdout, stderr }));
  });
  return {
    done,
    waitForOutput: (text) =>
      new Promise((resolve, reject) => {
        waiters.push({ text, resolve });
        check();
        void done.then(() => reject(new Error(`process ended without printing "${text}"`)), reject);
      }),
    output: () => ({ stdout, stderr }),
    kill: (signal) => child.kill(signal),
  };
}

/** Runs `node bin/mpota.js ARGS...` as a real process and waits for it to end. */
export async function runCliProcess(args: string[], options: CliRunOptions = {}): Promise<CliResult> {
  const { code, stdout, stderr } = await startCliProcess(args, options).done;
  return { code, stdout, stderr };
}

/** A fresh temp directory, removed by the returned function. */
export function makeTempDir(prefix = "mpota-test-"): { dir: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Every entry of `dir`, sorted, dot files included: tests assert nothing else was left behind. */
export function listDir(dir: string): string[] {
  return readdirSync(dir).sort();
}
