import type { Command } from "commander";
import { formatTable } from "../firmware/format.ts";
import type { StatusView } from "../server/api/admin-views.ts";
import {
  addBridgeOptions,
  type BridgeCommandOptions,
  printAnswer,
  relativeTime,
  withBridge,
} from "./devices.ts";
import type { CliIo } from "./io.ts";

const list = (ids: string[]) => (ids.length === 0 ? "-" : ids.length <= 3 ? ids.join(" ") : `${ids.length}`);

export function statusText(status: StatusView, now = Date.now()): string {
  const rows = [
    ["INSTANCE", "STATE", "HEARTBEAT", "STARTED", "PUSHES", "JOB LEASES", "ROLLOUT LEASES", "HTTP"],
  ];
  for (const i of status.instances) {
    rows.push([
      `${i.id}${i.id === status.answeredBy ? " *" : ""}`,
      i.alive ? "alive" : "gone",
      relativeTime(i.heartbeatAt, now),
      relativeTime(i.startedAt, now),
      String(i.load.pushes),
      list(i.leases.jobs),
      list(i.leases.rollouts),
      i.http ?? "-",
    ]);
  }
  const alive = status.instances.filter((i) => i.alive).length;
  const lines = [
    `Storage: ${status.storage}`,
    `${alive} instance${alive === 1 ? "" : "s"} alive (heartbeat every ${status.heartbeatMs / 1000} s; * answered this request)`,
    "",
    formatTable(rows, { header: true }).trimEnd(),
  ];
  const orphans = status.orphanLeases;
  if (orphans.jobs.length + orphans.rollouts.length > 0) {
    lines.push(
      "",
      `Leases of instances that are gone (taken over when they expire): jobs ${list(orphans.jobs)}, rollouts ${list(orphans.rollouts)}`,
    );
  }
  return `${lines.join("\n")}\n`;
}

export function registerStatusCommand(program: Command, io: CliIo): void {
  addBridgeOptions(
    program
      .command("status")
      .description("the server instances sharing one database: alive or gone, their leases and load"),
  ).action(async (options: BridgeCommandOptions) => {
    const status = await withBridge(options, (bridge) => bridge.request("status", {}));
    printAnswer(io, options.json, status, () => statusText(status));
  });
}
