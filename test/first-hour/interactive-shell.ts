import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdirSync, symlinkSync } from "node:fs";
import { dirname, join } from "node:path";

/** util-linux `script`: runs a command on a pseudo-terminal of its own. */
export const SCRIPT = "/usr/bin/script";
export const SHELL_SKIP = existsSync(SCRIPT)
  ? false
  : `${SCRIPT} is missing: typing into an interactive shell needs util-linux's script (apt-get install bsdutils).`;

/** The package's bin script (it runs the built dist/: `npm run build` first). */
const binScript = new URL("../../bin/mpota.js", import.meta.url).pathname;

/**
 * A folder holding `mpota` as `npm link` makes it: a symlink to the
 * package's bin script. On the PATH before this Node's own folder, the
 * shell finds `mpota` the way a user who followed the README does.
 */
export function linkedBin(dir: string): string {
  const bin = join(dir, "bin");
  mkdirSync(bin, { recursive: true });
  symlinkSync(binScript, join(bin, "mpota"));
  return bin;
}

/**
 * An interactive bash (job control on, as in a terminal window) on a
 * pseudo-terminal: what a person types goes in with `type`, everything the
 * terminal shows comes back in `screen()`.
 */
export class InteractiveShell {
  private text = "";
  private readonly exited: Promise<number | null>;

  private constructor(private readonly child: ChildProcess) {
    child.stdout?.setEncoding("utf8").on("data", (s: string) => {
      this.text += s;
    });
    child.stderr?.setEncoding("utf8").on("data", (s: string) => {
      this.text += s;
    });
    this.exited = new Promise((resolve) => child.on("close", (code) => resolve(code)));
  }

  static start(cwd: string, path: string[]): InteractiveShell {
    const child = spawn(SCRIPT, ["-qfec", "bash --norc --noprofile -i", "/dev/null"], {
      cwd,
      env: {
        PATH: [...path, dirname(process.execPath), process.env.PATH ?? "/usr/bin:/bin"].join(":"),
        HOME: cwd,
        TERM: "dumb",
        PS1: "$ ",
        LANG: "C.UTF-8",
      },
      stdio: ["pipe", "pipe", "pipe"],
    });
    return new InteractiveShell(child);
  }

  /** Types lines into the terminal, each followed by Enter (the shell reads them one after the other). */
  type(lines: string[]): void {
    this.child.stdin?.write(`${lines.join("\n")}\n`);
  }

  screen(): string {
    return this.text;
  }

  /** Waits until the terminal shows `pattern`. */
  async waitFor(pattern: RegExp, timeoutMs: number): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = this.text.match(pattern);
      if (m) return m;
      if (Date.now() > deadline) {
        throw new Error(`the terminal did not show ${pattern} within ${timeoutMs} ms:\n${this.text}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  /**
   * Leaves the shell (and kills what is left after a grace period). Background jobs get SIGKILL
   * first: one the shell stopped (a failed test's `Stopped (tty input)`) would ignore SIGTERM and
   * outlive the test.
   */
  async close(): Promise<void> {
    this.type(["kill -KILL $(jobs -p) 2>/dev/null", "exit"]);
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 5000);
    await this.exited;
    clearTimeout(timer);
  }
}
