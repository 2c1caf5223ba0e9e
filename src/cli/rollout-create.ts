// `mpota rollout create`: the request its options make, and --follow.
import type { Command } from "commander";
import { MpotaError, UsageError } from "../errors.ts";
import { EXIT_CODES } from "../exit-codes.ts";
import type { RolloutCreateRequest, RolloutGroupRequest, RolloutView } from "../server/api/rollout-api.ts";
import type { BridgeClient } from "../server/bridge/bridge-client.ts";
import { DEFAULT_GROUPS, parseGroupSize } from "../server/rollouts/rollout-request.ts";
import { addBridgeOptions, type BridgeCommandOptions, printJson, withBridge } from "./devices.ts";
import type { CliIo } from "./io.ts";
import { releaseWords } from "./job-words.ts";
import { integerOption, numberOption } from "./rollout-options.ts";
import { countsText, stateText } from "./rollout-text.ts";

/** `rollout create --follow` saw the rollout stop without completing (paused or aborted). */
export class RolloutStoppedError extends MpotaError {
  override readonly exitCode: number = EXIT_CODES.rolloutStopped.code;
}

/** "1,10%,rest" as group objects, each asking for approval before the next (all but the last). */
function groupsWithApproval(list: string): RolloutGroupRequest[] {
  const items = list.split(",").filter((s) => s.trim() !== "");
  return items.map((item, i) => {
    const size = parseGroupSize(item);
    const group: RolloutGroupRequest =
      size.kind === "count"
        ? { count: size.count }
        : size.kind === "percent"
          ? { percent: size.percent }
          : { rest: true };
    if (i < items.length - 1) group.approve = true;
    return group;
  });
}

interface CreateOptions extends BridgeCommandOptions {
  devices?: string;
  tag?: string;
  line?: string;
  groups?: string;
  success?: number;
  error?: number;
  minExecuted?: number;
  approve?: boolean;
  retries?: number;
  deviceTimeout?: number;
  concurrency?: number;
  allowDowngrade?: boolean;
  replaceApp?: boolean;
  onError?: string;
  startAt?: string;
  name?: string;
  follow?: boolean;
}

export function createRequest(firmware: string, o: CreateOptions): RolloutCreateRequest {
  const selectors = [o.devices, o.tag, o.line].filter((v) => v !== undefined);
  if (selectors.length !== 1) {
    throw new UsageError(
      selectors.length === 0
        ? "Say which devices: --devices ID,ID,... or --tag TAG or --line NAME (every device running a firmware of that name)."
        : "Give only one of --devices, --tag and --line.",
    );
  }
  if (o.onError !== undefined && o.onError !== "pause" && o.onError !== "abort") {
    throw new UsageError(`--on-error must be pause or abort, not "${o.onError}".`);
  }
  const groups = o.groups ?? DEFAULT_GROUPS;
  return {
    firmware,
    ...(o.devices !== undefined
      ? {
          devices: o.devices
            .split(",")
            .map((d) => d.trim())
            .filter((d) => d !== ""),
        }
      : {}),
    ...(o.tag !== undefined ? { tag: o.tag } : {}),
    ...(o.line !== undefined ? { line: o.line } : {}),
    groups: o.approve ? groupsWithApproval(groups) : groups,
    ...(o.success !== undefined ? { successThreshold: o.success } : {}),
    ...(o.error !== undefined ? { errorThreshold: o.error } : {}),
    ...(o.minExecuted !== undefined ? { minExecuted: o.minExecuted } : {}),
    ...(o.retries !== undefined ? { retries: o.retries } : {}),
    ...(o.deviceTimeout !== undefined ? { timeout: o.deviceTimeout } : {}),
    ...(o.concurrency !== undefined ? { concurrency: o.concurrency } : {}),
    ...(o.allowDowngrade ? { allowDowngrade: true } : {}),
    ...(o.replaceApp ? { replaceApp: true } : {}),
    ...(o.onError !== undefined ? { onError: o.onError as "pause" | "abort" } : {}),
    ...(o.startAt !== undefined ? { startAt: o.startAt } : {}),
    ...(o.name !== undefined ? { name: o.name } : {}),
  };
}

const RUNNING = ["scheduled", "running"];

/** Polls the rollout until it is no longer scheduled or running, printing a line per change. */
async function follow(
  bridge: BridgeClient,
  id: string,
  io: CliIo,
  json: boolean,
  everyMs = 1000,
): Promise<RolloutView> {
  let last = "";
  for (;;) {
    const r = await bridge.request("rollout/show", { id, events: 0 });
    const line = `${stateText(r, Date.now())}: ${countsText(r.counts, r)}`;
    if (line !== last) {
      if (json) io.out(`${JSON.stringify({ ...r, devices: undefined, events: undefined })}\n`);
      else io.err(`${id}: ${line}\n`);
      last = line;
    }
    if (!RUNNING.includes(r.state)) return r;
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

/** Adds `create` to the `rollout` command. */
export function registerRolloutCreateCommand(rollout: Command, io: CliIo): void {
  addBridgeOptions(
    rollout
      .command("create")
      .description("start a rollout of a release from the store (a firmware or an app) to selected devices")
      .argument(
        "<release>",
        "firmware or app: its identity (or its first 6+ digits), name@version, or name (the newest)",
      ),
  )
    .option("--devices <ids>", "these devices, comma-separated (the first ones form the first group)")
    .option("--tag <tag>", "every device with this tag (see `mpota rollout tag`)")
    .option(
      "--line <name>",
      "every device running a release of this name from the store (its firmware; for an app, its app)",
    )
    .option(
      "--groups <list>",
      `groups in order: a number of devices, a share, or rest (default ${DEFAULT_GROUPS})`,
    )
    .option(
      "--success <percent>",
      "share of a group verified before the next starts (default 100)",
      numberOption("--success", 0, 100),
    )
    .option(
      "--error <percent>",
      "stop when more than this share of a group's finished devices failed (default 20)",
      numberOption("--error", 0, 100),
    )
    .option(
      "--min-executed <n>",
      "the error share counts once this many of a group finished (default 5, or the group)",
      integerOption("--min-executed", 1, 100_000),
    )
    .option("--approve", "pause after each group (but the last) until `mpota rollout resume`")
    .option(
      "--retries <n>",
      "tries after the first, per device (default: the server's)",
      integerOption("--retries", 0, 20),
    )
    .option(
      "--device-timeout <seconds>",
      "a device not verified this long after its turn counts as failed; sleepy devices get their sleep period on top (default 900)",
      numberOption("--device-timeout", 1, 30 * 24 * 3600),
    )
    .option(
      "--concurrency <n>",
      "devices updated at once (default 10)",
      integerOption("--concurrency", 1, 1000),
    )
    .option("--allow-downgrade", "roll out a firmware older than what some devices run")
    .option(
      "--replace-app",
      "roll an app out also to boards running an app of another name, replacing it (left out otherwise)",
    )
    .option("--on-error <action>", "pause (default) or abort when a group crosses its error threshold")
    .option("--start-at <time>", "start later: ISO 8601 time, e.g. 2030-01-31T22:00:00Z")
    .option("--name <name>", "a name to find the rollout by")
    .option(
      "--follow",
      "show progress until the rollout completes, pauses or is aborted (exit 43 unless it completes)",
    )
    .addHelpText(
      "after",
      `
Each device gets its own update job (see \`mpota jobs\`): an always-on device is updated
at once, a sleepy one at its next wake. Group sizes: "1" is one device, "10%" a tenth of all
the rollout's devices, "rest" the remainder. Devices that already run the firmware count
as done. Examples:
  mpota rollout create sensor@2.0 --tag garden
  mpota rollout create sensor@2.0 --line sensor --groups 2,25%,rest --error 10 --approve`,
    )
    .action(async (firmware: string, options: CreateOptions) => {
      const request = createRequest(firmware, options);
      await withBridge(options, async (bridge) => {
        const r = await bridge.request("rollout/create", request);
        if (options.json && !options.follow) printJson(io, r);
        if (!options.json) {
          io.out(
            `Rollout ${r.id}: ${releaseWords(r.firmware, r)} to ${r.counts.total} device${r.counts.total === 1 ? "" : "s"} in groups of ${r.groups.map((g) => g.size).join(" + ")}; ${stateText(r, Date.now())}.\n` +
              (options.follow ? "" : `Follow it with \`mpota rollout show ${r.id}\`.\n`),
          );
        }
        if (!options.follow) return;
        const end = await follow(bridge, r.id, io, options.json === true);
        if (end.state !== "completed") {
          throw new RolloutStoppedError(
            `Rollout ${r.id} is ${end.state}: ${end.reason ?? "no reason given"}`,
          );
        }
        if (!options.json) io.out(`${end.reason ?? "Completed."}\n`);
      });
    });
}
