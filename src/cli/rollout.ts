import type { Command } from "commander";
import { UsageError } from "../errors.ts";
import { addBridgeOptions, type BridgeCommandOptions, printAnswer, withBridge } from "./devices.ts";
import type { CliIo } from "./io.ts";
import { registerRolloutCreateCommand } from "./rollout-create.ts";
import { integerOption } from "./rollout-options.ts";
import { countsText, rolloutsTable, rolloutText, stateText } from "./rollout-text.ts";
import { tableWidth } from "./table-fit.ts";

interface ListOptions extends BridgeCommandOptions {
  active?: boolean;
  limit: number;
}

interface ShowOptions extends BridgeCommandOptions {
  events: number;
}

interface ReasonOptions extends BridgeCommandOptions {
  reason?: string;
}

interface TagOptions extends BridgeCommandOptions {
  clear?: boolean;
}

export function registerRolloutCommand(program: Command, io: CliIo): void {
  const rollout = program
    .command("rollout")
    .description(
      "Staged rollouts over the running server: a firmware to many devices, group by group, stopping on failures.",
    );

  registerRolloutCreateCommand(rollout, io);

  addBridgeOptions(
    rollout.command("list", { isDefault: true }).description("list rollouts, newest first (the default)"),
  )
    .option("--active", "only scheduled, running and paused rollouts")
    .option("--limit <n>", "at most this many", integerOption("--limit", 1, 10_000), 50)
    .action(async (options: ListOptions) => {
      const list = await withBridge(options, (bridge) =>
        bridge.request("rollout/list", { ...(options.active ? { active: true } : {}), limit: options.limit }),
      );
      printAnswer(io, options.json, list, () => rolloutsTable(list, Date.now(), tableWidth(io)));
    });

  addBridgeOptions(
    rollout
      .command("show")
      .description("one rollout: groups, devices, events")
      .argument("<rollout>", "rollout id or name"),
  )
    .option("--events <n>", "newest events to show", integerOption("--events", 0, 100_000), 20)
    .action(async (id: string, options: ShowOptions) => {
      const r = await withBridge(options, (bridge) =>
        bridge.request("rollout/show", { id, events: options.events }),
      );
      printAnswer(io, options.json, r, () => rolloutText(r));
    });

  addBridgeOptions(
    rollout
      .command("pause")
      .description(
        "give no more devices their turn; commands not yet taken are withdrawn, pushes under way finish",
      )
      .argument("<rollout>", "rollout id or name"),
  )
    .option("--reason <text>", "why, for the record")
    .action(async (id: string, options: ReasonOptions) => {
      const r = await withBridge(options, (bridge) =>
        bridge.request("rollout/pause", { id, ...(options.reason ? { reason: options.reason } : {}) }),
      );
      printAnswer(
        io,
        options.json,
        r,
        () =>
          `Rollout ${r.id} paused: ${countsText(r.counts, r)}. Resume with \`mpota rollout resume ${r.id}\`.\n`,
      );
    });

  addBridgeOptions(
    rollout
      .command("resume")
      .description(
        "go on after a pause, accepting what made it pause (failures, a group below its threshold, an approval)",
      )
      .argument("<rollout>", "rollout id or name"),
  ).action(async (id: string, options: BridgeCommandOptions) => {
    const r = await withBridge(options, (bridge) => bridge.request("rollout/resume", { id }));
    printAnswer(
      io,
      options.json,
      r,
      () => `Rollout ${r.id} ${stateText(r, Date.now())}: ${countsText(r.counts, r)}.\n`,
    );
  });

  addBridgeOptions(
    rollout
      .command("abort")
      .description("end the rollout: devices not yet updating are cancelled, pushes under way finish")
      .argument("<rollout>", "rollout id or name"),
  )
    .option("--reason <text>", "why, for the record")
    .action(async (id: string, options: ReasonOptions) => {
      const r = await withBridge(options, (bridge) =>
        bridge.request("rollout/abort", { id, ...(options.reason ? { reason: options.reason } : {}) }),
      );
      printAnswer(io, options.json, r, () => `Rollout ${r.id} aborted: ${countsText(r.counts, r)}.\n`);
    });

  addBridgeOptions(
    rollout
      .command("tag")
      .description("show or set a device's tags (what --tag selects)")
      .argument("<device>", "device id")
      .argument("[tags...]", "the device's tags (replacing the ones it has); none: show them"),
  )
    .option("--clear", "remove every tag")
    .action(async (device: string, tags: string[], options: TagOptions) => {
      if (options.clear && tags.length > 0) throw new UsageError("Give tags or --clear, not both.");
      const set = options.clear || tags.length > 0;
      const r = await withBridge(options, (bridge) =>
        bridge.request("device/tags", { id: device, ...(set ? { tags: options.clear ? [] : tags } : {}) }),
      );
      printAnswer(
        io,
        options.json,
        r,
        () => `${r.id}: ${r.tags.length > 0 ? r.tags.join(", ") : "no tags"}\n`,
      );
    });
}
