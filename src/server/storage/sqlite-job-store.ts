import { jobFromRow, jobPatchSets, stepFromRow, stepValues } from "./job-rows.ts";
import { checkLease } from "./lease-check.ts";
import { bindNamed } from "./patch-columns.ts";
import type { SqliteDatabase as Db, SqlRow as Row } from "./sqlite-database.ts";
import type {
  EndedJob,
  JobCreateResult,
  JobListFilter,
  JobRecord,
  JobStep,
  JobStore,
  NewJob,
  NewJobStep,
} from "./storage.ts";
import type { HeldLease } from "./types.ts";

/** Jobs, their leases and their step logs in SQLite. */
export class SqliteJobStore implements JobStore {
  private readonly createTx: (job: NewJob, step: NewJobStep) => JobCreateResult;
  private readonly claimDueTx: (input: Parameters<JobStore["claimDue"]>[0]) => JobRecord[];
  private readonly updateTx: (input: Parameters<JobStore["update"]>[0]) => JobRecord;

  constructor(private readonly db: Db) {
    const activeFor = db.prepare("SELECT * FROM jobs WHERE device_id = ? AND active");
    const insertJob = db.prepare(`
      INSERT INTO jobs (id, device_id, firmware_id, firmware_name, firmware_version, firmware_size, phase, attempt,
        max_attempts, due_at, created_at, updated_at, progress_total)
      VALUES (@id, @deviceId, @firmwareId, @firmwareName, @firmwareVersion, @firmwareSize, 'queued', 0,
        @maxAttempts, @createdAt, @createdAt, @createdAt, @firmwareSize)
      RETURNING *`);
    this.createTx = db.transaction((job: NewJob, step: NewJobStep): JobCreateResult => {
      const active = activeFor.get(job.deviceId);
      if (active) return { ok: false, active: jobFromRow(active) };
      const row = insertJob.get({
        id: job.id,
        deviceId: job.deviceId,
        firmwareId: job.firmwareId,
        firmwareName: job.firmwareName,
        firmwareVersion: job.firmwareVersion,
        firmwareSize: job.firmwareSize,
        maxAttempts: job.maxAttempts,
        createdAt: job.createdAt,
      }) as Row;
      this.appendStep(job.id, step);
      return { ok: true, job: jobFromRow(row) };
    });

    this.claimDueTx = db.transaction((input: Parameters<JobStore["claimDue"]>[0]) => {
      const phases = input.phases ?? [];
      const phaseFilter = phases.length > 0 ? `AND phase IN (${phases.map(() => "?").join(", ")})` : "";
      const rows = db
        .prepare(
          `SELECT id FROM jobs WHERE active AND due_at IS NOT NULL AND due_at <= ?
           AND (lease_owner IS NULL OR lease_expires_at <= ?) ${phaseFilter}
           ORDER BY due_at, created_at LIMIT ?`,
        )
        .all(input.now, input.now, ...phases, input.limit);
      const take = db.prepare(
        "UPDATE jobs SET lease_owner = ?, lease_expires_at = ? WHERE id = ? RETURNING *",
      );
      return rows.map((r) => jobFromRow(take.get(input.owner, input.now + input.leaseMs, r.id) as Row));
    });

    this.updateTx = db.transaction((input: Parameters<JobStore["update"]>[0]) => {
      const current = db.prepare("SELECT lease_owner FROM jobs WHERE id = ?").get(input.id);
      checkLease("Job", input.id, current, input.owner);
      const params: Record<string, unknown> = { id: input.id, now: input.now };
      const sets = ["updated_at = @now", ...jobPatchSets(input.patch, bindNamed(params))];
      if (input.release) sets.push("lease_owner = NULL, lease_expires_at = NULL");
      const row = db
        .prepare(`UPDATE jobs SET ${sets.join(", ")} WHERE id = @id RETURNING *`)
        .get(params) as Row;
      for (const step of input.steps ?? []) this.appendStep(input.id, step);
      return jobFromRow(row);
    });
  }

  private appendStep(jobId: string, step: NewJobStep): void {
    this.db
      .prepare("INSERT INTO job_steps (job_id, at, kind, message, data) VALUES (?, ?, ?, ?, ?)")
      .run(...stepValues(jobId, step));
  }

  async create(job: NewJob, step: NewJobStep): Promise<JobCreateResult> {
    return this.createTx(job, step);
  }

  async get(id: string): Promise<JobRecord | undefined> {
    const row = this.db.prepare("SELECT * FROM jobs WHERE id = ?").get(id);
    return row && jobFromRow(row);
  }

  async list(filter: JobListFilter = {}): Promise<JobRecord[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    if (filter.deviceId !== undefined) {
      where.push("device_id = ?");
      params.push(filter.deviceId);
    }
    if (filter.active !== undefined) where.push(filter.active ? "active" : "NOT active");
    const sql = `SELECT * FROM jobs ${where.length > 0 ? `WHERE ${where.join(" AND ")}` : ""}
      ORDER BY created_at DESC, rowid DESC LIMIT ?`;
    return this.db
      .prepare(sql)
      .all(...params, filter.limit ?? -1)
      .map(jobFromRow);
  }

  async endedBetween(input: { from: number; to: number; limit: number }): Promise<EndedJob[]> {
    return this.db
      .prepare(
        `SELECT id, finished_at FROM jobs WHERE finished_at >= ? AND finished_at < ?
         ORDER BY finished_at, id LIMIT ?`,
      )
      .all(input.from, input.to, input.limit)
      .map((row) => ({ id: String(row.id), finishedAt: Number(row.finished_at) }));
  }

  async activeForDevice(deviceId: string): Promise<JobRecord | undefined> {
    const row = this.db.prepare("SELECT * FROM jobs WHERE device_id = ? AND active").get(deviceId);
    return row && jobFromRow(row);
  }

  async steps(jobId: string): Promise<JobStep[]> {
    return this.db
      .prepare("SELECT * FROM job_steps WHERE job_id = ? ORDER BY seq")
      .all(jobId)
      .map(stepFromRow);
  }

  async nextDueAt(): Promise<number | null> {
    const row = this.db
      .prepare(
        "SELECT MIN(MAX(due_at, COALESCE(lease_expires_at, 0))) AS due FROM jobs WHERE active AND due_at IS NOT NULL",
      )
      .get();
    return (row?.due as number | null | undefined) ?? null;
  }

  async claimDue(input: Parameters<JobStore["claimDue"]>[0]): Promise<JobRecord[]> {
    return this.claimDueTx(input);
  }

  async claim(input: Parameters<JobStore["claim"]>[0]): Promise<JobRecord | undefined> {
    const row = this.db
      .prepare(
        `UPDATE jobs SET lease_owner = @owner, lease_expires_at = @expires
         WHERE id = @id AND active AND (lease_owner IS NULL OR lease_owner = @owner OR lease_expires_at <= @now)
         RETURNING *`,
      )
      .get({ id: input.id, owner: input.owner, now: input.now, expires: input.now + input.leaseMs });
    return row && jobFromRow(row);
  }

  async renew(input: Parameters<JobStore["renew"]>[0]): Promise<boolean> {
    const result = this.db
      .prepare("UPDATE jobs SET lease_expires_at = ? WHERE id = ? AND lease_owner = ?")
      .run(input.now + input.leaseMs, input.id, input.owner);
    return result.changes > 0;
  }

  async update(input: Parameters<JobStore["update"]>[0]): Promise<JobRecord> {
    return this.updateTx(input);
  }

  async release(input: { id: string; owner: string }): Promise<void> {
    this.db
      .prepare("UPDATE jobs SET lease_owner = NULL, lease_expires_at = NULL WHERE id = ? AND lease_owner = ?")
      .run(input.id, input.owner);
  }

  async releaseAll(owner: string): Promise<number> {
    return this.db
      .prepare("UPDATE jobs SET lease_owner = NULL, lease_expires_at = NULL WHERE lease_owner = ?")
      .run(owner).changes;
  }

  async leases(now: number): Promise<HeldLease[]> {
    return this.db
      .prepare(
        "SELECT id, lease_owner AS owner FROM jobs WHERE lease_owner IS NOT NULL AND lease_expires_at > ? ORDER BY created_at, id",
      )
      .all(now) as unknown as HeldLease[];
  }

  async addStep(jobId: string, step: NewJobStep): Promise<void> {
    this.appendStep(jobId, step);
  }
}
