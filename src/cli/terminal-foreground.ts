import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";

/**
 * Whether this process's group is the foreground job of its terminal.
 *
 * A job started with `&` in an interactive shell shares the terminal but not
 * the foreground: the moment it reads from the terminal the kernel stops it
 * (SIGTTIN, "Stopped (tty input)"). A console that reads stdin must only do
 * so while this says true. Linux answers from /proc (tpgid against pgrp);
 * elsewhere `ps` does; undefined when neither can tell.
 */
export function inTerminalForeground(pid: number = process.pid): boolean | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after "(comm)": state ppid pgrp session tty_nr tpgid ...
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const pgrp = Number(fields[2]);
    const tpgid = Number(fields[5]);
    if (Number.isInteger(pgrp) && Number.isInteger(tpgid)) return tpgid === pgrp;
  } catch {
    // No /proc (macOS, BSD): ask ps below.
  }
  try {
    const out = execFileSync("ps", ["-o", "pgid=", "-o", "tpgid=", "-p", String(pid)], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
      timeout: 2000,
    });
    const [pgid, tpgid] = out.trim().split(/\s+/).map(Number);
    if (Number.isInteger(pgid) && Number.isInteger(tpgid)) return pgid === tpgid;
  } catch {
    // No ps either.
  }
  return undefined;
}
