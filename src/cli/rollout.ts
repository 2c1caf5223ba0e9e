import type { Command } from "commander";
import { MpotaError, UsageError } from "../errors.ts";
import { EXIT_CODES } from "../exit-codes.ts";
import { formatTable } from "../firmware/format.ts";
import type {
  RolloutCounts,
  RolloutCreateRequest,
  RolloutDetail,
  RolloutGroupRequest,
  RolloutView,
} from "../server/api/rollout-api.ts";
import type { BridgeClient } from "../server/bridge/bridge-client.ts";
import { DEFAULT_GROUPS, parseGroupSize } from "../server/rollouts/rollout-request.ts";
import {
  addBridgeOptions,
  type BridgeCommandOptions,
  printAnswer,
  printJson,
  relativeTime,
  withBridge,
} from "./devices.ts";
import type { CliIo } from "./io.ts";

/** `rollout create --follow` saw the rollout stop without completing (paused or aborted). */
export class RolloutStoppedError extends MpotaError {
  override readonly exitCode: number = EXIT_CODES.rolloutStopped.code;
}

// ---- text -------------------------------------------------------------------

function selectorText(r: RolloutView): string {
  const s = r.selector;
  if (s.kind === "tag") return `tag ${s.tag}`;
  if (s.kind === "line") return `line ${s.line}`;
  return s.devices.length <= 3 ? s.devices.join(", ") : `${s.devices.length} devices`;
}

/** "3 done, 1 pushing, 2 pending": the non-zero counts, in a rollout's order. */
export function countsText(c: RolloutCounts): string {
  const order: Array<Exclude<keyof RolloutCounts, "total">> = [
    "done",
    "verifying",
    "pushing",
    "scheduled",
    "pending",
    "failed",
    "overdue",
    "skipped",
    "cancelled",
  ];
  const parts = order.filter((k) => c[k] > 0).map((k) => `${c[k]} ${k}`);
  return parts.length > 0 ? parts.join(", ") : "no devices";
}

function stateText(r: RolloutView, now: number): string {
  if (r.state === "scheduled") return `scheduled, starts ${relativeTime(r.startAt, now)}`;
  if (r.state === "running") return `running, group ${r.currentGroup + 1} of ${r.groups.length}`;
  return r.state;
}

export function rolloutsTable(list: RolloutView[], now = Date.now()): string {
  if (list.length === 0) {
    return "No rollouts. Start one with `mpota rollout create FIRMWARE --tag TAG` (or --devices, --line).\n";
  }
  const rows = [["ROLLOUT", "NAME", "FIRMWARE", "DEVICES", "STATE", "DONE", "FAILED", "CREATED"]];
  for (const r of list) {
    rows.push([
      r.id,
      r.name ?? "-",
      `${r.firmware.name} ${r.firmware.version}`,
      selectorText(r),
      stateText(r, now),
      `${r.counts.done}/${r.counts.total}`,
      String(r.counts.failed + r.counts.overdue),
      relativeTime(r.createdAt, now),
    ]);
  }
  const why = list.filter((r) => r.state === "paused" && r.reason);
  const notes = why.length > 0 ? `\n${why.map((r) => `${r.id}: ${r.reason}`).join("\n")}\n` : "";
  return `${formatTable(rows, { header: true })}${notes}`;
}

function groupsTable(r: RolloutView, indent: string): string {
  const rows = [
    [
      "GROUP",
      "SIZE",
      "SUCCESS",
      "ERRORS",
      "STATE",
      "PENDING",
      "SCHEDULED",
      "PUSHING",
      "VERIFYING",
      "DONE",
      "FAILED",
    ],
  ];
  for (const g of r.groups) {
    rows.push([
      `${g.index + 1} (${g.spec})${g.approve ? " approve" : ""}`,
      String(g.size),
      `${g.successThreshold} %`,
      `>${g.errorThreshold} % of ${g.minExecuted}+`,
      g.state,
      String(g.counts.pending),
      String(g.counts.scheduled),
      String(g.counts.pushing),
      String(g.counts.verifying),
      String(g.counts.done),
      String(g.counts.failed + g.counts.overdue) +
        (g.counts.skipped + g.counts.cancelled > 0
          ? ` (+${g.counts.skipped} skipped, ${g.counts.cancelled} cancelled)`
          : ""),
    ]);
  }
  return formatTable(rows, { header: true, indent }).trimEnd();
}

export function rolloutText(r: RolloutDetail, now = Date.now()): string {
  const p = r.policy;
  const lines = [
    `Rollout ${r.id}${r.name ? ` "${r.name}"` : ""}: ${r.firmware.name} ${r.firmware.version} (${r.firmware.id}) to ${selectorText(r)}`,
    `  state      ${stateText(r, now)}`,
  ];
  if (r.reason) lines.push(`  ${r.state === "completed" ? "result" : "reason"}     ${r.reason}`);
  lines.push(
    `  devices    ${r.counts.total}: ${countsText(r.counts)}`,
    `  policy     ${p.maxAttempts} tries per device, timeout ${p.timeout} s (sleepy devices: plus their sleep), ${p.concurrency} at once, ${p.onError} on errors${p.allowDowngrade ? ", downgrades allowed" : ""}`,
    `  created    ${relativeTime(r.createdAt, now)}${r.startedAt !== null ? `, started ${relativeTime(r.startedAt, now)}` : ""}${r.finishedAt !== null ? `, ended ${relativeTime(r.finishedAt, now)}` : ""}`,
    "",
    groupsTable(r, "  "),
  );
  const notable = r.devices.filter((d) => d.status !== "pending" && d.status !== "done");
  const shown = notable.length > 0 ? notable : [];
  if (shown.length > 0) {
    lines.push("", "Devices not pending or done:");
    const rows = [["DEVICE", "GROUP", "STATUS", "JOB", "REASON"]];
    for (const d of shown.slice(0, 50)) {
      rows.push([
        d.device,
        String(d.group + 1),
        `${d.status}${d.sleepy && d.status === "scheduled" ? " (asleep)" : ""}`,
        d.job ?? "-",
        d.reason ?? "",
      ]);
    }
    lines.push(formatTable(rows, { header: true, indent: "  " }).trimEnd());
    if (shown.length > 50) lines.push(`  ... and ${shown.length - 50} more (--json lists every device)`);
  }
  if (r.events.length > 0) {
    lines.push("", "Events (newest first):");
    for (const e of r.events.slice(0, 20)) {
      lines.push(
        `  ${new Date(e.at).toISOString().slice(0, 19).replace("T", " ")}  ${e.kind.padEnd(14)} ${e.message}`,
      );
    }
  }
  return `${lines.join("\n")}\n`;
}

// ---- options ----------------------------------------------------------------

function numberOption(name: string, min: number, max: number): (value: string) => number {
  return (value: string) => {
    const n = Number(value.trim().replace(/%$/, ""));
    if (value.trim() === "" || !Number.isFinite(n) || n < min || n > max) {
      throw new UsageError(`${name} must be a number from ${min} to ${max}, not "${value}".`);
    }
    return n;
  };
}

function integerOption(name: string, min: number, max: number): (value: string) => number {
  return (value: string) => {
    if (!/^\d+$/.test(value.trim())) throw new UsageError(`${name} must be a whole number, not "${value}".`);
    return numberOption(name, min, max)(value);
  };
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
    const line = `${stateText(r, Date.now())}: ${countsText(r.counts)}`;
    if (line !== last) {
      if (json) io.out(`${JSON.stringify({ ...r, devices: undefined, events: undefined })}\n`);
      else io.err(`${id}: ${line}\n`);
      last = line;
    }
    if (!RUNNING.includes(r.state)) return r;
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

// ---- commands ---------------------------------------------------------------

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

  addBridgeOptions(
    rollout
      .command("create")
      .description("start a rollout of a firmware from the store to selected devices")
      .argument(
        "<firmware>",
        "firmware identity (or its first 6+ digits), name@version, or name (the newest)",
      ),
  )
    .option("--devices <ids>", "these devices, comma-separated (the first ones form the first group)")
    .option("--tag <tag>", "every device with this tag (see `mpota rollout tag`)")
    .option("--line <name>", "every device running a firmware of this name from the store")
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
            `Rollout ${r.id}: ${r.firmware.name} ${r.firmware.version} to ${r.counts.total} device${r.counts.total === 1 ? "" : "s"} in groups of ${r.groups.map((g) => g.size).join(" + ")}; ${stateText(r, Date.now())}.\n` +
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

  addBridgeOptions(
    rollout.command("list", { isDefault: true }).description("list rollouts, newest first (the default)"),
  )
    .option("--active", "only scheduled, running and paused rollouts")
    .option("--limit <n>", "at most this many", integerOption("--limit", 1, 10_000), 50)
    .action(async (options: ListOptions) => {
      const list = await withBridge(options, (bridge) =>
        bridge.request("rollout/list", { ...(options.active ? { active: true } : {}), limit: options.limit }),
      );
      printAnswer(io, options.json, list, () => rolloutsTable(list));
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
          `Rollout ${r.id} paused: ${countsText(r.counts)}. Resume with \`mpota rollout resume ${r.id}\`.\n`,
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
      () => `Rollout ${r.id} ${stateText(r, Date.now())}: ${countsText(r.counts)}.\n`,
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
      printAnswer(io, options.json, r, () => `Rollout ${r.id} aborted: ${countsText(r.counts)}.\n`);
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
