import { MAX_REPORT_FILES } from "../../protocol/mqtt-contract.ts";
import { asIs, type Bind, type PatchColumns, setClause } from "./patch-columns.ts";
import type { JobPatch, JobProgress, JobRecord, JobStep, NewJobStep } from "./storage.ts";
import type { JobPhase } from "./types.ts";

/** The rows of `jobs` and `job_steps` as records, and job patches as SET clauses, for both backends. */

type Row = Record<string, unknown>;

export function jobFromRow(row: Row): JobRecord {
  return {
    id: row.id as string,
    deviceId: row.device_id as string,
    firmwareId: row.firmware_id as string,
    firmwareName: row.firmware_name as string,
    firmwareVersion: row.firmware_version as string,
    firmwareSize: row.firmware_size as number,
    phase: row.phase as JobPhase,
    attempt: row.attempt as number,
    maxAttempts: row.max_attempts as number,
    retryMode: row.retry_mode as JobRecord["retryMode"],
    targetIp: row.target_ip as string | null,
    targetPort: row.target_port as number | null,
    dueAt: row.due_at as number | null,
    error: row.error as string | null,
    cancelledBy: (row.cancelled_by ?? null) as JobRecord["cancelledBy"],
    createdAt: row.created_at as number,
    updatedAt: row.updated_at as number,
    finishedAt: row.finished_at as number | null,
    ackedAt: row.acked_at as number | null,
    pushedAt: row.pushed_at as number | null,
    leaseOwner: row.lease_owner as string | null,
    leaseExpiresAt: row.lease_expires_at as number | null,
    progress: {
      bytes: row.progress_bytes as number,
      total: row.progress_total as number,
      rate: row.progress_rate as number,
      retransmits: row.progress_retransmits as number,
      ...filesFromRow(row),
    },
  };
}

/** An app job's files staged of the release's, when stored (both columns or neither). */
function filesFromRow(row: Row): Pick<JobProgress, "files" | "of"> {
  const files = row.progress_files;
  const of = row.progress_of;
  // PostgreSQL's driver gives INTEGER as a number, as SQLite's does; a row from before has NULLs.
  if (files === null || files === undefined || of === null || of === undefined) return {};
  return { files: Number(files), of: Number(of) };
}

/**
 * The files count to store: both or neither, whole numbers with
 * 0 <= files <= of <= the most files a release holds, as the device's
 * report was checked (protocol/mqtt-contract.ts). Anything else is stored
 * as no count (NULL), as a firmware job's, rather than failing the change
 * it rides with: the bytes are the job's progress, the files only say it
 * in other words. The columns' CHECK refuses the rest.
 */
function storedFiles(progress: JobProgress): [number, number] | [null, null] {
  const { files, of } = progress;
  const count = (n: unknown): n is number => Number.isSafeInteger(n) && (n as number) >= 0;
  if (!count(files) || !count(of) || files > of || of > MAX_REPORT_FILES) return [null, null];
  return [files, of];
}

export function stepFromRow(row: Row): JobStep {
  return {
    seq: row.seq as number,
    jobId: row.job_id as string,
    at: row.at as number,
    kind: row.kind as string,
    message: row.message as string,
    data: row.data === null ? null : JSON.parse(row.data as string),
  };
}

/** A step's values for `INSERT INTO job_steps (job_id, at, kind, message, data)`. */
export function stepValues(jobId: string, step: NewJobStep): Array<string | number | null> {
  return [jobId, step.at, step.kind, step.message, step.data === null ? null : JSON.stringify(step.data)];
}

/** Column of each patchable field but progress. */
const JOB_COLUMNS: PatchColumns<Exclude<keyof JobPatch, "progress">> = {
  phase: ["phase", asIs],
  attempt: ["attempt", asIs],
  retryMode: ["retry_mode", asIs],
  targetIp: ["target_ip", asIs],
  targetPort: ["target_port", asIs],
  dueAt: ["due_at", asIs],
  error: ["error", asIs],
  cancelledBy: ["cancelled_by", asIs],
  finishedAt: ["finished_at", asIs],
  ackedAt: ["acked_at", asIs],
  pushedAt: ["pushed_at", asIs],
};

/** `column = placeholder` for each field the patch sets (progress included). */
export function jobPatchSets(patch: JobPatch, bind: Bind): string[] {
  const sets = setClause(JOB_COLUMNS, patch, bind);
  const progress = patch.progress;
  if (progress) {
    sets.push(
      `progress_bytes = ${bind("pBytes", progress.bytes)}`,
      `progress_total = ${bind("pTotal", progress.total)}`,
      `progress_rate = ${bind("pRate", progress.rate)}`,
      `progress_retransmits = ${bind("pRetransmits", progress.retransmits)}`,
    );
    // Every progress written sets the count too: one without files (a firmware's, or the
    // start of a try) leaves none of an earlier try behind.
    const [files, of] = storedFiles(progress);
    sets.push(`progress_files = ${bind("pFiles", files)}`, `progress_of = ${bind("pOf", of)}`);
  }
  return sets;
}
