import type { Command } from "commander";
import { registerEmulateCommand } from "./emulate.ts";
import type { CliIo } from "./io.ts";
import { registerPushCommand } from "./push.ts";

/** Adds every mpota command to the program. One file per command. */
export function registerCommands(program: Command, io: CliIo): void {
  registerPushCommand(program, io);
  registerEmulateCommand(program, io);
}
