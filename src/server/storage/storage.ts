import { MpotaError } from "../../errors.ts";
import { EXIT_CODES } from "../../exit-codes.ts";
import type { DeviceState, DeviceStatus } from "../../protocol/mqtt-contract.ts";
import type { DeviceTagStore, RolloutStore } from "./rollout-store.ts";
import type { HeldLease, JobCanceller, JobPhase } from "./types.ts";

/**
 * Everything the server keeps, behind one asynchronous interface. SQLite
 * (sqlite-storage.ts) implements it today; a PostgreSQL implementation can
 * sit behind the same interface, so nothing outside `storage/` knows which
 * engine runs. Times are milliseconds since the epoch.
 *
 * Rules every implementation keeps:
 * - each method is atomic: a crash leaves either the whole change or none;
 * - a device has at most one active (non-terminal) job, enforced by the store;
 * - jobs are changed only by the holder of their lease (`claim*`), so several
 *   server instances can share one store.
 */
export interface Storage {
  readonly devices: DeviceStore;
  readonly firmware: FirmwareStore;
  readonly jobs: JobStore;
  /** Device tags (what rollouts select by) and rollouts: see rollout-store.ts. */
  readonly tags: DeviceTagStore;
  readonly rollouts: RolloutStore;
  /** Server instances sharing this store, with their heartbeats (`mpota status`). */
  readonly instances: InstanceStore;
  /** Small facts the instances must agree on (the firmware directory's id, ...). */
  readonly settings: SettingStore;
  /** Device credentials (salted hashes), command counters and the unsigned-command allowance. */
  readonly credentials: CredentialStore;
  /** Who changed what, for `mpota audit` and the dashboard. */
  readonly audit: AuditStore;
  /**
   * Firmware image bytes kept in the database, for backends that several
   * machines share (PostgreSQL); null when images live only in a directory
   * (SQLite: the data directory is on the one machine).
   */
  readonly images: ImageStore | null;
  /** A short description for logs ("SQLite /data/mpota.db"). */
  readonly description: string;
  close(): Promise<void>;
}

/** The store cannot be used: damaged, locked, or written by a newer mpota. */
export class StorageError extends MpotaError {
  override readonly exitCode: number = EXIT_CODES.storage.code;
}

/** The database was written by a newer mpota than this one. */
export class SchemaTooNewError extends StorageError {
  override readonly exitCode: number = EXIT_CODES.schemaTooNew.code;
}

/**
 * The database could not be reached for one operation (it restarts, or the
 * network is down). Nothing of the operation was stored; the same operation
 * may succeed a moment later.
 */
export class StorageUnavailableError extends StorageError {}

/** A job change was attempted without holding the job's lease (another instance took it over). */
export class LeaseLostError extends StorageError {}

// ---- devices ------------------------------------------------------------

export interface DeviceRecord {
  id: string;
  /** The last state the device reported (null before its first state). */
  state: DeviceState | null;
  status: DeviceStatus | null;
  statusAt: number | null;
  firstSeen: number;
  lastSeen: number;
  lastStateAt: number | null;
  /** When the device is expected to wake next (sleepy devices), or null. */
  nextWakeAt: number | null;
  /** Digest of the raw payload of the last state, to recognise a retained replay of it. */
  stateDigest: string | null;
}

/**
 * How much older than the stored state a state may be and still be refused as stale: longer than a
 * state can wait in an instance for the database, and short enough that a wall clock stepped back
 * (NTP) holds a device's new states back for at most this long.
 */
export const STALE_STATE_WINDOW_MS = 10 * 60_000;

export interface DeviceStateEntry {
  deviceId: string;
  at: number;
  state: DeviceState;
}

export interface DeviceStore {
  /**
   * Stores a state (device row and history entry in one transaction); keeps the newest `historyLimit`
   * entries. `at` is when it was handled, `receivedAt` (default `at`) when it reached the server.
   * Null, and nothing written, when the stored state was received after this one (and at most
   * {@link STALE_STATE_WINDOW_MS} after): with several instances one device's states can be
   * handled out of order, one instance's waiting for the database while another's went through.
   */
  recordState(input: {
    id: string;
    state: DeviceState;
    at: number;
    receivedAt?: number;
    digest: string;
    nextWakeAt: number | null;
    historyLimit: number;
  }): Promise<DeviceRecord | null>;
  recordStatus(input: {
    id: string;
    status: DeviceStatus;
    at: number;
    nextWakeAt: number | null;
  }): Promise<DeviceRecord>;
  /**
   * Every device stored as online becomes offline at `at` (its last-seen time
   * stays): the embedded broker has just started, so none of them is
   * connected, and the wills that would have said so died with the old one.
   * Returns how many changed.
   */
  markOnlineOffline(at: number): Promise<number>;
  get(id: string): Promise<DeviceRecord | undefined>;
  list(): Promise<DeviceRecord[]>;
  /** Up to `limit` devices with ids after `after` (all when undefined), by id: one page of the list. */
  page(after: string | undefined, limit: number): Promise<DeviceRecord[]>;
  count(): Promise<number>;
  /** Newest first. */
  history(id: string, limit: number): Promise<DeviceStateEntry[]>;
}

// ---- firmware -----------------------------------------------------------

/** A check's verdict as stored with the firmware (from the preflight checks). */
export interface StoredVerdict {
  check: string;
  level: "ok" | "warning" | "refusal";
  forced: boolean;
  message: string;
}

export interface FirmwareRecord {
  /** The MD5 trailer as 32 lower-case hex digits: what devices report as `fw`. */
  id: string;
  name: string;
  version: string;
  size: number;
  notes: string | null;
  addedAt: number;
  /** MicroPython version found in the image, if any. */
  micropython: string | null;
  /** "ota", "normal", "unknown" or null. */
  build: string | null;
  checks: StoredVerdict[];
  /**
   * The release kind's name (`ReleaseKind.name`), stored since schema 5;
   * absent for rows stored before, whose kind is told by their `build`.
   */
  kind?: string;
}

export type FirmwareAddResult =
  | { ok: true; record: FirmwareRecord }
  | { ok: false; conflict: "identity" | "name-version"; existing: FirmwareRecord };

export interface FirmwareStore {
  /** Adds the metadata unless the identity or the name and version are taken. */
  add(record: FirmwareRecord): Promise<FirmwareAddResult>;
  get(id: string): Promise<FirmwareRecord | undefined>;
  findByName(name: string, version?: string): Promise<FirmwareRecord[]>;
  /** Newest first. */
  list(): Promise<FirmwareRecord[]>;
  remove(id: string): Promise<boolean>;
}

// ---- jobs ---------------------------------------------------------------

/** What the next attempt of a job in `retrying` does: wait for the device to take the command, or push again. */
export type RetryMode = "command" | "push";

export interface JobProgress {
  bytes: number;
  total: number;
  /** Bytes per second of the last push. */
  rate: number;
  retransmits: number;
  /** An app's fetch: files staged of the release's (stored while it runs and after; none for a firmware). */
  files?: number;
  of?: number;
}

export interface JobRecord {
  id: string;
  deviceId: string;
  firmwareId: string;
  firmwareName: string;
  firmwareVersion: string;
  firmwareSize: number;
  phase: JobPhase;
  /** Tries so far: every push started (pushes again included) and every time the device declined. */
  attempt: number;
  maxAttempts: number;
  retryMode: RetryMode | null;
  /** The address the device reported in its ack (only ever that one). */
  targetIp: string | null;
  targetPort: number | null;
  /** When the runner must look at the job next (null: only a device message moves it). */
  dueAt: number | null;
  /** Why the last attempt or the job failed, with what to do. */
  error: string | null;
  /** Who cancelled the job: someone's request, or a rollout taking it back (null: not cancelled, or cancelled before this was stored). */
  cancelledBy: JobCanceller | null;
  createdAt: number;
  updatedAt: number;
  finishedAt: number | null;
  ackedAt: number | null;
  pushedAt: number | null;
  leaseOwner: string | null;
  leaseExpiresAt: number | null;
  progress: JobProgress;
}

export interface NewJob {
  id: string;
  deviceId: string;
  firmwareId: string;
  firmwareName: string;
  firmwareVersion: string;
  firmwareSize: number;
  maxAttempts: number;
  createdAt: number;
}

/** The fields a job change may set. */
export type JobPatch = Partial<
  Pick<
    JobRecord,
    | "phase"
    | "attempt"
    | "retryMode"
    | "targetIp"
    | "targetPort"
    | "dueAt"
    | "error"
    | "cancelledBy"
    | "finishedAt"
    | "ackedAt"
    | "pushedAt"
    | "progress"
  >
>;

export interface JobStep {
  seq: number;
  jobId: string;
  at: number;
  /** A stable word: created, command, device-state, ack, declined, push-started, push-done, ... */
  kind: string;
  message: string;
  data: Record<string, unknown> | null;
}

export type NewJobStep = Omit<JobStep, "seq" | "jobId">;

export type JobCreateResult = { ok: true; job: JobRecord } | { ok: false; active: JobRecord };

/** A job that ended, and when. */
export interface EndedJob {
  id: string;
  finishedAt: number;
}

export interface JobListFilter {
  deviceId?: string;
  active?: boolean;
  limit?: number;
}

export interface JobStore {
  /** Creates a job (phase queued, due at once) unless the device has an active job. */
  create(job: NewJob, step: NewJobStep): Promise<JobCreateResult>;
  get(id: string): Promise<JobRecord | undefined>;
  /** Newest first. */
  list(filter?: JobListFilter): Promise<JobRecord[]>;
  activeForDevice(deviceId: string): Promise<JobRecord | undefined>;
  /**
   * Up to `limit` jobs that ended at `from` or later and before `to`, in the
   * order they ended: the ones whose retained progress is cleared next.
   */
  endedBetween(input: { from: number; to: number; limit: number }): Promise<EndedJob[]>;
  /** Oldest first. */
  steps(jobId: string): Promise<JobStep[]>;
  /** The earliest time `claimDue` may return a job (due and its lease free), or null when no job is due at all. */
  nextDueAt(): Promise<number | null>;
  /**
   * Leases up to `limit` active jobs whose due time has come and whose lease
   * is free or expired, oldest due first. `phases` restricts the phases.
   */
  claimDue(input: {
    owner: string;
    now: number;
    leaseMs: number;
    limit: number;
    phases?: JobPhase[];
  }): Promise<JobRecord[]>;
  /** Leases one active job if its lease is free, expired, or already the owner's. */
  claim(input: { id: string; owner: string; now: number; leaseMs: number }): Promise<JobRecord | undefined>;
  /** Extends the owner's lease; false when the owner no longer holds it. */
  renew(input: { id: string; owner: string; now: number; leaseMs: number }): Promise<boolean>;
  /**
   * Changes a job the owner holds and appends steps, in one transaction;
   * `release` gives the lease up. Throws {@link LeaseLostError} when the
   * owner does not hold the lease.
   */
  update(input: {
    id: string;
    owner: string;
    now: number;
    patch: JobPatch;
    steps?: NewJobStep[];
    release?: boolean;
  }): Promise<JobRecord>;
  /** Gives the lease up if the owner holds it. */
  release(input: { id: string; owner: string }): Promise<void>;
  /** Gives up every lease the owner holds (an instance shutting down); returns how many. */
  releaseAll(owner: string): Promise<number>;
  /** The leases held at `now` (not expired), oldest job first: few, whatever the number of jobs. */
  leases(now: number): Promise<HeldLease[]>;
  /** Appends an informational step; needs no lease (the step log is append-only). */
  addStep(jobId: string, step: NewJobStep): Promise<void>;
}

// ---- instances, settings, images ---------------------------------------

export interface InstanceLoad {
  /** Pushes this instance is sending now. */
  pushes: number;
  /** Jobs whose lease it holds. */
  jobs: number;
  /** Rollouts whose lease it holds. */
  rollouts: number;
}

export interface InstanceRecord {
  /** The instance's lease owner name (host:pid:random). */
  id: string;
  host: string;
  pid: number;
  version: string;
  startedAt: number;
  heartbeatAt: number;
  /** Where its HTTP API listens, or null. */
  http: string | null;
  load: InstanceLoad;
}

export interface InstanceStore {
  /** Inserts or replaces the instance's row. */
  heartbeat(record: InstanceRecord): Promise<void>;
  /** Oldest started first. */
  list(): Promise<InstanceRecord[]>;
  remove(id: string): Promise<void>;
  /** Removes instances whose last heartbeat is older than `before`; returns how many. */
  prune(before: number): Promise<number>;
}

export interface SettingStore {
  get(key: string): Promise<string | undefined>;
  /** Stores `value` unless the key has one already; returns the stored value (the existing one, if any). */
  putIfAbsent(key: string, value: string): Promise<string>;
}

export interface ImageStore {
  /** Stores the bytes under the identity (no-op when present). */
  put(id: string, bytes: Uint8Array): Promise<void>;
  get(id: string): Promise<Uint8Array | undefined>;
  remove(id: string): Promise<void>;
}

// ---- credentials and audit ----------------------------------------------

/** A provisioned device: its credential's stored hash and what the server keeps for its signed commands. */
export interface CredentialRecord {
  deviceId: string;
  /** Salted hash of the device's secret (credentials.ts format). */
  hash: string;
  createdAt: number;
  /** When the secret was last replaced (null: never). */
  rotatedAt: number | null;
  /** The last command counter the server issued to this device (0: none yet). */
  commandSeq: number;
  /** The owner allows commands without a signature for this device (an agent that cannot verify them). */
  allowUnsigned: boolean;
}

/** The device already has a credential: nothing was changed. */
export class CredentialExistsError extends StorageError {
  override readonly exitCode: number = EXIT_CODES.credentialExists.code;
}

export interface CredentialStore {
  /** Stores a new device credential; throws {@link CredentialExistsError} when the device has one. */
  add(input: { deviceId: string; hash: string; at: number }): Promise<CredentialRecord>;
  get(deviceId: string): Promise<CredentialRecord | undefined>;
  list(): Promise<CredentialRecord[]>;
  /** Replaces the hash of an existing credential; false when the device has none. */
  replace(input: { deviceId: string; hash: string; at: number }): Promise<boolean>;
  /** Removes the credential; false when there was none. */
  remove(deviceId: string): Promise<boolean>;
  /**
   * Issues the device's next command counter atomically: max(stored, atLeast) + 1, stored and
   * returned; undefined when the device has no credential.
   */
  nextCommandSeq(deviceId: string, atLeast: number): Promise<number | undefined>;
  /** Sets the unsigned-command allowance; false when the device has no credential. */
  setAllowUnsigned(deviceId: string, allow: boolean): Promise<boolean>;
}

export interface AuditEntry {
  id: number;
  at: number;
  /** Who asked: "mqtt mpota-admin (client cli-1a2b, 127.0.0.1)", "http token (127.0.0.1)", ... */
  actor: string;
  /** What was done: "update", "firmware/add", "devices/add", "rollout/create", ... */
  action: string;
  /** What it was done to: a device id, a firmware ref, a rollout id; null when none. */
  target: string | null;
  /** Small JSON-able details (no secrets). */
  detail: Record<string, unknown> | null;
  /** "ok" or "refused". */
  outcome: "ok" | "refused";
}

export interface AuditStore {
  record(entry: Omit<AuditEntry, "id">): Promise<void>;
  /** Newest first; at most `limit` entries, older than `before` (an id) when given. */
  list(filter: { limit: number; before?: number }): Promise<AuditEntry[]>;
  /** Keeps the newest `keep` entries; returns how many were removed. */
  prune(keep: number): Promise<number>;
}
