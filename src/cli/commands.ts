import type { Command } from "commander";
import { registerAppCommand } from "./app.ts";
import { registerAuditCommand } from "./audit.ts";
import { registerBrokerConfigCommand } from "./broker-config.ts";
import { registerCheckCommand } from "./check.ts";
import { registerCommandKeyCommand } from "./command-key.ts";
import { registerConfigHCommand } from "./config-h.ts";
import { registerDbCommand } from "./db.ts";
import { registerDevicesCommand } from "./devices.ts";
import { registerEmulateCommand } from "./emulate.ts";
import { registerFirmwareCommand } from "./firmware.ts";
import { registerFlashPlanCommand } from "./flash-plan.ts";
import { registerInspectCommand } from "./inspect.ts";
import type { CliIo } from "./io.ts";
import { registerJobsCommand } from "./jobs.ts";
import { registerKeysCommand } from "./keys.ts";
import { registerPushCommand } from "./push.ts";
import { registerRolloutCommand } from "./rollout.ts";
import { registerServeCommand } from "./serve.ts";
import { registerSignCommand } from "./sign.ts";
import { registerSimulateCommand } from "./simulate.ts";
import { registerStatusCommand } from "./status.ts";
import { registerTokenCommand } from "./token.ts";
import { registerUpdateCommand } from "./update.ts";

/** Adds every mpota command to the program. One file per command. */
export function registerCommands(program: Command, io: CliIo): void {
  // Keys, images and pushing.
  registerKeysCommand(program, io);
  registerConfigHCommand(program, io);
  registerInspectCommand(program, io);
  registerCheckCommand(program, io);
  registerFlashPlanCommand(program, io);
  registerSignCommand(program, io);
  registerPushCommand(program, io);
  registerEmulateCommand(program, io);
  // The update server and its clients.
  registerServeCommand(program, io);
  registerFirmwareCommand(program, io);
  registerAppCommand(program, io);
  registerUpdateCommand(program, io);
  registerDevicesCommand(program, io);
  registerJobsCommand(program, io);
  registerRolloutCommand(program, io);
  registerSimulateCommand(program, io);
  registerTokenCommand(program, io);
  registerDbCommand(program, io);
  registerStatusCommand(program, io);
  registerAuditCommand(program, io);
  registerBrokerConfigCommand(program, io);
  registerCommandKeyCommand(program, io);
}
