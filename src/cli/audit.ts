import type { Command } from "commander";
import { formatTable } from "../firmware/format.ts";
import type { AuditEntry } from "../server/storage/storage.ts";
import { addBridgeOptions, type BridgeCommandOptions, printAnswer, withBridge } from "./devices.ts";
import type { CliIo } from "./io.ts";
import { parseIntegerOption } from "./key-options.ts";

/** The audit list as a table, newest first. */
export function auditTable(entries: AuditEntry[]): string {
  if (entries.length === 0)
    return "Nothing recorded yet: every change made through the bridge or the HTTP API appears here.\n";
  const rows = [
    ["id", "when", "who", "action", "target", "outcome"],
    ...entries.map((e) => [
      String(e.id),
      new Date(e.at).toISOString().replace("T", " ").slice(0, 19),
      e.actor,
      e.action,
      e.target ?? "-",
      e.outcome === "ok" ? "ok" : `refused: ${String(e.detail?.reason ?? "").slice(0, 80)}`,
    ]),
  ];
  return formatTable(rows, { header: true });
}

export function registerAuditCommand(program: Command, io: CliIo): void {
  addBridgeOptions(
    program
      .command("audit")
      .description(
        "who changed what: every update, firmware, rollout and credential change, with who asked (newest first)",
      )
      .option("--limit <n>", "how many entries (1-1000)", parseIntegerOption("--limit"), 50)
      .option("--before <id>", "entries older than this id (to page back)", parseIntegerOption("--before")),
  ).action(async (options: BridgeCommandOptions & { limit: number; before?: number }) => {
    const entries = await withBridge(options, (bridge) =>
      bridge.request("audit", {
        limit: options.limit,
        ...(options.before !== undefined ? { before: options.before } : {}),
      }),
    );
    printAnswer(io, options.json, entries, () => auditTable(entries));
  });
}
