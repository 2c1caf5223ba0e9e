import { readFileSync } from "node:fs";
import { Command, CommanderError } from "commander";
import { MpotaError } from "../errors.ts";
import { EXIT_CODES } from "../exit-codes.ts";
import { exitQuietlyOnClosedPipe } from "./closed-pipe.ts";
import { registerCommands } from "./commands.ts";
import { type CliIo, processIo } from "./io.ts";

function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
    version: string;
  };
  return pkg.version;
}

/** Builds the `mpota` program. Exposed so tests run commands in-process. */
export function buildProgram(io: CliIo = processIo): Command {
  const program = new Command("mpota")
    .description("Over-the-air firmware updates for MicroPython on ESP8266 (yaota8266)")
    .version(packageVersion())
    .option("--verbose", "print stack traces with errors")
    .showHelpAfterError("(run with --help for usage)")
    .configureOutput({ writeOut: (s) => io.out(s), writeErr: (s) => io.err(s) })
    // Root options only before the command: `mpota firmware add --version 1.2` is the firmware's version.
    .enablePositionalOptions()
    .exitOverride();
  registerCommands(program, io);
  const configure = (cmd: Command) => {
    cmd.exitOverride().configureOutput({ writeOut: (s) => io.out(s), writeErr: (s) => io.err(s) });
    if (!cmd.options.some((o) => o.long === "--verbose"))
      cmd.option("--verbose", "print stack traces with errors");
    if (cmd.name() === "list" && cmd.parent && cmd.registeredArguments.length === 0) {
      const parent = cmd.parent;
      cmd.configureOutput({
        outputError: (text, write) =>
          write(/too many arguments for 'list'/.test(text) ? notACommand(parent, cmd.args) : text),
      });
    }
    for (const sub of cmd.commands) configure(sub);
  };
  for (const cmd of program.commands) configure(cmd);
  return program;
}

/**
 * `mpota jobs j-3f9a` or `mpota firmware show x` land in the default `list`,
 * whose own complaint ("too many arguments for 'list'") names neither the
 * word nor the commands there are.
 */
function notACommand(parent: Command, args: string[]): string {
  const word = args[0] ?? "";
  const names = parent.commands.map((c) => c.name()).filter((n) => n !== "help");
  const show =
    names.includes("show") && word !== "show" ? `; to see one: mpota ${parent.name()} show ${word}` : "";
  return `error: "${word}" is not a command of mpota ${parent.name()}: give one of ${names.join(", ")}${show}.\n`;
}

/** Runs the CLI; returns the process exit code. */
export async function main(argv: string[], io: CliIo = processIo): Promise<number> {
  if (io === processIo) exitQuietlyOnClosedPipe();
  const program = buildProgram(io);
  try {
    await program.parseAsync(argv);
    return EXIT_CODES.success.code;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Help and version exit 0; usage errors were already printed by commander.
      return error.exitCode === 0 ? EXIT_CODES.success.code : EXIT_CODES.usage.code;
    }
    const verbose = program.opts<{ verbose?: boolean }>().verbose === true || argv.includes("--verbose");
    if (error instanceof MpotaError) {
      io.err(`mpota: ${error.message}\n`);
      if (verbose && error.stack) io.err(`${error.stack}\n`);
      return error.exitCode;
    }
    io.err(`mpota: unexpected error: ${(error as Error)?.message ?? String(error)}\n`);
    io.err(
      verbose
        ? `${(error as Error)?.stack}\n`
        : "Run again with --verbose for details, and please report it.\n",
    );
    return EXIT_CODES.unexpected.code;
  }
}
