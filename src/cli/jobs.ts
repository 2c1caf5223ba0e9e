import type { Command } from "commander";
import { formatTable, sizeBrief } from "../firmware/format.ts";
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
import {
  type DeliveryFacts,
  deviceFetches,
  isAppJob,
  phaseWord,
  RELEASE_CELL,
  releaseWords,
} from "./job-words.ts";
import { DEFAULT_TABLE_WIDTH, fitTable, tableWidth } from "./table-fit.ts";

const kib = (bytes: number) => `${(bytes / 1024).toFixed(1)} KiB`;

type ProgressFields = Pick<JobView, "state" | "percent" | "bytes" | "total" | "rate"> & {
  files?: number;
  of?: number;
};

/**
 * A job's progress in a few words. An app's board reports the files it has
 * staged of the release's: those it fetched and those it held already (kept
 * or copied on its own flash, with no radio), so no rate and no "pushed";
 * until its first report only the manifest's size is known, so no total.
 */
export function progressText(j: ProgressFields, how: DeliveryFacts = j as DeliveryFacts): string {
  if (j.state === "succeeded") return "done";
  const app = isAppJob(j, how);
  if (j.state === "pushing") {
    if (app) {
      if (j.files !== undefined && j.of !== undefined)
        return `${j.files} of ${j.of} files staged (${j.bytes >= j.total ? kib(j.total) : `${(j.bytes / 1024).toFixed(1)} of ${kib(j.total)}`})`;
      return j.bytes > 0 ? `${j.percent}% of ${kib(j.total)} staged` : "no report from the board yet";
    }
    return `${j.percent}% of ${kib(j.total)}${j.rate > 0 ? ` at ${kib(j.rate)}/s` : ""}`;
  }
  // An app's stored job keeps the files its board had staged when the fetch broke off.
  if (app && j.files !== undefined && j.of !== undefined && j.files > 0)
    return `${j.files} of ${j.of} files staged (last fetch)`;
  return j.bytes > 0 ? `${j.percent}% (last ${deviceFetches(how, app) ? "fetch" : "push"})` : "-";
}

/** The release's identity and size: for an app its files and bytes, else the manifest's own size said as such. */
function releaseText(j: JobDetail): string {
  if (j.app) return `${j.firmware.id}, ${j.app.files} files, ${sizeBrief(j.app.bytes)}`;
  if (isAppJob(j, j)) return `${j.firmware.id}, manifest ${j.firmware.size} bytes`;
  return `${j.firmware.id}, ${j.firmware.size} bytes`;
}

export function jobsTable(jobs: JobView[], now = Date.now(), width = DEFAULT_TABLE_WIDTH): string {
  if (jobs.length === 0) return "No jobs. Start one with `mpota update DEVICE RELEASE`.\n";
  const rows = [["JOB", "DEVICE", "RELEASE", "STATE", "TRY", "PROGRESS", "UPDATED"]];
  for (const j of jobs) {
    rows.push([
      j.id,
      j.device,
      releaseWords(j.firmware, j, RELEASE_CELL),
      phaseWord(j.state, deviceFetches(j)),
      `${j.attempt}/${j.maxAttempts}`,
      progressText(j),
      relativeTime(j.updatedAt, now),
    ]);
  }
  const failed = jobs.filter((j) => j.state === "failed" && j.error);
  const notes = failed.length > 0 ? `\n${failed.map((j) => `${j.id}: ${j.error}`).join("\n")}\n` : "";
  // Job and device ids stay whole: the release keeps its version, the progress its start.
  const fitted = fitTable(rows, width, [
    [5, "end"],
    [2, "keep-last-word"],
  ]);
  return `${formatTable(fitted, { header: true })}${notes}`;
}

export function jobText(j: JobDetail, now = Date.now()): string {
  const lines = [
    `Job ${j.id}: ${j.device} to ${releaseWords(j.firmware, j)} (${releaseText(j)})`,
    `  state      ${phaseWord(j.state, deviceFetches(j))}${j.dueAt !== null && j.finishedAt === null ? ` (next step ${relativeTime(j.dueAt, now)})` : ""}`,
    `  tries      ${j.attempt} of ${j.maxAttempts}`,
    `  progress   ${progressText(j)}${j.retransmits > 0 ? `, ${j.retransmits} retransmits` : ""}`,
    // A device that fetches its release is sent nothing at an address: its ack's address says nothing here.
    ...(j.fetchedByDevice
      ? []
      : [`  address    ${j.target ?? "- (the device reports it when it takes the command)"}`]),
    `  created    ${relativeTime(j.createdAt, now)}${j.finishedAt === null ? "" : `, finished ${relativeTime(j.finishedAt, now)}`}`,
  ];
  if (j.allowDowngrade) lines.push("  downgrade  allowed on request (--allow-downgrade)");
  if (j.replacedApp)
    lines.push(
      `  replaces   the app ${j.replacedApp.name} ${j.replacedApp.version}, on request (--replace-app)`,
    );
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
      printAnswer(io, options.json, list, () => jobsTable(list, Date.now(), tableWidth(io)));
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
