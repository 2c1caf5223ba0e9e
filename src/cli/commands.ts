import type { Command } from "commander";
import { registerCheckCommand } from "./check.ts";
import { registerConfigHCommand } from "./config-h.ts";
import { registerEmulateCommand } from "./emulate.ts";
import { registerFlashPlanCommand } from "./flash-plan.ts";
import { registerInspectCommand } from "./inspect.ts";
import type { CliIo } from "./io.ts";
import { registerKeysCommand } from "./keys.ts";
import { registerPushCommand } from "./push.ts";
import { registerSignCommand } from "./sign.ts";

/** Adds every mpota command to the program. One file per command. */
export function registerCommands(program: Command, io: CliIo): void {
  registerKeysCommand(program, io);
  registerConfigHCommand(program, io);
  registerSignCommand(program, io);
  registerPushCommand(program, io);
  registerEmulateCommand(program, io);
  registerInspectCommand(program, io);
  registerCheckCommand(program, io);
  registerFlashPlanCommand(program, io);
}
