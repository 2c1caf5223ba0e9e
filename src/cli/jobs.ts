import type { Command } from "commander";
import { formatTable } from "../firmware/format.ts";
import type { JobDetail, JobView } from "../server/api/api.ts";
import {
  addBridgeOptions,
  type BridgeCommandOptions,
  printAnswer,
  printJson,
  relativeTime,
  withBridge,
} from "./devices.ts";
import type { CliIo } from "./io.ts";

const kib = (bytes: number) => `${(bytes / 1024).toFixed(1)} KiB`;

export function progressText(
  j: Pick<JobView, "state" | "percent" | "bytes" | "total" | "rate"> & { files?: number; of?: number },
): string {
  // An app's fetch: files staged of the release's, beside the bytes.
  const files = j.files !== undefined && j.of !== undefined ? `, ${j.files} of ${j.of} files` : "";
  if (j.state === "pushing")
    return `${j.percent}% of ${kib(j.total)}${files}${j.rate > 0 ? ` at ${kib(j.rate)}/s` : ""}`;
  if (j.state === "succeeded") return "done";
  return j.bytes > 0 ? `${j.percent}% (last push)` : "-";
}

export function jobsTable(jobs: JobView[], now = Date.now()): string {
  if (jobs.length === 0) return "No jobs. Start one with `mpota update DEVICE FIRMWARE`.\n";
  const rows = [["JOB", "DEVICE", "FIRMWARE", "STATE", "TRY", "PROGRESS", "UPDATED"]];
  for (const j of jobs) {
    rows.push([
      j.id,
      j.device,
      `${j.firmware.name} ${j.firmware.version}`,
      j.state,
      `${j.attempt}/${j.maxAttempts}`,
      progressText(j),
      relativeTime(j.updatedAt, now),
    ]);
  }
  const failed = jobs.filter((j) => j.state === "failed" && j.error);
  const notes = failed.length > 0 ? `\n${failed.map((j) => `${j.id}: ${j.error}`).join("\n")}\n` : "";
  return `${formatTable(rows, { header: true })}${notes}`;
}

export function jobText(j: JobDetail, now = Date.now()): string {
  const lines = [
    `Job ${j.id}: ${j.device} to ${j.firmware.name} ${j.firmware.version} (${j.firmware.id}, ${j.firmware.size} bytes)`,
    `  state      ${j.state}${j.dueAt !== null && j.finishedAt === null ? ` (next step ${relativeTime(j.dueAt, now)})` : ""}`,
    `  tries      ${j.attempt} of ${j.maxAttempts}`,
    `  progress   ${progressText(j)}${j.retransmits > 0 ? `, ${j.retransmits} retransmits` : ""}`,
    `  address    ${j.target ?? "- (the device reports it when it takes the command)"}`,
    `  created    ${relativeTime(j.createdAt, now)}${j.finishedAt === null ? "" : `, finished ${relativeTime(j.finishedAt, now)}`}`,
  ];
  if (j.allowDowngrade) lines.push("  downgrade  allowed on request (--allow-downgrade)");
  if (j.error) lines.push(`  ${j.state === "failed" ? "reason" : "last error"}  ${j.error}`);
  lines.push("", "Steps:");
  for (const s of j.steps)
    lines.push(`  ${new Date(s.at).toISOString().slice(11, 23)}  ${s.kind.padEnd(14)} ${s.message}`);
  return `${lines.join("\n")}\n`;
}

interface JobsListOptions extends BridgeCommandOptions {
  active?: boolean;
  device?: string;
  limit: number;
}

export function registerJobsCommand(program: Command, io: CliIo): void {
  const jobs = program
    .command("jobs")
    .description("List update jobs of the running server, show one, or cancel one.");
  addBridgeOptions(
    jobs.command("list", { isDefault: true }).description("list jobs, newest first (the default)"),
  )
    .option("--active", "only jobs that are not finished")
    .option("--device <id>", "only this device's jobs")
    .option("--limit <n>", "at most this many", (v: string) => Number.parseInt(v, 10), 50)
    .action(async (options: JobsListOptions) => {
      const list = await withBridge(options, (bridge) =>
        bridge.request("jobs", {
          ...(options.active ? { active: true } : {}),
          ...(options.device !== undefined ? { device: options.device } : {}),
          ...(Number.isInteger(options.limit) && options.limit > 0 ? { limit: options.limit } : {}),
        }),
      );
      printAnswer(io, options.json, list, () => jobsTable(list));
    });
  addBridgeOptions(
    jobs.command("show").description("one job with every step").argument("<job>", "job id"),
  ).action(async (id: string, options: BridgeCommandOptions) => {
    const job = await withBridge(options, (bridge) => bridge.request("job", { id }));
    printAnswer(io, options.json, job, () => jobText(job));
  });
  addBridgeOptions(
    jobs
      .command("cancel")
      .description("cancel a job the device has not taken yet")
      .argument("<job>", "job id"),
  ).action(async (id: string, options: BridgeCommandOptions) => {
    const job = await withBridge(options, (bridge) => bridge.request("job/cancel", { id }));
    if (options.json) printJson(io, job);
    else io.out(`Job ${job.id} cancelled; the command for ${job.device} was withdrawn.\n`);
  });
}
