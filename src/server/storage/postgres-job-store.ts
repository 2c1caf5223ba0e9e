import { jobFromRow, jobPatchSets, stepFromRow, stepValues } from "./job-rows.ts";
import { checkLease } from "./lease-check.ts";
import { bindPositional } from "./patch-columns.ts";
import type { PostgresDb as Db, Sql } from "./postgres-connection.ts";
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

type Row = Record<string, unknown>;

/** The order claimDue hands jobs out in (RETURNING keeps no order). */
function byDue(a: JobRecord, b: JobRecord): number {
  return (a.dueAt ?? 0) - (b.dueAt ?? 0) || a.createdAt - b.createdAt;
}

async function appendStep(sql: Sql, jobId: string, step: NewJobStep): Promise<void> {
  await sql.run(
    "INSERT INTO job_steps (job_id, at, kind, message, data) VALUES ($1, $2, $3, $4, $5)",
    stepValues(jobId, step),
  );
}

/** Jobs, their leases (row locks decide between instances) and their step logs in PostgreSQL. */
export class PostgresJobStore implements JobStore {
  constructor(private readonly db: Db) {}

  async create(job: NewJob, step: NewJobStep): Promise<JobCreateResult> {
    return this.db.tx("creating a job", async (sql) => {
      // The partial unique index (one active job per device) decides between
      // instances creating jobs for one device at once: the second insert
      // waits for the first transaction, then does nothing.
      for (;;) {
        const row = await sql.one(
          `INSERT INTO jobs (id, device_id, firmware_id, firmware_name, firmware_version, firmware_size, phase,
             attempt, max_attempts, due_at, created_at, updated_at, progress_total)
           VALUES ($1, $2, $3, $4, $5, $6, 'queued', 0, $7, $8, $8, $8, $6)
           ON CONFLICT (device_id) WHERE active DO NOTHING
           RETURNING *`,
          [
            job.id,
            job.deviceId,
            job.firmwareId,
            job.firmwareName,
            job.firmwareVersion,
            job.firmwareSize,
            job.maxAttempts,
            job.createdAt,
          ],
        );
        if (row) {
          await appendStep(sql, job.id, step);
          return { ok: true, job: jobFromRow(row) };
        }
        const active = await sql.one("SELECT * FROM jobs WHERE device_id = $1 AND active", [job.deviceId]);
        if (active) return { ok: false, active: jobFromRow(active) };
        // The active job ended in the meantime: try again.
      }
    });
  }

  async get(id: string): Promise<JobRecord | undefined> {
    const row = await this.db.sql("reading a job", (sql) =>
      sql.one("SELECT * FROM jobs WHERE id = $1", [id]),
    );
    return row && jobFromRow(row);
  }

  async list(filter: JobListFilter = {}): Promise<JobRecord[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    if (filter.deviceId !== undefined) {
      params.push(filter.deviceId);
      where.push(`device_id = $${params.length}`);
    }
    if (filter.active !== undefined) where.push(filter.active ? "active" : "NOT active");
    params.push(filter.limit ?? null);
    const text = `SELECT * FROM jobs ${where.length > 0 ? `WHERE ${where.join(" AND ")}` : ""}
      ORDER BY created_at DESC, ord DESC LIMIT $${params.length}`;
    return (await this.db.sql("listing jobs", (sql) => sql.rows(text, params))).map(jobFromRow);
  }

  async endedBetween(input: { from: number; to: number; limit: number }): Promise<EndedJob[]> {
    const rows = await this.db.sql("listing ended jobs", (sql) =>
      sql.rows<{ id: string; finished_at: string | number }>(
        `SELECT id, finished_at FROM jobs WHERE finished_at >= $1 AND finished_at < $2
         ORDER BY finished_at, id LIMIT $3`,
        [input.from, input.to, input.limit],
      ),
    );
    return rows.map((row) => ({ id: row.id, finishedAt: Number(row.finished_at) }));
  }

  async activeForDevice(deviceId: string): Promise<JobRecord | undefined> {
    const row = await this.db.sql("reading a device's job", (sql) =>
      sql.one("SELECT * FROM jobs WHERE device_id = $1 AND active", [deviceId]),
    );
    return row && jobFromRow(row);
  }

  async steps(jobId: string): Promise<JobStep[]> {
    return (
      await this.db.sql("reading a job's steps", (sql) =>
        sql.rows("SELECT * FROM job_steps WHERE job_id = $1 ORDER BY seq", [jobId]),
      )
    ).map(stepFromRow);
  }

  async nextDueAt(): Promise<number | null> {
    const row = await this.db.sql("reading the next due job", (sql) =>
      sql.one(
        "SELECT MIN(GREATEST(due_at, COALESCE(lease_expires_at, 0))) AS due FROM jobs WHERE active AND due_at IS NOT NULL",
      ),
    );
    return (row?.due as number | null | undefined) ?? null;
  }

  async claimDue(input: Parameters<JobStore["claimDue"]>[0]): Promise<JobRecord[]> {
    const phases = input.phases ?? [];
    const params: unknown[] = [input.owner, input.now + input.leaseMs, input.now, input.limit];
    let phaseFilter = "";
    if (phases.length > 0) {
      params.push(phases);
      phaseFilter = "AND phase = ANY($5::text[])";
    }
    // Rows another instance is claiming right now are skipped, not waited
    // for; a row whose lease was taken meanwhile fails the re-checked WHERE.
    const rows = await this.db.tx("claiming due jobs", (sql) =>
      sql.rows(
        `UPDATE jobs SET lease_owner = $1, lease_expires_at = $2
         WHERE id IN (
           SELECT id FROM jobs WHERE active AND due_at IS NOT NULL AND due_at <= $3
             AND (lease_owner IS NULL OR lease_expires_at <= $3) ${phaseFilter}
           ORDER BY due_at, created_at LIMIT $4
           FOR NO KEY UPDATE SKIP LOCKED)
         AND active AND (lease_owner IS NULL OR lease_expires_at <= $3)
         RETURNING *`,
        params,
      ),
    );
    return rows.map(jobFromRow).sort(byDue);
  }

  async claim(input: Parameters<JobStore["claim"]>[0]): Promise<JobRecord | undefined> {
    const row = await this.db.sql("claiming a job", (sql) =>
      sql.one(
        `UPDATE jobs SET lease_owner = $2, lease_expires_at = $4
         WHERE id = $1 AND active AND (lease_owner IS NULL OR lease_owner = $2 OR lease_expires_at <= $3)
         RETURNING *`,
        [input.id, input.owner, input.now, input.now + input.leaseMs],
      ),
    );
    return row && jobFromRow(row);
  }

  async renew(input: Parameters<JobStore["renew"]>[0]): Promise<boolean> {
    const changed = await this.db.sql("renewing a job lease", (sql) =>
      sql.run("UPDATE jobs SET lease_expires_at = $1 WHERE id = $2 AND lease_owner = $3", [
        input.now + input.leaseMs,
        input.id,
        input.owner,
      ]),
    );
    return changed > 0;
  }

  async update(input: Parameters<JobStore["update"]>[0]): Promise<JobRecord> {
    return this.db.tx("changing a job", async (sql) => {
      const current = await sql.one("SELECT lease_owner FROM jobs WHERE id = $1 FOR NO KEY UPDATE", [
        input.id,
      ]);
      checkLease("Job", input.id, current, input.owner);
      const params: unknown[] = [input.id, input.now];
      const sets = ["updated_at = $2", ...jobPatchSets(input.patch, bindPositional(params))];
      if (input.release) sets.push("lease_owner = NULL, lease_expires_at = NULL");
      const row = (await sql.one(
        `UPDATE jobs SET ${sets.join(", ")} WHERE id = $1 RETURNING *`,
        params,
      )) as Row;
      for (const step of input.steps ?? []) await appendStep(sql, input.id, step);
      return jobFromRow(row);
    });
  }

  async release(input: { id: string; owner: string }): Promise<void> {
    await this.db.sql("releasing a job lease", (sql) =>
      sql.run(
        "UPDATE jobs SET lease_owner = NULL, lease_expires_at = NULL WHERE id = $1 AND lease_owner = $2",
        [input.id, input.owner],
      ),
    );
  }

  async releaseAll(owner: string): Promise<number> {
    return this.db.sql("releasing job leases", (sql) =>
      sql.run("UPDATE jobs SET lease_owner = NULL, lease_expires_at = NULL WHERE lease_owner = $1", [owner]),
    );
  }

  async leases(now: number): Promise<HeldLease[]> {
    return this.db.sql("reading job leases", (sql) =>
      sql.rows<HeldLease>(
        "SELECT id, lease_owner AS owner FROM jobs WHERE lease_owner IS NOT NULL AND lease_expires_at > $1 ORDER BY created_at, id",
        [now],
      ),
    );
  }

  async addStep(jobId: string, step: NewJobStep): Promise<void> {
    await this.db.sql("adding a job step", (sql) => appendStep(sql, jobId, step));
  }
}
