import { type Command, Option } from "commander";
import { formatTable } from "../firmware/format.ts";
import { DEFAULT_DATA_DIR } from "../server/server-options.ts";
import { loadCommandKey } from "../server/trust/command-key.ts";
import { promoteNextKey, startRotation } from "../server/trust/command-key-ring.ts";
import { addBridgeOptions, type BridgeCommandOptions, printAnswer, withBridge } from "./devices.ts";
import type { CliIo } from "./io.ts";

interface DataOptions {
  data: string;
}

const dataOption = () =>
  new Option("--data <dir>", "the server's data directory").env("MPOTA_DATA").default(DEFAULT_DATA_DIR);

/** `mpota command-key`: the key that signs commands to devices, and its rotation. */
export function registerCommandKeyCommand(program: Command, io: CliIo): void {
  const command = program
    .command("command-key")
    .description(
      "The key the server signs device commands with (devices trust up to three: CMD_KEYS), and how to rotate it without touching the devices.",
    );
  command
    .command("show")
    .description("print the command key's id and its public half (PEM, for `openssl dgst -sha256 -verify`)")
    .addOption(dataOption())
    .action((options: DataOptions) => {
      const key = loadCommandKey(options.data);
      io.out(`${key.publicPem}`);
      io.err(`command key ${key.kid} (${key.path})${key.created ? ", created now" : ""}\n`);
    });
  command
    .command("rotate")
    .description(
      "start a rotation: make the next key; the running server (after a restart) gives it to every device that checks in, signed with the current key",
    )
    .addOption(dataOption())
    .action((options: DataOptions) => {
      const { current, next, created } = startRotation(options.data);
      io.out(
        `${created ? "Made" : "There already is"} the next command key ${next.kid} (${next.path}, mode 0600); the current one is ${current.kid}.\n` +
          "Restart the server (copy the file to every instance first). Each device that checks in gets a keys command listing both keys,\n" +
          `signed with ${current.kid}; from then on its commands are signed with ${next.kid}. Devices provisioned now get both keys.\n` +
          "Watch with `mpota command-key status`; when every device trusts the new key, run `mpota command-key promote`.\n",
      );
    });
  command
    .command("promote")
    .description(
      "end a rotation: the next key becomes the current one (the old one is kept, renamed, as retired)",
    )
    .addOption(dataOption())
    .action((options: DataOptions) => {
      const { retired, current } = promoteNextKey(options.data);
      io.out(
        `The command key is now ${current.kid}; the old one is kept as ${retired}. Restart the server (and copy the files to every instance).\n` +
          `Each device that trusts the new key is then sent a keys command naming ${current.kid} only, so it stops trusting the old one.\n` +
          "A device that never reported the new key ignores every command from now on: give it a new mpota_config.py (`mpota devices rotate <id>`).\n",
      );
    });
  addBridgeOptions(
    command
      .command("status")
      .description("which devices trust the current and the next command key (asks the running server)"),
  ).action(async (options: BridgeCommandOptions) => {
    const view = await withBridge(options, (bridge) => bridge.request("command-keys", {}));
    printAnswer(io, options.json, view, () => {
      const lines = [
        `current ${view.current ?? "-"}${view.next ? `, next ${view.next}` : ", no rotation under way"}`,
      ];
      const rows = [
        ["device", "agent", "trusts"],
        ...view.devices.map((d) => [
          d.device,
          d.v === null ? "not seen" : `v${d.v}`,
          d.keys === null ? (d.v === 1 ? "(cannot verify)" : "-") : d.keys.join(", "),
        ]),
      ];
      if (view.next) {
        const ready = view.devices.filter((d) => d.keys?.includes(view.next as string)).length;
        lines.push(`${ready} of ${view.devices.length} provisioned devices trust the next key`);
      }
      return `${lines.join("\n")}\n${formatTable(rows, { header: true })}`;
    });
  });
}
