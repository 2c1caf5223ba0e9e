import { existsSync } from "node:fs";
import type { Command } from "commander";
import { adminTokenPath, rotateAdminToken } from "../server/http/admin-token.ts";
import { DEFAULT_DATA_DIR } from "../server/server-options.ts";
import type { CliIo } from "./io.ts";
import { assertDataWritable } from "./writable-data.ts";

interface TokenOptions {
  data: string;
}

/** `mpota token rotate`: a new admin token; the old one and every dashboard session stop working at once. */
export function tokenRotateCommand(options: TokenOptions, io: CliIo): void {
  assertDataWritable({ dataDir: options.data, sqlite: false });
  const { token, path } = rotateAdminToken(options.data);
  io.out(`${token}\n`);
  io.err(
    `New admin token written to ${path} (mode 0600). The old token and every dashboard session stop working now, also on a running server; log in again with this one.\n`,
  );
}

/** `mpota token show-path`: where the admin token is (not the token itself). */
export function tokenShowPathCommand(options: TokenOptions, io: CliIo): void {
  const path = adminTokenPath(options.data);
  io.out(`${path}\n`);
  // The path alone looks like an answer; `cat "$(mpota token show-path)"` would then fail with a bare "No such file".
  if (!existsSync(path)) {
    io.err(
      `There is no admin token at ${path} yet: \`mpota serve\` makes it on its first start in its data directory. Pass the --data DIR your server uses (here: ${options.data}).\n`,
    );
  }
}

export function registerTokenCommand(program: Command, io: CliIo): void {
  const token = program
    .command("token")
    .description(
      "The admin token of the dashboard and HTTP API (created by `mpota serve` on its first start).",
    );
  token
    .command("rotate")
    .description("Replace the admin token: prints the new one; the old token and all sessions stop working.")
    .option("--data <dir>", "the server's data directory", DEFAULT_DATA_DIR)
    .action((options: TokenOptions) => tokenRotateCommand(options, io));
  token
    .command("show-path")
    .description("Print the path of the admin token file (read it with cat; it is mode 0600).")
    .option("--data <dir>", "the server's data directory", DEFAULT_DATA_DIR)
    .action((options: TokenOptions) => tokenShowPathCommand(options, io));
}
