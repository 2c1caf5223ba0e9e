import { chmodSync, constants, copyFileSync, existsSync, linkSync, readFileSync, renameSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { MpotaError } from "../../errors.ts";
import { EXIT_CODES } from "../../exit-codes.ts";
import { syncDirectory } from "../base/secret-file.ts";
import {
  type CommandKey,
  commandKeyPath,
  loadCommandKey,
  loadOrCreateCommandKeyAt,
  readCommandKey,
} from "./command-key.ts";

/** The next command key's file name in the data directory (`mpota command-key rotate` makes it). */
export const NEXT_COMMAND_KEY_FILE = "command-key.next.pem";

/** A command key rotation step cannot be taken. */
export class CommandKeyRotationError extends MpotaError {
  override readonly exitCode: number = EXIT_CODES.commandKeyRotation.code;
}

export function nextCommandKeyPath(dataDir: string): string {
  return join(resolve(dataDir), NEXT_COMMAND_KEY_FILE);
}

/**
 * The command keys of a server: the current one, and during a rotation the
 * next one. Devices learn the next key through a `keys` command signed with
 * the current one (command-key-rollout.ts); a device that reports the next
 * key's id gets its commands signed with it, so `promote` can retire the old
 * key once every device has the new one.
 */
export class CommandKeyRing {
  constructor(
    readonly current: CommandKey,
    readonly next: CommandKey | undefined = undefined,
  ) {}

  static load(dataDir: string): CommandKeyRing {
    const current = loadCommandKey(dataDir);
    const nextPath = nextCommandKeyPath(dataDir);
    return new CommandKeyRing(current, existsSync(nextPath) ? readCommandKey(nextPath) : undefined);
  }

  /** The keys a device should trust now, current first (what `CMD_KEYS` and a `keys` command list). */
  trusted(): CommandKey[] {
    return this.next ? [this.current, this.next] : [this.current];
  }

  /** The key to sign with for a device that reports trusting `kids` (its state's `keys`). */
  keyFor(kids: readonly string[] | undefined): CommandKey {
    return this.next && kids?.includes(this.next.kid) ? this.next : this.current;
  }
}

/** `mpota command-key rotate`: makes the next key (devices learn it from the running server). */
export function startRotation(dataDir: string): { current: CommandKey; next: CommandKey; created: boolean } {
  const current = loadCommandKey(dataDir);
  const next = loadOrCreateCommandKeyAt(nextCommandKeyPath(dataDir));
  return { current, next, created: next.created };
}

/**
 * `mpota command-key promote`: the next key becomes the current one; the old
 * one is kept as `command-key.retired-<kid>.pem` (nothing is deleted).
 *
 * Two steps, so that `command-key.pem` exists at every moment (a server
 * starting without one would make a new key no device trusts): the current
 * key is first linked (or copied) to its retired name, then the next key is
 * renamed over it, which replaces it at once. Interrupted between the two,
 * it can simply be run again.
 */
export function promoteNextKey(dataDir: string): { retired: string; current: CommandKey } {
  const nextPath = nextCommandKeyPath(dataDir);
  const currentPath = commandKeyPath(dataDir);
  if (!existsSync(nextPath)) {
    throw new CommandKeyRotationError(
      `There is no next command key in ${resolve(dataDir)}: start a rotation with \`mpota command-key rotate\` first.`,
    );
  }
  if (!existsSync(currentPath)) {
    throw new CommandKeyRotationError(
      `There is no current command key (${currentPath}) beside the next one: devices trust the current key until they have the next, so restore it from a backup, or move ${nextPath} to ${currentPath} by hand if every device already trusts the next key.`,
    );
  }
  const next = readCommandKey(nextPath);
  const current = readCommandKey(currentPath);
  const retired = join(resolve(dataDir), `command-key.retired-${current.kid}.pem`);
  keepCopy(currentPath, retired);
  renameSync(nextPath, currentPath);
  syncDirectory(dirname(currentPath));
  return { retired, current: { ...next, path: currentPath } };
}

/** Puts the key file `from` at `to` as well (a hard link, else a copy); an identical `to` is kept. */
function keepCopy(from: string, to: string): void {
  try {
    linkSync(from, to);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "EEXIST") {
      if (readFileSync(to).equals(readFileSync(from))) return; // an earlier promote got this far
      throw new CommandKeyRotationError(
        `${to} exists and holds another key; nothing was changed. Move it away, then promote again.`,
      );
    }
    if (code !== "EPERM" && code !== "ENOTSUP" && code !== "ENOSYS" && code !== "EOPNOTSUPP") throw error;
    copyFileSync(from, to, constants.COPYFILE_EXCL);
    chmodSync(to, 0o600);
  }
}
